//! The contracts and their documentation page on the running gateway, over real HTTP: each
//! e-service's document at `/{eservice}/v1/openapi.{json,yaml}` without a voucher, the same
//! document the code generates for the running configuration; a Swagger UI page whose every
//! asset comes from the binary and that names no outside host (a comune's network may have no
//! internet); and the documents' request examples are real subjects of the seeded sample.

use e2e::Harness;
use eservices::Eservice;
use gateway::dev::sample;
use gateway::openapi::{self, DocumentFormat};
use reqwest::StatusCode;
use serde_json::Value;

async fn get(h: &Harness, path: &str) -> reqwest::Response {
    h.http
        .get(h.public(path))
        .send()
        .await
        .expect("request sent")
}

fn content_type(resp: &reqwest::Response) -> String {
    e2e::header(resp, "content-type")
        .as_deref()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn documents_are_served_without_a_voucher_and_match_the_code() {
    let h = Harness::start().await;
    for &eservice in Eservice::all() {
        let expected = openapi::document(eservice, &h.env.config);

        let resp = get(&h, openapi::document_path(eservice, DocumentFormat::Json)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{}", eservice.id());
        assert_eq!(content_type(&resp), "application/json");
        let json: Value = resp.json().await.expect("JSON document");
        assert_eq!(json, expected, "{}", eservice.id());

        let resp = get(&h, openapi::document_path(eservice, DocumentFormat::Yaml)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(content_type(&resp), openapi::YAML_MEDIA_TYPE);
        let text = resp.text().await.expect("YAML text");
        let rendered = openapi::render(&expected, DocumentFormat::Yaml).expect("YAML rendering");
        assert_eq!(text, rendered, "{}", eservice.id());

        // The server is the configured public URL, the one consumers call.
        let public_url = match eservice {
            Eservice::Anagrafe => &h.env.config.eservices.anagrafe.public_url,
            Eservice::Tributi => &h.env.config.eservices.tributi.public_url,
        };
        assert_eq!(json["servers"][0]["url"], public_url.as_str());
    }
    // Next to the documents, the operations still want a voucher.
    let resp = h
        .post(
            "/anagrafe/v1/residenza",
            None,
            &serde_json::json!({ "codiceFiscale": h.sample_cf() }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// `src="..."` and `href="..."` values of an HTML page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            if let Some(value) = part.split('"').next() {
                found.push(value.to_owned());
            }
        }
    }
    found
}

/// Every `http://` or `https://` URL in a text that is not the gateway's own address.
fn outside_urls(text: &str, own: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in text.match_indices(scheme) {
            let url: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ')' | '<'))
                .collect();
            if !url.starts_with(own) {
                found.push(url);
            }
        }
    }
    found
}

#[tokio::test]
async fn docs_page_works_offline_from_the_binary() {
    let h = Harness::start().await;
    let own = h.public("");

    let resp = get(&h, openapi::DOCS_PATH).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(content_type(&resp).starts_with("text/html"));
    let html = resp.text().await.expect("HTML");
    assert!(html.contains("swagger-ui"), "{html}");
    assert_eq!(outside_urls(&html, &own), Vec::<String>::new(), "{html}");

    // Every asset the page loads is relative and served by the gateway itself.
    let assets = references(&html);
    for needed in [
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ] {
        assert!(
            assets.iter().any(|a| a.ends_with(needed)),
            "{needed} not referenced: {assets:?}"
        );
    }
    for asset in &assets {
        assert!(
            !asset.contains("://") && !asset.starts_with("//"),
            "asset from elsewhere: {asset}"
        );
        let path = format!("{}{}", openapi::DOCS_PATH, asset.trim_start_matches("./"));
        let resp = get(&h, &path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let body = resp.bytes().await.expect("asset body");
        assert!(!body.is_empty(), "{path} is empty");
        if path.ends_with(".css") {
            let css = String::from_utf8_lossy(&body);
            assert!(
                !css.contains("@import"),
                "{path} imports another stylesheet"
            );
        }
    }

    // The initializer lists both documents by their local paths and turns the online
    // validator off.
    let init = get(&h, &format!("{}swagger-initializer.js", openapi::DOCS_PATH))
        .await
        .text()
        .await
        .expect("initializer");
    assert_eq!(outside_urls(&init, &own), Vec::<String>::new(), "{init}");
    for &eservice in Eservice::all() {
        assert!(
            init.contains(openapi::document_path(eservice, DocumentFormat::Json)),
            "{init}"
        );
    }
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");

    // `/docs` leads to the page.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirect
        .get(h.public("/docs"))
        .send()
        .await
        .expect("request sent");
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert_eq!(
        e2e::header(&resp, "location").as_deref(),
        Some(openapi::DOCS_PATH)
    );
}

#[test]
fn outside_url_detection_can_fail() {
    let own = "http://127.0.0.1:8080";
    assert!(outside_urls("<script src=\"http://127.0.0.1:8080/docs/x.js\">", own).is_empty());
    assert_eq!(
        outside_urls("<script src=\"https://cdn.jsdelivr.net/npm/x\">", own),
        vec!["https://cdn.jsdelivr.net/npm/x".to_owned()]
    );
    assert_eq!(
        references("<link href=\"./a.css\"><script src=\"b.js\">"),
        vec!["b.js".to_owned(), "./a.css".to_owned()]
    );
}

/// The request example of each operation, as the document states it.
fn request_example(doc: &Value, path: &str) -> Value {
    let schema =
        &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("{path}: request schema is not a component: {schema}"));
    doc["components"]["schemas"][name]["example"].clone()
}

#[tokio::test]
async fn request_examples_are_real_subjects_of_the_sample() {
    let h = Harness::start().await;
    for &eservice in Eservice::all() {
        let purpose = match eservice {
            Eservice::Anagrafe => sample::ANAGRAFE_FULL.purpose_id,
            Eservice::Tributi => sample::TRIBUTI_FULL.purpose_id,
        };
        let voucher = h.voucher(purpose).await;
        let doc = openapi::document(eservice, &h.env.config);
        for op in eservices::Operation::all()
            .iter()
            .filter(|o| o.eservice() == eservice)
        {
            let example = request_example(&doc, op.path());
            assert!(example.is_object(), "{}: no request example", op.id());
            let path = format!("{}{}", eservice.base_path(), op.path());
            let resp = h.post(&path, Some(&voucher), &example).await;
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{path} with the documented example {example}"
            );
        }
    }
}
