//! Every operation over real HTTP against a seeded store, on SQLite and PostgreSQL.
//!
//! Expected values are read back from the tables with the test's own queries, never hard-coded.

mod common;

use common::{euro, keys, one_text, Db, Server};
use eservices::CacheConfig;
use serde_json::{json, Value};
use sqlx::{AssertSqlSafe, Row};

const UNKNOWN_CF: &str = "RSSMRA85T10A562S";
const UNKNOWN_PIVA: &str = "07643520567";

async fn srv(db: Db) -> Option<Server> {
    common::server(db, CacheConfig::default()).await
}

fn assert_ok(a: &common::Answer, what: &str) {
    assert_eq!(
        a.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&a.bytes)
    );
    assert_eq!(a.content_type, "application/json", "{what}");
}

async fn data_aggiornamento(s: &Server) -> String {
    one_text(
        s.raw(),
        "SELECT valore FROM metadati WHERE chiave = 'data_aggiornamento'",
    )
    .await
}

async fn anagrafe_answers_match_the_tables(db: Db) {
    let Some(s) = srv(db).await else { return };
    let agg = data_aggiornamento(&s).await;

    // A resident (alive, with a residence row).
    let row = sqlx::query(
        "SELECT p.codice_fiscale, p.cognome, p.nome, p.sesso, p.data_nascita, p.comune_nascita, \
         p.codice_catastale_nascita, r.dug, r.toponimo, r.civico, r.cap, r.codice_istat_comune, \
         r.data_decorrenza FROM persone p JOIN residenze r ON r.codice_fiscale = p.codice_fiscale \
         WHERE p.data_decesso IS NULL ORDER BY p.codice_fiscale LIMIT 1",
    )
    .fetch_one(s.raw())
    .await
    .unwrap();
    let t = |c: &str| row.try_get::<String, _>(c).unwrap();
    let cf = t("codice_fiscale");

    let a = s
        .post("/anagrafe/v1/residenza", json!({"codiceFiscale": cf}))
        .await;
    assert_ok(&a, "residenza");
    assert_eq!(
        a.subject.as_deref(),
        Some(cf.as_str()),
        "DataSubject recorded"
    );
    assert_eq!(
        a.json(),
        json!({
            "residente": true,
            "indirizzo": {"dug": t("dug"), "toponimo": t("toponimo"), "civico": t("civico"),
                          "cap": t("cap"), "codiceIstatComune": t("codice_istat_comune")},
            "dataDecorrenza": t("data_decorrenza"),
            "dataAggiornamento": agg,
        })
    );
    assert_eq!(
        a.keys(),
        keys(&[
            "residente",
            "indirizzo",
            "dataDecorrenza",
            "dataAggiornamento"
        ])
    );

    // Lower case input is the same subject.
    let a = s
        .post(
            "/anagrafe/v1/generalita",
            json!({"codiceFiscale": cf.to_lowercase()}),
        )
        .await;
    assert_ok(&a, "generalita");
    assert_eq!(
        a.json(),
        json!({
            "cognome": t("cognome"), "nome": t("nome"), "sesso": t("sesso"),
            "dataNascita": t("data_nascita"),
            "luogoNascita": {"comune": t("comune_nascita"), "codiceCatastale": t("codice_catastale_nascita")},
            "dataAggiornamento": agg,
        })
    );

    let a = s
        .post(
            "/anagrafe/v1/esistenza-in-vita",
            json!({"codiceFiscale": cf}),
        )
        .await;
    assert_ok(&a, "esistenza-in-vita");
    assert_eq!(a.json(), json!({"inVita": true, "dataAggiornamento": agg}));

    // verifica-residenza: same address (different case/spacing) matches, another civico not.
    let addr = json!({"dug": t("dug").to_lowercase(), "toponimo": format!(" {} ", t("toponimo")),
                      "civico": t("civico"), "cap": t("cap"), "codiceIstatComune": t("codice_istat_comune")});
    let a = s
        .post(
            "/anagrafe/v1/verifica-residenza",
            json!({"codiceFiscale": cf, "indirizzo": addr}),
        )
        .await;
    assert_ok(&a, "verifica-residenza");
    assert_eq!(
        a.json(),
        json!({"corrisponde": true, "dataAggiornamento": agg})
    );
    let mut other = addr.clone();
    other["civico"] = json!("9999");
    let a = s
        .post(
            "/anagrafe/v1/verifica-residenza",
            json!({"codiceFiscale": cf, "indirizzo": other}),
        )
        .await;
    assert_eq!(
        a.json(),
        json!({"corrisponde": false, "dataAggiornamento": agg})
    );

    // A deceased person: not alive, not resident, no family.
    let dead = sqlx::query(
        "SELECT codice_fiscale, data_decesso FROM persone WHERE data_decesso IS NOT NULL \
         ORDER BY codice_fiscale LIMIT 1",
    )
    .fetch_one(s.raw())
    .await
    .unwrap();
    let dead_cf: String = dead.try_get("codice_fiscale").unwrap();
    let a = s
        .post(
            "/anagrafe/v1/esistenza-in-vita",
            json!({"codiceFiscale": dead_cf}),
        )
        .await;
    assert_eq!(
        a.json(),
        json!({"inVita": false, "dataDecesso": dead.try_get::<String, _>("data_decesso").unwrap(),
               "dataAggiornamento": agg})
    );
    let a = s
        .post("/anagrafe/v1/residenza", json!({"codiceFiscale": dead_cf}))
        .await;
    assert_eq!(
        a.json(),
        json!({"residente": false, "dataAggiornamento": agg})
    );
    let a = s
        .post(
            "/anagrafe/v1/stato-famiglia",
            json!({"codiceFiscale": dead_cf}),
        )
        .await;
    assert_eq!(a.status, 404);

    // Someone who moved away: known, alive, not resident.
    let gone = one_text(
        s.raw(),
        "SELECT p.codice_fiscale FROM persone p LEFT JOIN residenze r ON r.codice_fiscale = p.codice_fiscale \
         WHERE r.codice_fiscale IS NULL AND p.data_decesso IS NULL ORDER BY p.codice_fiscale LIMIT 1",
    )
    .await;
    let a = s
        .post("/anagrafe/v1/residenza", json!({"codiceFiscale": gone}))
        .await;
    assert_ok(&a, "residenza of an emigrated person");
    assert_eq!(
        a.json(),
        json!({"residente": false, "dataAggiornamento": agg})
    );

    // A family of at least three, asked through a member who is not the head.
    let fam = one_text(
        s.raw(),
        "SELECT id_famiglia FROM persone WHERE id_famiglia IS NOT NULL GROUP BY id_famiglia \
         HAVING COUNT(*) >= 3 ORDER BY id_famiglia LIMIT 1",
    )
    .await;
    let members = sqlx::query(AssertSqlSafe(format!(
        "SELECT codice_fiscale, cognome, nome, relazione_intestatario FROM persone \
         WHERE id_famiglia = '{fam}' ORDER BY ordine_famiglia"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    let expected: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({"codiceFiscale": m.try_get::<String, _>(0).unwrap(),
                   "cognome": m.try_get::<String, _>(1).unwrap(),
                   "nome": m.try_get::<String, _>(2).unwrap(),
                   "relazioneIntestatario": m.try_get::<String, _>(3).unwrap()})
        })
        .collect();
    assert_eq!(expected[0]["relazioneIntestatario"], "intestatario");
    let member: String = members[2].try_get(0).unwrap();
    let a = s
        .post(
            "/anagrafe/v1/stato-famiglia",
            json!({"codiceFiscale": member}),
        )
        .await;
    assert_ok(&a, "stato-famiglia");
    assert_eq!(
        a.json(),
        json!({"idFamiglia": fam, "componenti": expected, "dataAggiornamento": agg})
    );
}

async fn tributi_answers_match_the_tables(db: Db) {
    let Some(s) = srv(db).await else { return };
    let agg = data_aggiornamento(&s).await;
    let anno: i64 = 2024;

    // A subject with at least two properties in the year.
    let id = one_text(
        s.raw(),
        "SELECT identificativo FROM imu_immobili WHERE anno_inizio <= 2024 \
         AND (anno_fine IS NULL OR anno_fine >= 2024) GROUP BY identificativo \
         HAVING COUNT(*) >= 2 ORDER BY identificativo LIMIT 1",
    )
    .await;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT foglio, particella, subalterno, categoria, rendita_centesimi, quota_centesimi \
         FROM imu_immobili WHERE identificativo = '{id}' AND anno_inizio <= 2024 \
         AND (anno_fine IS NULL OR anno_fine >= 2024) ORDER BY foglio, particella, subalterno"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    let immobili: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = json!({
                "foglio": r.try_get::<String, _>(0).unwrap(),
                "particella": r.try_get::<String, _>(1).unwrap(),
                "categoria": r.try_get::<String, _>(3).unwrap(),
                "rendita": euro(r.try_get::<i64, _>(4).unwrap()),
                "quota": euro(r.try_get::<i64, _>(5).unwrap()),
            });
            let sub: String = r.try_get(2).unwrap();
            if !sub.is_empty() {
                v["subalterno"] = json!(sub);
            }
            v
        })
        .collect();
    let pos = sqlx::query(AssertSqlSafe(format!(
        "SELECT dovuto_centesimi, versato_centesimi FROM imu_posizioni WHERE identificativo = '{id}' AND anno = 2024"
    )))
    .fetch_one(s.raw())
    .await
    .unwrap();
    let (dovuto, versato): (i64, i64) = (pos.try_get(0).unwrap(), pos.try_get(1).unwrap());
    let a = s
        .post(
            "/tributi/v1/imu/posizione",
            json!({"soggetto": id, "anno": anno}),
        )
        .await;
    assert_ok(&a, "imu/posizione");
    assert_eq!(a.subject.as_deref(), Some(id.as_str()));
    assert_eq!(
        a.json(),
        json!({"immobili": immobili, "dovuto": euro(dovuto), "versato": euro(versato),
               "saldo": euro(dovuto - versato), "dataAggiornamento": agg})
    );

    // TARI of a company (partita IVA subject).
    let piva = one_text(
        s.raw(),
        "SELECT identificativo FROM contribuenti WHERE tipo = 'PNF' ORDER BY identificativo LIMIT 1",
    )
    .await;
    assert_eq!(piva.len(), 11);
    let u = sqlx::query(AssertSqlSafe(format!(
        "SELECT dug, toponimo, civico, cap, codice_istat_comune, superficie_mq, occupanti, categoria \
         FROM tari_utenze WHERE identificativo = '{piva}' AND anno_inizio <= 2024 ORDER BY progressivo"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    let utenze: Vec<Value> = u
        .iter()
        .map(|r| {
            json!({"indirizzo": {"dug": r.try_get::<String, _>(0).unwrap(), "toponimo": r.try_get::<String, _>(1).unwrap(),
                    "civico": r.try_get::<String, _>(2).unwrap(), "cap": r.try_get::<String, _>(3).unwrap(),
                    "codiceIstatComune": r.try_get::<String, _>(4).unwrap()},
                   "superficieMq": r.try_get::<i64, _>(5).unwrap(), "occupanti": r.try_get::<i64, _>(6).unwrap(),
                   "categoria": r.try_get::<String, _>(7).unwrap()})
        })
        .collect();
    let totals = sqlx::query(AssertSqlSafe(format!(
        "SELECT importo_centesimi, pagato_centesimi FROM tari_posizioni WHERE identificativo = '{piva}' AND anno = 2024"
    )))
    .fetch_optional(s.raw())
    .await
    .unwrap();
    let (importo, pagato): (i64, i64) = totals
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .unwrap_or((0, 0));
    let rate = sqlx::query(AssertSqlSafe(format!(
        "SELECT rata, data_scadenza, importo_centesimi FROM tari_rate WHERE identificativo = '{piva}' AND anno = 2024 ORDER BY rata"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    let scadenze: Vec<Value> = rate
        .iter()
        .map(|r| json!({"rata": r.try_get::<i64, _>(0).unwrap(), "dataScadenza": r.try_get::<String, _>(1).unwrap(),
                        "importo": euro(r.try_get::<i64, _>(2).unwrap())}))
        .collect();
    let a = s
        .post(
            "/tributi/v1/tari/posizione",
            json!({"soggetto": piva, "anno": anno}),
        )
        .await;
    assert_ok(&a, "tari/posizione");
    assert_eq!(
        a.json(),
        json!({"utenze": utenze, "importo": euro(importo), "pagato": euro(pagato),
               "scadenze": scadenze, "dataAggiornamento": agg})
    );

    // Regolarita: a subject with an unpaid year, and one without.
    let debtor = one_text(
        s.raw(),
        "SELECT identificativo FROM tari_posizioni WHERE pagato_centesimi < importo_centesimi \
         ORDER BY identificativo LIMIT 1",
    )
    .await;
    let anni = sqlx::query(AssertSqlSafe(format!(
        "SELECT anno FROM imu_posizioni WHERE identificativo = '{debtor}' AND versato_centesimi < dovuto_centesimi \
         UNION SELECT anno FROM tari_posizioni WHERE identificativo = '{debtor}' AND pagato_centesimi < importo_centesimi"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    let mut anni: Vec<i64> = anni
        .iter()
        .map(|r| r.try_get::<i64, _>(0).unwrap())
        .collect();
    anni.sort_unstable();
    assert!(!anni.is_empty());
    let a = s
        .post("/tributi/v1/regolarita", json!({"soggetto": debtor}))
        .await;
    assert_ok(&a, "regolarita");
    assert_eq!(
        a.json(),
        json!({"regolare": false, "anniConDebitoAperto": anni, "dataAggiornamento": agg})
    );
    let regular = one_text(
        s.raw(),
        "SELECT c.identificativo FROM contribuenti c WHERE NOT EXISTS (SELECT 1 FROM tari_posizioni t \
         WHERE t.identificativo = c.identificativo AND t.pagato_centesimi < t.importo_centesimi) \
         AND NOT EXISTS (SELECT 1 FROM imu_posizioni i WHERE i.identificativo = c.identificativo \
         AND i.versato_centesimi < i.dovuto_centesimi) ORDER BY c.identificativo LIMIT 1",
    )
    .await;
    let a = s
        .post("/tributi/v1/regolarita", json!({"soggetto": regular}))
        .await;
    assert_eq!(
        a.json(),
        json!({"regolare": true, "anniConDebitoAperto": [], "dataAggiornamento": agg})
    );

    // Pagamenti of the IMU subject.
    let pays = sqlx::query(AssertSqlSafe(format!(
        "SELECT iuv, tributo, importo_centesimi, data_pagamento FROM pagamenti \
         WHERE identificativo = '{id}' AND anno = 2024 ORDER BY data_pagamento, iuv"
    )))
    .fetch_all(s.raw())
    .await
    .unwrap();
    assert!(!pays.is_empty());
    let expected: Vec<Value> = pays
        .iter()
        .map(|r| {
            let iuv: String = r.try_get(0).unwrap();
            assert!(iuv.len() == 17 && iuv.bytes().all(|b| b.is_ascii_digit()), "{iuv}");
            json!({"iuv": iuv, "tributo": r.try_get::<String, _>(1).unwrap(),
                   "importo": euro(r.try_get::<i64, _>(2).unwrap()), "data": r.try_get::<String, _>(3).unwrap()})
        })
        .collect();
    let a = s
        .post(
            "/tributi/v1/pagamenti",
            json!({"soggetto": id, "anno": anno}),
        )
        .await;
    assert_ok(&a, "pagamenti");
    assert_eq!(
        a.json(),
        json!({"pagamenti": expected, "dataAggiornamento": agg})
    );
    assert_eq!(a.keys(), keys(&["pagamenti", "dataAggiornamento"]));
}

async fn unknown_subjects_are_404(db: Db) {
    let Some(s) = srv(db).await else { return };
    let addr = json!({"dug": "VIA", "toponimo": "ROMA", "civico": "1", "cap": "56125", "codiceIstatComune": "050026"});
    let cases = [
        (
            "/anagrafe/v1/residenza",
            json!({"codiceFiscale": UNKNOWN_CF}),
        ),
        (
            "/anagrafe/v1/generalita",
            json!({"codiceFiscale": UNKNOWN_CF}),
        ),
        (
            "/anagrafe/v1/stato-famiglia",
            json!({"codiceFiscale": UNKNOWN_CF}),
        ),
        (
            "/anagrafe/v1/esistenza-in-vita",
            json!({"codiceFiscale": UNKNOWN_CF}),
        ),
        (
            "/anagrafe/v1/verifica-residenza",
            json!({"codiceFiscale": UNKNOWN_CF, "indirizzo": addr}),
        ),
        (
            "/tributi/v1/imu/posizione",
            json!({"soggetto": UNKNOWN_CF, "anno": 2024}),
        ),
        (
            "/tributi/v1/tari/posizione",
            json!({"soggetto": UNKNOWN_PIVA, "anno": 2024}),
        ),
        ("/tributi/v1/regolarita", json!({"soggetto": UNKNOWN_PIVA})),
        (
            "/tributi/v1/pagamenti",
            json!({"soggetto": UNKNOWN_CF, "anno": 2024}),
        ),
    ];
    for (path, body) in cases {
        let a = s.post(path, body).await;
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(a.content_type, "application/problem+json", "{path}");
        let p = a.json();
        assert_eq!(p["status"], 404, "{path}");
        assert_eq!(p["title"], "Not Found", "{path}");
        assert!(
            !String::from_utf8_lossy(&a.bytes).contains(UNKNOWN_CF),
            "no personal data in errors"
        );
    }
}

async fn bad_input_is_400_413_415(db: Db) {
    let Some(s) = srv(db).await else { return };
    let cf = one_text(
        s.raw(),
        "SELECT codice_fiscale FROM persone ORDER BY codice_fiscale LIMIT 1",
    )
    .await;
    let long = "A".repeat(101);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("/anagrafe/v1/residenza", b"{not json".to_vec(), "not valid JSON"),
        ("/anagrafe/v1/residenza", b"".to_vec(), "not valid JSON"),
        ("/anagrafe/v1/residenza", format!(r#"{{"codiceFiscale":"{cf}","extra":1}}"#).into_bytes(), "unknown field `extra`"),
        ("/anagrafe/v1/residenza", br#"{"codiceFiscale":12}"#.to_vec(), "`codiceFiscale`"),
        ("/anagrafe/v1/residenza", br#"{}"#.to_vec(), "missing field `codiceFiscale`"),
        ("/anagrafe/v1/generalita", br#"{"codiceFiscale":"RSSMRA85T10A562T"}"#.to_vec(), "check character"),
        ("/anagrafe/v1/generalita", br#"{"codiceFiscale":"RSSMRA85T10A562SS"}"#.to_vec(), "`codiceFiscale`"),
        ("/anagrafe/v1/verifica-residenza",
            format!(r#"{{"codiceFiscale":"{cf}","indirizzo":{{"dug":"VIA","toponimo":"{long}","civico":"1","cap":"56125","codiceIstatComune":"050026"}}}}"#).into_bytes(),
            "`indirizzo.toponimo`"),
        ("/anagrafe/v1/verifica-residenza",
            format!(r#"{{"codiceFiscale":"{cf}","indirizzo":{{"dug":"VIA","toponimo":"ROMA","civico":"1","cap":"5612","codiceIstatComune":"050026"}}}}"#).into_bytes(),
            "`indirizzo.cap`"),
        ("/tributi/v1/imu/posizione", format!(r#"{{"soggetto":"{cf}","anno":2101}}"#).into_bytes(), "`anno`"),
        ("/tributi/v1/imu/posizione", format!(r#"{{"soggetto":"{cf}","anno":"2024"}}"#).into_bytes(), "`anno`"),
        ("/tributi/v1/regolarita", br#"{"soggetto":"07643520568"}"#.to_vec(), "`soggetto`"),
        ("/tributi/v1/pagamenti", br#"{"soggetto":"0764352056","anno":2024}"#.to_vec(), "`soggetto`"),
    ];
    for (path, body, needle) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let a = s.post_raw(path, Some("application/json"), body).await;
        assert_eq!(a.status, 400, "{path} {shown}");
        assert_eq!(a.content_type, "application/problem+json", "{path} {shown}");
        assert_eq!(a.x_cache, None, "errors are never cached");
        assert_eq!(a.subject, None, "no data subject before the body parsed");
        let detail = a.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(
            detail.contains(needle),
            "{path} {shown}: detail {detail:?} lacks {needle:?}"
        );
    }

    let body = format!(r#"{{"codiceFiscale":"{cf}"}}"#).into_bytes();
    let a = s
        .post_raw("/anagrafe/v1/residenza", None, body.clone())
        .await;
    assert_eq!(a.status, 415);
    assert_eq!(a.content_type, "application/problem+json");
    let a = s
        .post_raw("/anagrafe/v1/residenza", Some("text/plain"), body)
        .await;
    assert_eq!(a.status, 415);

    let mut big = format!(r#"{{"codiceFiscale":"{cf}","pad":""#).into_bytes();
    big.extend(std::iter::repeat_n(b' ', 16 * 1024));
    big.extend(b"\"}");
    let a = s
        .post_raw("/anagrafe/v1/residenza", Some("application/json"), big)
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.content_type, "application/problem+json");

    // Just under the limit is accepted (whitespace is valid JSON).
    let mut fits = format!(r#"{{"codiceFiscale":"{cf}"}}"#).into_bytes();
    fits.extend(std::iter::repeat_n(b' ', 16 * 1024 - fits.len()));
    let a = s
        .post_raw("/anagrafe/v1/residenza", Some("application/json"), fits)
        .await;
    assert_eq!(a.status, 200);
}

async fn cache_hits_are_byte_identical_and_expire(db: Db) {
    let Some(s) = common::server(
        db,
        CacheConfig {
            ttl_secs: 1,
            max_entries: 100,
        },
    )
    .await
    else {
        return;
    };
    let cf = one_text(
        s.raw(),
        "SELECT codice_fiscale FROM persone ORDER BY codice_fiscale LIMIT 1",
    )
    .await;
    let first = s
        .post("/anagrafe/v1/generalita", json!({"codiceFiscale": cf}))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache.as_deref(), Some("miss"));
    let second = s
        .post(
            "/anagrafe/v1/generalita",
            json!({"codiceFiscale": cf.to_lowercase()}),
        )
        .await;
    assert_eq!(
        second.x_cache.as_deref(),
        Some("hit"),
        "normalised request hits"
    );
    assert_eq!(second.bytes, first.bytes);
    assert_eq!(second.content_type, "application/json");
    assert_eq!(
        second.subject.as_deref(),
        Some(cf.as_str()),
        "subject recorded on hits too"
    );

    // Another operation on the same subject is a different entry.
    let other = s
        .post("/anagrafe/v1/residenza", json!({"codiceFiscale": cf}))
        .await;
    assert_eq!(other.x_cache.as_deref(), Some("miss"));

    // 404s are cached too, with their problem body.
    let nf1 = s
        .post("/tributi/v1/regolarita", json!({"soggetto": UNKNOWN_PIVA}))
        .await;
    let nf2 = s
        .post("/tributi/v1/regolarita", json!({"soggetto": UNKNOWN_PIVA}))
        .await;
    assert_eq!((nf1.status, nf2.status), (404, 404));
    assert_eq!(nf1.x_cache.as_deref(), Some("miss"));
    assert_eq!(nf2.x_cache.as_deref(), Some("hit"));
    assert_eq!(nf1.bytes, nf2.bytes);
    assert_eq!(nf2.content_type, "application/problem+json");

    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let third = s
        .post("/anagrafe/v1/generalita", json!({"codiceFiscale": cf}))
        .await;
    assert_eq!(
        third.x_cache.as_deref(),
        Some("miss"),
        "expired after the TTL"
    );
    assert_eq!(third.bytes, first.bytes);
}

async fn disabled_cache_always_misses(db: Db) {
    let Some(s) = common::server(
        db,
        CacheConfig {
            ttl_secs: 0,
            max_entries: 100,
        },
    )
    .await
    else {
        return;
    };
    let cf = one_text(
        s.raw(),
        "SELECT codice_fiscale FROM persone ORDER BY codice_fiscale LIMIT 1",
    )
    .await;
    for _ in 0..2 {
        let a = s
            .post("/anagrafe/v1/generalita", json!({"codiceFiscale": cf}))
            .await;
        assert_eq!(a.x_cache.as_deref(), Some("miss"));
    }
}

on_both_engines!(
    anagrafe_answers_match_the_tables,
    tributi_answers_match_the_tables,
    unknown_subjects_are_404,
    bad_input_is_400_413_415,
    cache_hits_are_byte_identical_and_expire,
    disabled_cache_always_misses,
);
