//! The fixed-seed generator: families, their codici fiscali (omocodia included), addresses,
//! IMU and TARI positions, payments and companies, written into [`super::batch::Tables`].

use super::batch::{Tables, Val};
use super::names::*;
use super::{SampleSubject, ANNI, COMUNE_ISTAT, OGGI};
use crate::codice_fiscale::{CodiceFiscale, PartitaIva, Sesso};
use crate::store::StoreError;
use chrono::{Datelike, Duration, NaiveDate};
use std::collections::HashSet;

/// SplitMix64: tiny, fast, and fixed forever, so the sample never changes under a dependency
/// upgrade.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        &items[i]
    }

    pub(super) fn weighted<'a>(
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

/// A generated person before it is written.
#[derive(Clone)]
pub(super) struct Person {
    pub(super) cf: CodiceFiscale,
    pub(super) cognome: String,
    pub(super) nome: String,
    pub(super) sesso: Sesso,
    pub(super) nascita: NaiveDate,
    pub(super) luogo: (&'static str, &'static str),
}

pub(super) struct Address {
    pub(super) dug: &'static str,
    pub(super) toponimo: &'static str,
    pub(super) civico: String,
    pub(super) cap: String,
}

/// The generator's state across blocks.
pub(super) struct Generator {
    pub(super) rng: Rng,
    pub(super) oggi: NaiveDate,
    pub(super) issued: HashSet<[u8; 16]>,
    pub(super) generated: u32,
    pub(super) families: u64,
    pub(super) companies: u64,
    pub(super) iuv_counter: u64,
    pub(super) last: Option<Person>,
    pub(super) samples: Vec<SampleSubject>,
    pub(super) sample_kinds: HashSet<&'static str>,
}

pub(super) fn fixed_date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("the sample's fixed calendar dates exist")
}

/// IUV with aux digit 3: segregation code (2) + reference (13) + check digits (2), where the
/// check is `3 || segregation || reference` modulo 93 (pagoPA specification).
pub(super) fn iuv(counter: u64) -> String {
    let segregazione = 1u64;
    let reference = 1_000_000_000_000 + counter % 9_000_000_000_000;
    let base = format!("{segregazione:02}{reference:013}");
    let n: u64 = format!("3{base}")
        .parse()
        .expect("16 ASCII digits fit in u64");
    format!("{base}{:02}", n % 93)
}

impl Generator {
    pub(super) fn new() -> Self {
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

    pub(super) fn birth_date(&mut self, age: i64) -> NaiveDate {
        let year = self.oggi.year() - i32::try_from(age).unwrap_or(0) - 1;
        let day0 = fixed_date(year, 6, 1);
        day0 + Duration::days(self.rng.range(0, 364))
    }

    /// Issues a codice fiscale unique in the sample, going through omocodia levels on a clash.
    pub(super) fn issue(&mut self, p: &mut Person) -> Result<bool, StoreError> {
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

    pub(super) fn person(
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

    pub(super) fn address(&mut self) -> Address {
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

    pub(super) fn sample(&mut self, kind: &'static str, p: &Person, description: String) {
        if self.samples.len() < 8 && self.sample_kinds.insert(kind) {
            self.samples.push(SampleSubject {
                codice_fiscale: p.cf.to_string(),
                cognome: p.cognome.clone(),
                nome: p.nome.clone(),
                description,
            });
        }
    }

    pub(super) fn write_person(
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

    pub(super) fn next_iuv(&mut self) -> String {
        self.iuv_counter += 1;
        iuv(self.iuv_counter)
    }

    /// IMU properties and positions of an owner; returns whether some year is unpaid.
    pub(super) fn imu(&mut self, t: &mut Tables, id: &str, quota: i64, company: bool) -> bool {
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
    pub(super) fn tari(
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
    pub(super) fn family(&mut self, t: &mut Tables, budget: u32) -> Result<u32, StoreError> {
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

    pub(super) fn company(&mut self, t: &mut Tables) -> Result<(), StoreError> {
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
}
