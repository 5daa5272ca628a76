//! The purpose stage over real HTTP: a valid voucher is not enough, its purpose must be
//! registered, active, for this e-service and granted this operation; refusals are 403
//! problem+json that name the operation and nothing else. Edits of the purposes file apply
//! without a restart.

use e2e::{now, sign_rs256, voucher_header, Harness};
use gateway::dev::sample;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn call(h: &Harness, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
    let resp = h.post(path, Some(token), body).await;
    let status = resp.status();
    let ctype = e2e::header(&resp, "content-type")
        .as_deref()
        .unwrap_or("")
        .to_owned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == StatusCode::FORBIDDEN {
        assert_eq!(ctype, "application/problem+json");
    }
    (status, body)
}

fn verifica_body(cf: &str) -> Value {
    json!({
        "codiceFiscale": cf,
        "indirizzo": {"dug": "VIA", "toponimo": "ROMA", "civico": "1", "cap": "56100", "codiceIstatComune": "050026"}
    })
}

#[tokio::test]
async fn purposes_are_authorised_per_operation() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let verifica = h.voucher(sample::ANAGRAFE_VERIFICA.purpose_id).await;
    // Granted: verifica-residenza. Not granted: residenza (the address).
    let (status, body) = call(
        &h,
        "/anagrafe/v1/verifica-residenza",
        &verifica,
        &verifica_body(&cf),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &h,
        "/anagrafe/v1/residenza",
        &verifica,
        &json!({"codiceFiscale": cf}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let detail = body["detail"].as_str().unwrap_or("");
    assert!(detail.contains("residenza"), "{detail}");
    // Never other purposes or consumers.
    for secret in [
        sample::ANAGRAFE_FULL.purpose_id,
        sample::ANAGRAFE_VERIFICA.purpose_id,
        sample::CONSUMER_ID,
    ] {
        assert!(!body.to_string().contains(secret), "{body}");
    }
    // The full purpose gets every anagrafe operation it asks for.
    let full = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    for (path, body) in [
        ("/anagrafe/v1/residenza", json!({"codiceFiscale": cf})),
        ("/anagrafe/v1/generalita", json!({"codiceFiscale": cf})),
        ("/anagrafe/v1/stato-famiglia", json!({"codiceFiscale": cf})),
        (
            "/anagrafe/v1/esistenza-in-vita",
            json!({"codiceFiscale": cf}),
        ),
        ("/anagrafe/v1/verifica-residenza", verifica_body(&cf)),
    ] {
        let (status, answer) = call(&h, path, &full, &body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
}

#[tokio::test]
async fn forged_purposes_get_403_and_ids_other_than_configured_get_401() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let key = h.authority_key_pem();
    let kid = h.authority_kid();
    let body = json!({"codiceFiscale": cf});
    let sign = |claims: &Value| sign_rs256(voucher_header(&kid), claims, &key);
    let good = h.good_claims(now());
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut c = good.clone();
    c["purposeId"] = json!(uuid::Uuid::new_v4().to_string());
    cases.push(("unknown purpose", c));
    let mut c = good.clone();
    c["purposeId"] = json!(sample::TRIBUTI_FULL.purpose_id);
    cases.push(("purpose of another e-service", c));
    let mut c = good.clone();
    c["consumerId"] = json!(uuid::Uuid::new_v4().to_string());
    cases.push(("consumerId mismatch", c));
    for (name, claims) in &cases {
        let (status, answer) = call(&h, "/anagrafe/v1/residenza", &sign(claims), &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {answer}");
    }
    // The ids the configuration sets (dev sets all three) are the voucher stage's: another
    // value, or none, makes the voucher invalid for this gateway (401), before any purpose.
    let mut invalid: Vec<(&str, Value)> = Vec::new();
    let mut c = good.clone();
    c["eserviceId"] = json!(uuid::Uuid::new_v4().to_string());
    invalid.push(("eserviceId mismatch", c));
    let mut c = good.clone();
    c["descriptorId"] = json!(uuid::Uuid::new_v4().to_string());
    invalid.push(("descriptorId mismatch", c));
    let mut c = good.clone();
    c["producerId"] = json!(uuid::Uuid::new_v4().to_string());
    invalid.push(("producerId mismatch", c));
    let mut c = good.clone();
    c.as_object_mut().expect("object").remove("producerId");
    invalid.push(("producerId absent while configured", c));
    for (name, claims) in &invalid {
        let (status, answer) = call(&h, "/anagrafe/v1/residenza", &sign(claims), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {answer}");
    }
    // Ids only the purpose records repeat (a gateway configured without them) are the purpose
    // stage's: the same vouchers get 403 there.
    let lenient = h
        .start_consumer(|c| {
            c.comune.producer_id = None;
            c.eservices.anagrafe.eservice_id = None;
            c.eservices.anagrafe.descriptor_id = None;
        })
        .await;
    for (name, claims) in &invalid {
        let resp = lenient
            .http
            .post(lenient.public("/anagrafe/v1/residenza"))
            .bearer_auth(sign(claims))
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{name} (purpose record)"
        );
    }
    // The unaltered claims pass: the refusals above are due to the one change each.
    let (status, answer) = call(&h, "/anagrafe/v1/residenza", &sign(&good), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn suspending_a_purpose_in_the_file_applies_without_restart() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let full = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let body = json!({"codiceFiscale": cf});
    let (status, _) = call(&h, "/anagrafe/v1/residenza", &full, &body).await;
    assert_eq!(status, StatusCode::OK);
    let path = h.env.config.purposes.file.clone();
    let text = std::fs::read_to_string(&path).expect("purposes file");
    // Suspend the first purpose (the full anagrafe one) and only it.
    let marker = format!("purpose_id = \"{}\"", sample::ANAGRAFE_FULL.purpose_id);
    assert!(text.contains(&marker), "{text}");
    let edited = text.replacen(&marker, &format!("{marker}\nstate = \"suspended\""), 1);
    // Make sure the modification time moves even on coarse file systems.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, remove_state_after(&edited, &marker)).expect("write");
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, _) = call(&h, "/anagrafe/v1/residenza", &full, &body).await;
        if status == StatusCode::FORBIDDEN {
            refused = true;
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    assert!(refused, "suspension not applied within 10 s");
    // Another purpose is untouched.
    let verifica = h.voucher(sample::ANAGRAFE_VERIFICA.purpose_id).await;
    let (status, _) = call(
        &h,
        "/anagrafe/v1/verifica-residenza",
        &verifica,
        &verifica_body(&cf),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A broken file keeps the registry as it was.
    std::fs::write(&path, "this is [not toml").expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = call(
        &h,
        "/anagrafe/v1/verifica-residenza",
        &verifica,
        &verifica_body(&cf),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The file has one `state = "active"` line per purpose; after inserting `suspended` for one
/// purpose, drop that purpose's own `active` line so the table has a single `state` key.
fn remove_state_after(text: &str, marker: &str) -> String {
    let Some(start) = text.find(marker) else {
        return text.to_owned();
    };
    let (head, tail) = text.split_at(start);
    let next_table = tail[1..]
        .find("[[purpose]]")
        .map(|i| i + 1)
        .unwrap_or(tail.len());
    let (this, rest) = tail.split_at(next_table);
    format!(
        "{head}{}{rest}",
        this.replacen("state = \"active\"\n", "", 1)
    )
}

#[tokio::test]
async fn purposes_from_the_database_apply_without_restart() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let key = h.authority_key_pem();
    let kid = h.authority_kid();
    let purpose_id = uuid::Uuid::new_v4().to_string();
    let mut claims = h.good_claims(now());
    claims["purposeId"] = json!(purpose_id);
    let token = sign_rs256(voucher_header(&kid), &claims, &key);
    let body = json!({"codiceFiscale": cf});
    // Not in the file, not in the table: refused.
    let (status, _) = call(&h, "/anagrafe/v1/residenza", &token, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let store = gateway::provider::audit::AuditStore::connect(&h.env.config.audit.url)
        .await
        .expect("gateway db");
    let pool = store.pool().clone();
    let exec = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("sql")
        }
    };
    exec(format!(
        "INSERT INTO purposes (purpose_id, consumer_name, eservice, operations, state) \
         VALUES ('{purpose_id}', 'Ente di prova', 'anagrafe', 'generalita,residenza', 'active')"
    ))
    .await;
    let wait_for = |expected: StatusCode| {
        let (h, token, body) = (&h, token.clone(), body.clone());
        async move {
            for _ in 0..40 {
                let (status, _) = call(h, "/anagrafe/v1/residenza", &token, &body).await;
                if status == expected {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            false
        }
    };
    assert!(
        wait_for(StatusCode::OK).await,
        "a purpose inserted in the table was not applied within 10 s"
    );
    // Granted operations only.
    let (status, _) = call(&h, "/anagrafe/v1/stato-famiglia", &token, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    exec(format!(
        "UPDATE purposes SET state = 'suspended' WHERE purpose_id = '{purpose_id}'"
    ))
    .await;
    assert!(
        wait_for(StatusCode::FORBIDDEN).await,
        "suspension in the table not applied within 10 s"
    );
    // An invalid row leaves the previous records in force (the suspension stays).
    exec("INSERT INTO purposes (purpose_id, consumer_name, eservice, operations) VALUES ('not-a-uuid', 'x', 'anagrafe', 'residenza')".to_owned()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = call(&h, "/anagrafe/v1/residenza", &token, &body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
