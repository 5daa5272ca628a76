//! The deterministic synthetic sample: a small comune (Pisa's codes) a newcomer can query.
//!
//! A fixed-seed generator produces families with valid codici fiscali (homonyms resolved by
//! omocodia, as the Agenzia delle Entrate does), addresses, a few deceased and emigrated
//! people, IMU properties and positions, TARI utenze and instalments, pagoPA payments with
//! valid-looking IUVs, and a few companies identified by partita IVA. The same `residents`
//! gives the same rows on every engine. Rows go in with multi-row INSERTs, one transaction per
//! block, so a million residents is a matter of seconds, not hours.

use super::seed_guard::{MARKER_TABLE, SEED_IN_PROGRESS, SEED_TABLES};
use super::sql::{Engine, SqlStore, KEY_DATA_AGGIORNAMENTO};
use super::StoreError;
use crate::codice_fiscale::{CodiceFiscale, PartitaIva, Sesso};
use chrono::{Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::collections::HashSet;

/// What the seed wrote, with a few subjects worth trying.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    pub residents: u32,
    pub samples: Vec<SampleSubject>,
}

/// A subject of the sample, with what makes it interesting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSubject {
    pub codice_fiscale: String,
    pub cognome: String,
    pub nome: String,
    pub description: String,
}

/// The comune of the sample (Pisa: ISTAT 050026, Belfiore G702).
const COMUNE_ISTAT: &str = "050026";
/// The tax years the sample has positions for.
const ANNI: std::ops::RangeInclusive<i64> = 2023..=2025;
/// "Today" of the sample, fixed so the data never depends on when it is generated.
const OGGI: (i32, u32, u32) = (2025, 6, 1);
/// Persons generated per transaction.
const BLOCK: usize = 5_000;
/// Bind parameters per INSERT statement (SQLite allows 32766, PostgreSQL 65535).
const PARAMS_PER_STATEMENT: usize = 8_000;

const COGNOMI: &[&str] = &[
    "ROSSI",
    "RUSSO",
    "FERRARI",
    "ESPOSITO",
    "BIANCHI",
    "ROMANO",
    "COLOMBO",
    "RICCI",
    "MARINO",
    "GRECO",
    "BRUNO",
    "GALLO",
    "CONTI",
    "DE LUCA",
    "MANCINI",
    "COSTA",
    "GIORDANO",
    "RIZZO",
    "LOMBARDI",
    "MORETTI",
    "BARBIERI",
    "FONTANA",
    "SANTORO",
    "MARIANI",
    "RINALDI",
    "CARUSO",
    "FERRARA",
    "GALLI",
    "MARTINI",
    "LEONE",
    "LONGO",
    "GENTILE",
    "MARTINELLI",
    "VITALE",
    "LOMBARDO",
    "SERRA",
    "COPPOLA",
    "DE SANTIS",
    "D'ANGELO",
    "MARCHETTI",
    "PARISI",
    "VILLA",
    "CONTE",
    "FERRARO",
    "FERRI",
    "FABBRI",
    "BIANCO",
    "MARINI",
    "GRASSO",
    "VALENTINI",
    "MESSINA",
    "SALA",
    "DE ANGELIS",
    "GATTI",
    "PELLEGRINI",
    "PALUMBO",
    "SANNA",
    "FARINA",
    "RIZZI",
    "MONTI",
    "CATTANEO",
    "MORELLI",
    "AMATO",
    "SILVESTRI",
    "MAZZA",
    "TESTA",
    "GRASSI",
    "CARBONE",
    "GIULIANI",
    "BENEDETTI",
    "BARONE",
    "CAPUTO",
    "MONTANARI",
    "GUERRA",
    "PALMIERI",
    "BERNARDI",
    "FIORE",
    "DE ROSA",
    "FERRETTI",
    "BELLINI",
    "BASILE",
    "RIVA",
    "DONATI",
    "PIRAS",
    "VITALI",
    "BATTAGLIA",
    "SARTORI",
    "NERI",
    "COSTANTINI",
    "MILANI",
    "PAGANO",
    "RUGGIERO",
    "SORRENTINO",
    "D'AMICO",
    "ORLANDO",
    "NEGRI",
    "BO",
    "FO",
];
const NOMI_M: &[&str] = &[
    "FRANCESCO",
    "ALESSANDRO",
    "LORENZO",
    "MATTIA",
    "ANDREA",
    "LEONARDO",
    "GABRIELE",
    "RICCARDO",
    "TOMMASO",
    "EDOARDO",
    "MATTEO",
    "GIUSEPPE",
    "ANTONIO",
    "GIOVANNI",
    "MARCO",
    "LUCA",
    "DAVIDE",
    "SIMONE",
    "FEDERICO",
    "STEFANO",
    "PAOLO",
    "ROBERTO",
    "MASSIMO",
    "LUIGI",
    "SALVATORE",
    "MARIO",
    "GIORGIO",
    "FABIO",
    "CLAUDIO",
    "FRANCO",
    "CARLO",
    "ENRICO",
    "PIETRO",
    "EMANUELE",
    "NICOLA",
    "VINCENZO",
    "MICHELE",
    "ALBERTO",
    "DANIELE",
    "UGO",
];
const NOMI_F: &[&str] = &[
    "SOFIA",
    "GIULIA",
    "AURORA",
    "ALICE",
    "GINEVRA",
    "EMMA",
    "GIORGIA",
    "GRETA",
    "BEATRICE",
    "ANNA",
    "CHIARA",
    "MARTINA",
    "SARA",
    "FRANCESCA",
    "ELENA",
    "VALENTINA",
    "ALESSIA",
    "FEDERICA",
    "SILVIA",
    "LAURA",
    "PAOLA",
    "MARIA",
    "GIOVANNA",
    "ROSA",
    "ANGELA",
    "LUCIA",
    "TERESA",
    "CARLA",
    "ELISA",
    "ROBERTA",
    "BARBARA",
    "MONICA",
    "CRISTINA",
    "DANIELA",
    "SIMONA",
    "MANUELA",
    "PATRIZIA",
    "ANTONELLA",
    "STEFANIA",
    "EVA",
];
/// Places of birth (name, codice catastale, weight).
const LUOGHI: &[(&str, &str, u64)] = &[
    ("PISA", "G702", 60),
    ("LIVORNO", "E625", 6),
    ("FIRENZE", "D612", 6),
    ("LUCCA", "E715", 5),
    ("ROMA", "H501", 5),
    ("MILANO", "F205", 4),
    ("NAPOLI", "F839", 4),
    ("TORINO", "L219", 2),
    ("BOLOGNA", "A944", 2),
    ("PALERMO", "G273", 2),
    ("GENOVA", "D969", 2),
    ("BARI", "A662", 2),
    ("ROMANIA", "Z129", 3),
    ("ALBANIA", "Z100", 2),
    ("MAROCCO", "Z330", 2),
    ("GERMANIA", "Z112", 1),
    ("STATI UNITI D'AMERICA", "Z404", 1),
];
const STRADE: &[(&str, &str)] = &[
    ("VIA", "ROMA"),
    ("VIA", "GIUSEPPE GARIBALDI"),
    ("VIA", "GIUSEPPE MAZZINI"),
    ("CORSO", "ITALIA"),
    ("PIAZZA", "DEI CAVALIERI"),
    ("LUNGARNO", "ANTONIO PACINOTTI"),
    ("VIA", "SANTA MARIA"),
    ("BORGO", "STRETTO"),
    ("VIA", "DANTE ALIGHIERI"),
    ("VIALE", "DELLE PIAGGE"),
    ("VIA", "XX SETTEMBRE"),
    ("VIA", "FIORENTINA"),
    ("VIA", "DI PRATALE"),
    ("VIA", "BONANNO PISANO"),
    ("VIA", "GIOSUE CARDUCCI"),
    ("PIAZZA", "VITTORIO EMANUELE II"),
    ("VIA", "DEI MILLE"),
    ("VIA", "CAMILLO BENSO DI CAVOUR"),
    ("LARGO", "CIRO MENOTTI"),
    ("VIA", "NINO BIXIO"),
    ("VIALE", "ANTONIO GRAMSCI"),
    ("VIA", "SAN MARTINO"),
    ("VIA", "UGO FOSCOLO"),
    ("VICOLO", "DEL POZZO"),
    ("VIA", "DI CISANELLO"),
    ("VIA", "GIACOMO PUCCINI"),
    ("VIA", "GIACOMO LEOPARDI"),
    ("VIA", "ALESSANDRO MANZONI"),
    ("VIA", "GIUSEPPE VERDI"),
    ("VIA", "FRANCESCO PETRARCA"),
];
const CATEGORIE_ND: &[&str] = &[
    "ND-03 AUTORIMESSE E MAGAZZINI",
    "ND-11 UFFICI, AGENZIE, STUDI PROFESSIONALI",
    "ND-13 NEGOZI DI ABBIGLIAMENTO",
    "ND-16 BANCHI DI MERCATO",
    "ND-22 RISTORANTI, TRATTORIE, PIZZERIE",
];
const FORME: &[&str] = &["S.R.L.", "S.P.A.", "S.N.C.", "& C. S.A.S."];

/// SplitMix64: tiny, fast, and fixed forever, so the sample never changes under a dependency
/// upgrade.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        &items[i]
    }

    fn weighted<'a>(
        &mut self,
        items: &'a [(&'a str, &'a str, u64)],
    ) -> &'a (&'a str, &'a str, u64) {
        let total: u64 = items.iter().map(|i| i.2).sum();
        let mut r = self.next() % total;
        for item in items {
            if r < item.2 {
                return item;
            }
            r -= item.2;
        }
        &items[0]
    }
}

/// A value bound into an INSERT.
enum Val {
    T(String),
    I(i64),
    NullT,
    NullI,
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::T(s.to_owned())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::T(s)
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::I(i)
    }
}
impl From<NaiveDate> for Val {
    fn from(d: NaiveDate) -> Self {
        Val::T(d.format("%Y-%m-%d").to_string())
    }
}

/// Rows waiting to be written to one table.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<Val>>,
}

impl Table {
    fn new(name: &'static str, columns: &'static [&'static str]) -> Self {
        Table {
            name,
            columns,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Val>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width of {}", self.name);
        self.rows.push(row);
    }

    /// A multi-row INSERT. SQLite gets anonymous `?` placeholders: it resolves named ones
    /// (`$N`) with a linear scan per parameter, which makes a statement of thousands of
    /// parameters quadratic.
    fn insert_sql(&self, rows: usize, engine: Engine) -> String {
        let cols = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.name,
            self.columns.join(", ")
        );
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..cols {
                if c > 0 {
                    sql.push(',');
                }
                match engine {
                    Engine::Sqlite => sql.push('?'),
                    Engine::Postgres => {
                        sql.push('$');
                        sql.push_str(&(r * cols + c + 1).to_string());
                    }
                }
            }
            sql.push(')');
        }
        sql
    }

    async fn flush(&mut self, conn: &mut AnyConnection, engine: Engine) -> Result<(), StoreError> {
        let per_statement = (PARAMS_PER_STATEMENT / self.columns.len()).max(1);
        let rows = std::mem::take(&mut self.rows);
        let full_sql = self.insert_sql(per_statement, engine);
        let mut iter = rows.into_iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<Vec<Val>> = iter.by_ref().take(per_statement).collect();
            let sql = if chunk.len() == per_statement {
                full_sql.clone()
            } else {
                self.insert_sql(chunk.len(), engine)
            };
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                for v in row {
                    query = match v {
                        Val::T(s) => query.bind(s),
                        Val::I(i) => query.bind(i),
                        Val::NullT => query.bind(None::<String>),
                        Val::NullI => query.bind(None::<i64>),
                    };
                }
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

struct Tables {
    persone: Table,
    residenze: Table,
    contribuenti: Table,
    imu_immobili: Table,
    imu_posizioni: Table,
    tari_utenze: Table,
    tari_posizioni: Table,
    tari_rate: Table,
    pagamenti: Table,
}

impl Tables {
    fn new() -> Self {
        Tables {
            persone: Table::new(
                "persone",
                &[
                    "codice_fiscale",
                    "cognome",
                    "nome",
                    "sesso",
                    "data_nascita",
                    "comune_nascita",
                    "codice_catastale_nascita",
                    "data_decesso",
                    "id_famiglia",
                    "relazione_intestatario",
                    "ordine_famiglia",
                ],
            ),
            residenze: Table::new(
                "residenze",
                &[
                    "codice_fiscale",
                    "dug",
                    "toponimo",
                    "civico",
                    "cap",
                    "codice_istat_comune",
                    "data_decorrenza",
                ],
            ),
            contribuenti: Table::new("contribuenti", &["identificativo", "tipo"]),
            imu_immobili: Table::new(
                "imu_immobili",
                &[
                    "identificativo",
                    "foglio",
                    "particella",
                    "subalterno",
                    "categoria",
                    "rendita_centesimi",
                    "quota_centesimi",
                    "anno_inizio",
                    "anno_fine",
                ],
            ),
            imu_posizioni: Table::new(
                "imu_posizioni",
                &[
                    "identificativo",
                    "anno",
                    "dovuto_centesimi",
                    "versato_centesimi",
                ],
            ),
            tari_utenze: Table::new(
                "tari_utenze",
                &[
                    "identificativo",
                    "progressivo",
                    "dug",
                    "toponimo",
                    "civico",
                    "cap",
                    "codice_istat_comune",
                    "superficie_mq",
                    "occupanti",
                    "categoria",
                    "anno_inizio",
                    "anno_fine",
                ],
            ),
            tari_posizioni: Table::new(
                "tari_posizioni",
                &[
                    "identificativo",
                    "anno",
                    "importo_centesimi",
                    "pagato_centesimi",
                ],
            ),
            tari_rate: Table::new(
                "tari_rate",
                &[
                    "identificativo",
                    "anno",
                    "rata",
                    "data_scadenza",
                    "importo_centesimi",
                ],
            ),
            pagamenti: Table::new(
                "pagamenti",
                &[
                    "iuv",
                    "identificativo",
                    "anno",
                    "tributo",
                    "importo_centesimi",
                    "data_pagamento",
                ],
            ),
        }
    }

    /// Writes every pending row, parents before children (foreign keys).
    async fn flush(&mut self, conn: &mut AnyConnection, engine: Engine) -> Result<(), StoreError> {
        self.persone.flush(conn, engine).await?;
        self.residenze.flush(conn, engine).await?;
        self.contribuenti.flush(conn, engine).await?;
        self.imu_immobili.flush(conn, engine).await?;
        self.imu_posizioni.flush(conn, engine).await?;
        self.tari_utenze.flush(conn, engine).await?;
        self.tari_posizioni.flush(conn, engine).await?;
        self.tari_rate.flush(conn, engine).await?;
        self.pagamenti.flush(conn, engine).await?;
        Ok(())
    }
}

/// A generated person before it is written.
#[derive(Clone)]
struct Person {
    cf: CodiceFiscale,
    cognome: String,
    nome: String,
    sesso: Sesso,
    nascita: NaiveDate,
    luogo: (&'static str, &'static str),
}

struct Address {
    dug: &'static str,
    toponimo: &'static str,
    civico: String,
    cap: String,
}

/// The generator's state across blocks.
struct Generator {
    rng: Rng,
    oggi: NaiveDate,
    issued: HashSet<[u8; 16]>,
    generated: u32,
    families: u64,
    companies: u64,
    iuv_counter: u64,
    last: Option<Person>,
    samples: Vec<SampleSubject>,
    sample_kinds: HashSet<&'static str>,
}

fn fixed_date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("the sample's fixed calendar dates exist")
}

/// IUV with aux digit 3: segregation code (2) + reference (13) + check digits (2), where the
/// check is `3 || segregation || reference` modulo 93 (pagoPA specification).
fn iuv(counter: u64) -> String {
    let segregazione = 1u64;
    let reference = 1_000_000_000_000 + counter % 9_000_000_000_000;
    let base = format!("{segregazione:02}{reference:013}");
    let n: u64 = format!("3{base}")
        .parse()
        .expect("16 ASCII digits fit in u64");
    format!("{base}{:02}", n % 93)
}

impl Generator {
    fn new() -> Self {
        Generator {
            rng: Rng(0x5EED_C0DE_F15C_A1E5),
            oggi: fixed_date(OGGI.0, OGGI.1, OGGI.2),
            issued: HashSet::new(),
            generated: 0,
            families: 0,
            companies: 0,
            iuv_counter: 0,
            last: None,
            samples: Vec::new(),
            sample_kinds: HashSet::new(),
        }
    }

    fn birth_date(&mut self, age: i64) -> NaiveDate {
        let year = self.oggi.year() - i32::try_from(age).unwrap_or(0) - 1;
        let day0 = fixed_date(year, 6, 1);
        day0 + Duration::days(self.rng.range(0, 364))
    }

    /// Issues a codice fiscale unique in the sample, going through omocodia levels on a clash.
    fn issue(&mut self, p: &mut Person) -> Result<bool, StoreError> {
        let base =
            CodiceFiscale::from_personal_data(&p.cognome, &p.nome, p.sesso, p.nascita, p.luogo.1)
                .map_err(|e| {
                StoreError::Database(format!("seed generated invalid personal data: {e}"))
            })?;
        for level in 0..=7 {
            let cf = if level == 0 {
                Some(base.clone())
            } else {
                base.omocode(level)
            };
            if let Some(cf) = cf {
                let mut key = [0u8; 16];
                key[..cf.as_str().len()].copy_from_slice(cf.as_str().as_bytes());
                if self.issued.insert(key) {
                    p.cf = cf;
                    return Ok(level > 0);
                }
            }
        }
        // Eight identical people: move the birth date and try again.
        p.nascita += Duration::days(1);
        self.issue(p)
    }

    fn person(
        &mut self,
        cognome: &str,
        sesso: Sesso,
        age: i64,
    ) -> Result<(Person, bool), StoreError> {
        let nome = match sesso {
            Sesso::M => *self.rng.pick(NOMI_M),
            Sesso::F => *self.rng.pick(NOMI_F),
        };
        let luogo = self.rng.weighted(LUOGHI);
        let mut p = Person {
            cf: CodiceFiscale::parse("RSSMRA85T10A562S").expect("a valid placeholder"),
            cognome: cognome.to_owned(),
            nome: nome.to_owned(),
            sesso,
            nascita: self.birth_date(age),
            luogo: (luogo.0, luogo.1),
        };
        let omocode = self.issue(&mut p)?;
        Ok((p, omocode))
    }

    fn address(&mut self) -> Address {
        let idx = usize::try_from(self.rng.next() % STRADE.len() as u64).unwrap_or(0);
        let (dug, toponimo) = STRADE[idx];
        let mut civico = self.rng.range(1, 180).to_string();
        if self.rng.chance(8) {
            let suffix = *self.rng.pick(&["/A", "/B", "/C"]);
            civico.push_str(suffix);
        }
        let cap = format!("{}", 56121 + (idx % 8));
        Address {
            dug,
            toponimo,
            civico,
            cap,
        }
    }

    fn sample(&mut self, kind: &'static str, p: &Person, description: String) {
        if self.samples.len() < 8 && self.sample_kinds.insert(kind) {
            self.samples.push(SampleSubject {
                codice_fiscale: p.cf.to_string(),
                cognome: p.cognome.clone(),
                nome: p.nome.clone(),
                description,
            });
        }
    }

    fn write_person(
        &self,
        t: &mut Tables,
        p: &Person,
        decesso: Option<NaiveDate>,
        famiglia: Option<(&str, &str, i64)>,
    ) {
        t.persone.push(vec![
            p.cf.to_string().into(),
            p.cognome.as_str().into(),
            p.nome.as_str().into(),
            p.sesso.as_str().into(),
            p.nascita.into(),
            p.luogo.0.into(),
            p.luogo.1.into(),
            decesso.map_or(Val::NullT, Val::from),
            famiglia.map_or(Val::NullT, |f| f.0.into()),
            famiglia.map_or(Val::NullT, |f| f.1.into()),
            famiglia.map_or(Val::NullI, |f| f.2.into()),
        ]);
    }

    fn next_iuv(&mut self) -> String {
        self.iuv_counter += 1;
        iuv(self.iuv_counter)
    }

    /// IMU properties and positions of an owner; returns whether some year is unpaid.
    fn imu(&mut self, t: &mut Tables, id: &str, quota: i64, company: bool) -> bool {
        let n = if company {
            self.rng.range(1, 2)
        } else {
            self.rng.range(1, 3)
        };
        let mut immobili = Vec::new();
        for i in 0..n {
            let categoria = if company {
                *self.rng.pick(&["D/1", "D/7", "C/1", "C/3"])
            } else if i == 0 {
                *self.rng.pick(&["A/2", "A/3", "A/3", "A/4", "A/7", "A/1"])
            } else {
                *self.rng.pick(&["C/6", "C/2", "A/3", "A/2"])
            };
            let rendita = match &categoria[..1] {
                "D" => self.rng.range(200_000, 2_000_000),
                "C" => self.rng.range(4_000, 40_000),
                _ => self.rng.range(25_000, 160_000),
            };
            let anno_inizio = if self.rng.chance(10) {
                self.rng.range(2024, 2025)
            } else {
                self.rng.range(1990, 2022)
            };
            let anno_fine = if self.rng.chance(5) {
                Some(self.rng.range(2023, 2024).max(anno_inizio))
            } else {
                None
            };
            // Main home and its garage are exempt, unless luxury (A/1, A/8, A/9).
            let esente = !company
                && i < 2
                && !matches!(categoria, "A/1" | "A/8" | "A/9")
                && (i == 0 || categoria == "C/6");
            let foglio = self.rng.range(1, 120).to_string();
            let particella = self.rng.range(1, 2500).to_string();
            let subalterno = if self.rng.chance(5) {
                String::new()
            } else {
                self.rng.range(1, 60).to_string()
            };
            t.imu_immobili.push(vec![
                id.into(),
                foglio.into(),
                particella.into(),
                subalterno.into(),
                categoria.into(),
                rendita.into(),
                quota.into(),
                anno_inizio.into(),
                anno_fine.map_or(Val::NullI, Val::from),
            ]);
            immobili.push((
                rendita,
                anno_inizio,
                anno_fine,
                esente,
                &categoria[..1] == "D",
            ));
        }
        let mut debt = false;
        for anno in ANNI {
            let dovuto: i64 = immobili
                .iter()
                .filter(|(_, inizio, fine, esente, _)| {
                    *inizio <= anno && fine.is_none_or(|f| f >= anno) && !esente
                })
                .map(|(rendita, _, _, _, d)| {
                    // base = rendita x 1.05 x (160, or 65 for group D); rate 10.6 per mille.
                    let moltiplicatore = if *d { 65 } else { 160 };
                    rendita * 105 * moltiplicatore * 106 / 100 / 10_000 * quota / 10_000
                })
                .sum();
            let versato = if dovuto > 0 && self.rng.chance(12) {
                if self.rng.chance(50) {
                    0
                } else {
                    dovuto / 2
                }
            } else {
                dovuto
            };
            debt |= versato < dovuto;
            t.imu_posizioni
                .push(vec![id.into(), anno.into(), dovuto.into(), versato.into()]);
            if versato > 0 {
                let data = fixed_date(i32::try_from(anno).unwrap_or(2025), 12, 16)
                    - Duration::days(self.rng.range(0, 20));
                let iuv = self.next_iuv();
                t.pagamenti.push(vec![
                    iuv.into(),
                    id.into(),
                    anno.into(),
                    "IMU".into(),
                    versato.into(),
                    data.into(),
                ]);
            }
        }
        debt
    }

    /// A TARI utenza with its yearly positions and instalments; returns whether some year is unpaid.
    fn tari(
        &mut self,
        t: &mut Tables,
        id: &str,
        addr: &Address,
        occupanti: i64,
        categoria: &str,
        superficie: i64,
    ) -> bool {
        let anno_inizio = if self.rng.chance(10) {
            2024
        } else {
            self.rng.range(1995, 2022)
        };
        t.tari_utenze.push(vec![
            id.into(),
            1i64.into(),
            addr.dug.into(),
            addr.toponimo.into(),
            addr.civico.as_str().into(),
            addr.cap.as_str().into(),
            COMUNE_ISTAT.into(),
            superficie.into(),
            occupanti.into(),
            categoria.into(),
            anno_inizio.into(),
            Val::NullI,
        ]);
        let mut debt = false;
        for anno in ANNI {
            if anno < anno_inizio {
                continue;
            }
            let importo = superficie * 130 + 4_000 + occupanti * 3_500;
            let pagato = if self.rng.chance(10) {
                importo / 2
            } else {
                importo
            };
            debt |= pagato < importo;
            t.tari_posizioni
                .push(vec![id.into(), anno.into(), importo.into(), pagato.into()]);
            let y = i32::try_from(anno).unwrap_or(2025);
            let prima = importo / 2 + importo % 2;
            t.tari_rate.push(vec![
                id.into(),
                anno.into(),
                1i64.into(),
                fixed_date(y, 5, 31).into(),
                prima.into(),
            ]);
            t.tari_rate.push(vec![
                id.into(),
                anno.into(),
                2i64.into(),
                fixed_date(y, 11, 30).into(),
                (importo - prima).into(),
            ]);
            if pagato > 0 {
                let data = fixed_date(y, 5, 31) - Duration::days(self.rng.range(0, 25));
                let iuv = self.next_iuv();
                t.pagamenti.push(vec![
                    iuv.into(),
                    id.into(),
                    anno.into(),
                    "TARI".into(),
                    pagato.into(),
                    data.into(),
                ]);
            }
        }
        debt
    }

    /// One family (or a lone deceased/emigrated person); returns how many persons it wrote.
    fn family(&mut self, t: &mut Tables, budget: u32) -> Result<u32, StoreError> {
        self.families += 1;
        let fam_no = self.families;
        // A few people outside any family: deceased, or emigrated (no longer resident).
        if fam_no % 41 == 5 || fam_no % 97 == 11 {
            let deceased = fam_no % 41 == 5;
            let sesso = if self.rng.chance(50) {
                Sesso::M
            } else {
                Sesso::F
            };
            let cognome = *self.rng.pick(COGNOMI);
            let age = self.rng.range(
                if deceased { 60 } else { 20 },
                if deceased { 100 } else { 60 },
            );
            let (p, _) = self.person(cognome, sesso, age)?;
            let decesso =
                deceased.then(|| fixed_date(2015, 1, 1) + Duration::days(self.rng.range(0, 3650)));
            self.write_person(t, &p, decesso, None);
            if deceased {
                self.sample(
                    "deceased",
                    &p,
                    "deceased: esistenza-in-vita answers inVita false".into(),
                );
            } else {
                self.sample(
                    "emigrated",
                    &p,
                    "moved away: residenza answers residente false".into(),
                );
            }
            return Ok(1);
        }
        let size = match self.rng.next() % 100 {
            0..=29 => 1,
            30..=56 => 2,
            57..=76 => 3,
            77..=92 => 4,
            93..=97 => 5,
            _ => 6,
        }
        .min(budget);
        let id_famiglia = format!("F{fam_no:09}");
        let addr = self.address();
        let inizio = fixed_date(1990, 1, 1) + Duration::days(self.rng.range(0, 12_500));
        let mut members: Vec<(Person, crate::store::Relazione)> = Vec::new();
        let mut omocode = false;

        // Every 397th family is a homonym of the previous person: same name, birth date and
        // place, so their codice fiscale goes through omocodia.
        let head = match (&self.last, fam_no % 397 == 7) {
            (Some(prev), true) => {
                let mut p = prev.clone();
                self.issue(&mut p)?;
                omocode = true;
                p
            }
            _ => {
                let sesso = if self.rng.chance(55) {
                    Sesso::M
                } else {
                    Sesso::F
                };
                let cognome = *self.rng.pick(COGNOMI);
                let age = self.rng.range(22, 90);
                let (p, o) = self.person(cognome, sesso, age)?;
                omocode |= o;
                p
            }
        };
        let head_age = i64::from(self.oggi.year() - head.nascita.year());
        members.push((head.clone(), crate::store::Relazione::Intestatario));
        if size >= 2 {
            let sesso = match head.sesso {
                Sesso::M => Sesso::F,
                Sesso::F => Sesso::M,
            };
            let cognome = *self.rng.pick(COGNOMI);
            let age = (head_age + self.rng.range(-6, 6)).max(19);
            let (p, o) = self.person(cognome, sesso, age)?;
            omocode |= o;
            let rel = if self.rng.chance(80) {
                crate::store::Relazione::Coniuge
            } else if self.rng.chance(20) {
                crate::store::Relazione::UnitoCivilmente
            } else {
                crate::store::Relazione::Convivente
            };
            members.push((p, rel));
        }
        let father_surname = members
            .iter()
            .find(|(p, _)| p.sesso == Sesso::M)
            .map_or(head.cognome.clone(), |(p, _)| p.cognome.clone());
        for i in 2..size {
            if i == 5 && head_age < 60 {
                let sesso = if self.rng.chance(30) {
                    Sesso::M
                } else {
                    Sesso::F
                };
                let cognome = *self.rng.pick(COGNOMI);
                let age = (head_age + self.rng.range(22, 32)).min(100);
                let (p, o) = self.person(cognome, sesso, age)?;
                omocode |= o;
                members.push((p, crate::store::Relazione::Genitore));
                continue;
            }
            let sesso = if self.rng.chance(51) {
                Sesso::M
            } else {
                Sesso::F
            };
            let age = (head_age - self.rng.range(20, 40)).clamp(0, 60);
            let (p, o) = self.person(&father_surname, sesso, age)?;
            omocode |= o;
            members.push((p, crate::store::Relazione::Figlio));
        }
        for (ordine, (p, rel)) in members.iter().enumerate() {
            let ordine = i64::try_from(ordine).unwrap_or(0) + 1;
            self.write_person(t, p, None, Some((&id_famiglia, rel.code(), ordine)));
            let decorrenza = inizio.max(p.nascita);
            t.residenze.push(vec![
                p.cf.to_string().into(),
                addr.dug.into(),
                addr.toponimo.into(),
                addr.civico.as_str().into(),
                addr.cap.as_str().into(),
                COMUNE_ISTAT.into(),
                decorrenza.into(),
            ]);
        }

        // Tributi: the head always has TARI; 65 % own property (IMU), shared 50/50 with a
        // spouse in half of those.
        let head_id = head.cf.to_string();
        t.contribuenti
            .push(vec![head_id.as_str().into(), "PF".into()]);
        let occupanti = i64::from(size);
        let superficie = self.rng.range(35, 180);
        let categoria = format!("DOM-{}", occupanti.min(6));
        let mut debt = self.tari(t, &head_id, &addr, occupanti, &categoria, superficie);
        let owner = self.rng.chance(65);
        if owner {
            let shared = size >= 2 && self.rng.chance(50);
            let quota = if shared { 5_000 } else { 10_000 };
            debt |= self.imu(t, &head_id, quota, false);
            if shared {
                let spouse_id = members[1].0.cf.to_string();
                t.contribuenti
                    .push(vec![spouse_id.as_str().into(), "PF".into()]);
                self.imu(t, &spouse_id, quota, false);
            }
        }

        let what = format!(
            "resident, family of {size}{}{}",
            if owner { ", IMU" } else { "" },
            if debt {
                ", with unpaid tax years"
            } else {
                ", taxes paid"
            }
        );
        if size >= 3 && owner && debt {
            self.sample("family-debt", &head, what);
        } else if size >= 2 && owner && !debt {
            self.sample("family-regular", &head, what);
        }
        if omocode {
            if let Some((p, _)) = members.iter().find(|(p, _)| {
                let b = p.cf.as_str().as_bytes();
                !b[14].is_ascii_digit()
            }) {
                let p = p.clone();
                self.sample(
                    "omocode",
                    &p,
                    "codice fiscale with omocodia (homonym)".into(),
                );
            }
        }
        self.last = members.last().map(|(p, _)| p.clone());

        // Now and then a company with a partita IVA.
        if fam_no % 23 == 3 {
            self.company(t)?;
        }
        Ok(u32::try_from(members.len()).unwrap_or(0))
    }

    fn company(&mut self, t: &mut Tables) -> Result<(), StoreError> {
        self.companies += 1;
        let matricola = 1_000_000 + self.companies * 7 % 9_000_000;
        let first10 = format!("{matricola:07}050");
        let piva = PartitaIva::from_first10(&first10).map_err(|e| {
            StoreError::Database(format!("seed generated an invalid partita IVA: {e}"))
        })?;
        let id = piva.to_string();
        t.contribuenti.push(vec![id.as_str().into(), "PNF".into()]);
        let addr = self.address();
        let categoria = *self.rng.pick(CATEGORIE_ND);
        let superficie = self.rng.range(40, 1500);
        let mut debt = self.tari(t, &id, &addr, 0, categoria, superficie);
        debt |= self.imu(t, &id, 10_000, true);
        if self.samples.len() < 8 && self.sample_kinds.insert("company") {
            let nome = format!("{} {}", self.rng.pick(COGNOMI), self.rng.pick(FORME));
            self.samples.push(SampleSubject {
                codice_fiscale: id,
                cognome: nome,
                nome: String::new(),
                description: format!(
                    "company (partita IVA) with IMU and TARI{}",
                    if debt { ", unpaid tax years" } else { "" }
                ),
            });
        }
        Ok(())
    }
}

/// Replaces the store's content with the deterministic sample of `residents` persons.
pub async fn seed(store: &SqlStore, residents: u32) -> Result<SeedSummary, StoreError> {
    let pool = store.pool();
    let mut conn = pool.acquire().await?;
    {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for table in SEED_TABLES {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        // Marked as the seed's before the first row goes in: an interrupted seed leaves a
        // database the next seed still recognises as its own.
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (persone BIGINT NOT NULL)"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {MARKER_TABLE}")))
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {MARKER_TABLE} (persone) VALUES ($1)"
        )))
        .bind(SEED_IN_PROGRESS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let mut generator = Generator::new();
    let mut tables = Tables::new();
    while generator.generated < residents {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let block_end = generator
            .generated
            .saturating_add(u32::try_from(BLOCK).unwrap_or(u32::MAX))
            .min(residents);
        while generator.generated < block_end {
            let budget = residents - generator.generated;
            generator.generated += generator.family(&mut tables, budget)?;
        }
        tables.flush(&mut tx, store.engine()).await?;
        tx.commit().await?;
    }
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    sqlx::query("INSERT INTO metadati (chiave, valore) VALUES ($1, $2)")
        .bind(KEY_DATA_AGGIORNAMENTO)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let persone: i64 = sqlx::query("SELECT COUNT(*) FROM persone")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {MARKER_TABLE} SET persone = $1"
    )))
    .bind(persone)
    .execute(&mut *conn)
    .await?;
    Ok(SeedSummary {
        residents: generator.generated,
        samples: generator.samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iuv_has_17_digits_and_a_mod_93_check() {
        let v = iuv(42);
        assert_eq!(v.len(), 17);
        assert!(v.bytes().all(|b| b.is_ascii_digit()));
        let n: u64 = format!("3{}", &v[..15]).parse().unwrap();
        assert_eq!(v[15..].parse::<u64>().unwrap(), n % 93);
        assert_ne!(iuv(1), iuv(2));
    }

    #[test]
    fn rng_is_deterministic() {
        let mut a = Rng(1);
        let mut b = Rng(1);
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn insert_sql_numbers_placeholders() {
        let t = Table::new("x", &["a", "b"]);
        assert_eq!(
            t.insert_sql(2, Engine::Postgres),
            "INSERT INTO x (a, b) VALUES ($1,$2),($3,$4)"
        );
        assert_eq!(
            t.insert_sql(2, Engine::Sqlite),
            "INSERT INTO x (a, b) VALUES (?,?),(?,?)"
        );
    }
}
