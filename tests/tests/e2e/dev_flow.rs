//! The newcomer's path over real sockets: the voucher CLI's code obtains a voucher from the
//! local authority, the anagrafe answers with the resident's data, a tampered voucher is refused,
//! and the edges (bad input, unknown subject, status, request id) answer problem+json.

use e2e::Harness;
use gateway::dev::sample;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn voucher_then_residenza_then_tampered() {
    let h = Harness::start().await;
    let cf = h.sample_cf();
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;

    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&voucher),
            &json!({ "codiceFiscale": cf }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["residente"], true, "{body}");
    for field in ["dug", "toponimo", "civico", "cap", "codiceIstatComune"] {
        assert!(
            body["indirizzo"][field].is_string(),
            "indirizzo.{field} missing: {body}"
        );
    }
    assert!(body["dataAggiornamento"].is_string(), "{body}");

    // Flip one character of the signature: 401.
    let mut tampered = voucher.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&tampered),
            &json!({ "codiceFiscale": cf }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        e2e::header(&resp, "www-authenticate").as_deref(),
        Some("Bearer realm=\"pdnd-gateway\", error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn bad_and_unknown_codice_fiscale() {
    let h = Harness::start().await;
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let cf = h.sample_cf();
    // Change the check character: a well-formed but invalid codice fiscale.
    let mut wrong_check: Vec<char> = cf.chars().collect();
    let last = wrong_check.len() - 1;
    wrong_check[last] = if wrong_check[last] == 'A' { 'B' } else { 'A' };
    let wrong_check: String = wrong_check.into_iter().collect();
    for bad in [
        wrong_check.as_str(),
        "RSSMRA80A01H501",
        "not a codice fiscale",
        "",
    ] {
        let resp = h
            .post(
                "/anagrafe/v1/residenza",
                Some(&voucher),
                &json!({ "codiceFiscale": bad }),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            e2e::header(&resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
        let body: Value = resp.json().await.expect("problem");
        assert_eq!(body["status"], 400);
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or("")
                .contains("codiceFiscale"),
            "{body}"
        );
    }
    // Valid codice fiscale of nobody in the registry: 404.
    let nobody = "XXXYYY80A01H501";
    let check = eservices::codice_fiscale::compute_check_char(nobody).expect("check char");
    let nobody = format!("{nobody}{check}");
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            Some(&voucher),
            &json!({ "codiceFiscale": nobody }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn status_request_id_and_unknown_paths() {
    let h = Harness::start().await;
    for url in [
        h.public("/status"),
        h.internal("/status"),
        h.public("/anagrafe/v1/status"),
    ] {
        let resp = h.http.get(&url).send().await.expect("status");
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(
            e2e::header(&resp, "content-type").as_deref(),
            Some("application/problem+json")
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["status"], 200);
    }
    // A sane request id is echoed; an insane one is replaced.
    let resp = h
        .http
        .get(h.public("/status"))
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .expect("status");
    assert_eq!(
        e2e::header(&resp, "x-request-id").as_deref(),
        Some("abc-123")
    );
    let resp = h
        .http
        .get(h.public("/status"))
        .header("X-Request-Id", "a b c")
        .send()
        .await
        .expect("status");
    let id = e2e::header(&resp, "x-request-id")
        .as_deref()
        .unwrap_or("")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    // Refusals carry it too.
    let resp = h.post("/anagrafe/v1/residenza", None, &json!({})).await;
    assert!(resp.headers().get("x-request-id").is_some());
    // Unknown path: problem+json 404.
    let resp = h
        .http
        .get(h.public("/nothing/here"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        e2e::header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
}
