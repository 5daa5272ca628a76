//! One routing decision: every spelling of an operation's path either reaches that operation,
//! with the purpose check and the audit record of that operation, or reaches nothing.
//!
//! Each operation gets two purposes of its own e-service: one granted only that operation and
//! one granted every other operation but that one. A matrix of spellings of each path
//! (percent-encoding of each character in turn in both hex cases, encoded `/`, case changes,
//! trailing and double slashes, dot segments, `;` parameters, query strings, other methods) is
//! sent over a raw socket, so no client library normalises it, with the voucher NOT granted the
//! operation: never a 2xx, never data. A property test sends random percent-encodings with
//! either voucher and requires the same decision as the canonical path, and the audit record
//! of every routed request names the operation that ran.

use e2e::{now, raw_request, sign_rs256, voucher_header, Harness, RawResponse};
use eservices::Operation;
use gateway::provider::audit::{AuditQuery, AuditStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// The vouchers of one operation: granted it alone, and granted everything else.
struct OpVouchers {
    granted: String,
    not_granted: String,
}

struct Setup {
    h: Harness,
    audit: AuditStore,
    vouchers: HashMap<Operation, OpVouchers>,
    cf: String,
}

fn body_for(op: Operation, cf: &str) -> Value {
    match op {
        Operation::VerificaResidenza => json!({
            "codiceFiscale": cf,
            "indirizzo": {"dug": "VIA", "toponimo": "ROMA", "civico": "1", "cap": "56100", "codiceIstatComune": "050026"}
        }),
        Operation::ImuPosizione | Operation::TariPosizione | Operation::Pagamenti => {
            json!({"soggetto": cf, "anno": 2024})
        }
        Operation::Regolarita => json!({"soggetto": cf}),
        _ => json!({"codiceFiscale": cf}),
    }
}

fn full_path(op: Operation) -> String {
    format!("{}{}", op.eservice().base_path(), op.path())
}

impl Setup {
    async fn start() -> Setup {
        let h = Harness::start().await;
        let cf = h.sample_cf();
        let audit = AuditStore::connect(&h.env.config.audit.url)
            .await
            .expect("gateway db");
        let key = h.authority_key_pem();
        let kid = h.authority_kid();
        let mut vouchers = HashMap::new();
        for &op in Operation::all() {
            let eservice = op.eservice();
            let others: Vec<&str> = eservices::route::operations(eservice)
                .filter(|o| *o != op)
                .map(|o| o.id())
                .collect();
            let mut ids = Vec::new();
            for operations in [op.id().to_owned(), others.join(",")] {
                let purpose_id = uuid::Uuid::new_v4().to_string();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO purposes (purpose_id, consumer_name, eservice, operations, state) \
                     VALUES ('{purpose_id}', 'Ente di prova', '{}', '{operations}', 'active')",
                    eservice.id()
                )))
                .execute(audit.pool())
                .await
                .expect("insert purpose");
                ids.push(purpose_id);
            }
            let cfg = &h.env.config;
            let es = cfg.eservices.get(eservice);
            let token = |purpose_id: &str| {
                let mut claims = h.good_claims(now());
                claims["purposeId"] = json!(purpose_id);
                claims["aud"] = json!(es.audiences.join(","));
                claims["eserviceId"] = json!(es.eservice_id);
                claims["descriptorId"] = json!(es.descriptor_id);
                claims["exp"] = json!(now() + 3600);
                sign_rs256(voucher_header(&kid), &claims, &key)
            };
            vouchers.insert(
                op,
                OpVouchers {
                    granted: token(&ids[0]),
                    not_granted: token(&ids[1]),
                },
            );
        }
        let setup = Setup {
            h,
            audit,
            vouchers,
            cf,
        };
        // The table is re-read every 2 s: wait until the last purpose applies.
        let last = *Operation::all().last().expect("operations");
        for _ in 0..60 {
            let r = setup
                .send(
                    "POST",
                    &full_path(last),
                    &setup.vouchers[&last].granted,
                    last,
                )
                .await;
            if r.status != 403 {
                return setup;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the purposes inserted in the table were not applied within 15 s");
    }

    async fn send(&self, method: &str, target: &str, token: &str, op: Operation) -> RawResponse {
        let body = body_for(op, &self.cf).to_string();
        let auth = format!("Bearer {token}");
        raw_request(
            self.h.env.running.public,
            method,
            target,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
    }

    /// The operation the audit trail recorded for a request id (the record of an authenticated
    /// request is committed before its answer is sent).
    async fn audited_operation(&self, request_id: &str) -> Option<Option<String>> {
        let records = self
            .audit
            .query(&AuditQuery {
                request_id: Some(request_id.to_owned()),
                ..Default::default()
            })
            .await
            .expect("audit query");
        records.first().map(|r| r.operation.clone())
    }
}

/// Percent-encodes the byte at `i` of `s` (hex in the given case).
fn encode_at(s: &str, i: usize, upper: bool) -> String {
    let b = s.as_bytes()[i];
    let enc = if upper {
        format!("%{b:02X}")
    } else {
        format!("%{b:02x}")
    };
    format!("{}{}{}", &s[..i], enc, &s[i + 1..])
}

/// Spellings of `path` that are not the path itself.
fn spellings(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..path.len() {
        out.push(encode_at(path, i, true));
        out.push(encode_at(path, i, false));
    }
    // Case changes: whole path, each segment capitalised in turn.
    out.push(path.to_uppercase());
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() {
            continue;
        }
        let mut changed = segments.clone();
        let cap = format!("{}{}", seg[..1].to_uppercase(), &seg[1..]);
        changed[i] = &cap;
        out.push(changed.join("/"));
    }
    // Slashes: trailing, doubled in turn, and the last one in front of the operation moved.
    out.push(format!("{path}/"));
    out.push(format!("{path}//"));
    for (i, _) in path.match_indices('/') {
        out.push(format!("{}/{}", &path[..i], &path[i..]));
    }
    // Dot segments, plain and encoded.
    let (dir, last) = path.rsplit_once('/').expect("a path");
    for dots in [
        "./",
        "%2e/",
        "%2E/",
        "x/../",
        "x/%2e%2e/",
        "x/%2E%2E/",
        "./x/../",
    ] {
        out.push(format!("{dir}/{dots}{last}"));
    }
    out.push(format!("{path}/."));
    out.push(format!("{path}/.."));
    out.push(format!("/x/..{path}"));
    // Matrix parameters and stray characters.
    for suffix in [
        ";", ";x=1", ";/", "%3b", "%00", "%20", "%09", "#x", "%23x", "\\",
    ] {
        out.push(format!("{path}{suffix}"));
    }
    out.push(format!("{dir};x=1/{last}"));
    out.push(format!("{dir}/..;/{last}"));
    // Query strings, one naming another operation.
    out.push(format!("{path}?x=1"));
    out.push(format!("{path}?operation=verifica-residenza"));
    out.push(format!("{path}?"));
    out.retain(|s| s != path);
    out
}

fn assert_no_data(setup: &Setup, op: Operation, spelling: &str, r: &RawResponse) {
    assert!(
        !(200..300).contains(&r.status),
        "{} spelled {spelling}: {} {}",
        op.id(),
        r.status,
        r.text()
    );
    let text = r.text();
    for leak in [
        setup.cf.as_str(),
        "dataAggiornamento",
        "indirizzo",
        "componenti",
    ] {
        assert!(
            !text.contains(leak),
            "{} spelled {spelling} leaked `{leak}`: {text}",
            op.id()
        );
    }
}

#[tokio::test]
async fn no_spelling_of_a_path_reaches_data_without_its_purpose() {
    let setup = Setup::start().await;
    let mut routed = 0;
    let mut refused_unrouted = 0;
    for &op in Operation::all() {
        let path = full_path(op);
        let v = &setup.vouchers[&op];
        // Controls: the canonical path with the granted voucher is served (200, or 404 for a
        // subject of the other kind), with the not-granted one refused 403.
        let ok = setup.send("POST", &path, &v.granted, op).await;
        assert!(
            ok.status == 200 || ok.status == 404,
            "{}: {} {}",
            op.id(),
            ok.status,
            ok.text()
        );
        let refused = setup.send("POST", &path, &v.not_granted, op).await;
        assert_eq!(refused.status, 403, "{}: {}", op.id(), refused.text());

        for spelling in spellings(&path) {
            let r = setup.send("POST", &spelling, &v.not_granted, op).await;
            assert_no_data(&setup, op, &spelling, &r);
            // A request line the HTTP parser itself refuses (a target not starting with `/`, a
            // raw backslash) gets a bare 400 or a closed connection before the application;
            // every other refusal is a problem.
            let codec_refusal = (r.status == 400 || r.status == 0) && r.body.is_empty();
            if !codec_refusal {
                assert_eq!(
                    r.header("content-type"),
                    Some("application/problem+json"),
                    "{spelling}: {}",
                    r.status
                );
            }
            if r.status == 403 {
                routed += 1;
                // Routed: the audit record names this operation and nothing else.
                let id = r.header("x-request-id").expect("request id").to_owned();
                assert_eq!(
                    setup.audited_operation(&id).await,
                    Some(Some(op.id().to_owned())),
                    "{spelling}"
                );
            } else {
                refused_unrouted += 1;
                assert!(
                    [0, 400, 404, 405].contains(&r.status),
                    "{spelling}: {} {}",
                    r.status,
                    r.text()
                );
            }
        }
        // Every other method on the canonical path: 405 with Allow, no stage, no data.
        for method in ["GET", "PUT", "DELETE", "PATCH", "TRACE"] {
            let r = setup.send(method, &path, &v.granted, op).await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            assert_eq!(r.header("allow"), Some("POST"), "{method} {path}");
            assert_no_data(&setup, op, method, &r);
        }
    }
    // Both branches were exercised: the matrix holds spellings the router takes for the
    // operation (percent-encoded letters, query strings) and spellings it does not.
    assert!(routed > 100, "routed spellings: {routed}");
    assert!(
        refused_unrouted > 100,
        "unrouted spellings: {refused_unrouted}"
    );
}

#[tokio::test]
async fn a_percent_encoded_path_is_audited_as_the_operation_that_ran() {
    let setup = Setup::start().await;
    for &op in Operation::all() {
        let path = full_path(op);
        // Encode every letter of the operation's own segment.
        let start = path.len() - op.path().len() + 1;
        let encoded: String = path
            .char_indices()
            .map(|(i, c)| {
                if i >= start && c.is_ascii_alphabetic() {
                    format!("%{:02X}", c as u8)
                } else {
                    c.to_string()
                }
            })
            .collect();
        let canonical = setup
            .send("POST", &path, &setup.vouchers[&op].granted, op)
            .await;
        let r = setup
            .send("POST", &encoded, &setup.vouchers[&op].granted, op)
            .await;
        assert_eq!(r.status, canonical.status, "{encoded}: {}", r.text());
        assert_eq!(r.body, canonical.body, "{encoded}: same answer");
        let id = r.header("x-request-id").expect("request id").to_owned();
        assert_eq!(
            setup.audited_operation(&id).await,
            Some(Some(op.id().to_owned())),
            "{encoded}"
        );
    }
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// A random percent-encoding of `path`: each byte but `/` encoded or not, hex in either
    /// case.
    fn encode(path: &str, mask: &[bool], upper: &[bool]) -> String {
        path.bytes()
            .enumerate()
            .map(|(i, b)| {
                if b != b'/' && mask[i % mask.len()] {
                    if upper[i % upper.len()] {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    }
                } else {
                    (b as char).to_string()
                }
            })
            .collect()
    }

    #[test]
    fn random_percent_encodings_get_the_canonical_paths_decision() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let setup = rt.block_on(Setup::start());
        // Decisions of the canonical paths, per operation and voucher.
        let mut canonical = HashMap::new();
        for &op in Operation::all() {
            let v = &setup.vouchers[&op];
            for (granted, token) in [(true, &v.granted), (false, &v.not_granted)] {
                let r = rt.block_on(setup.send("POST", &full_path(op), token, op));
                canonical.insert((op, granted), r.status);
            }
        }
        let config = ProptestConfig {
            cases: 96,
            ..ProptestConfig::default()
        };
        proptest!(config, |(
            op_index in 0..Operation::all().len(),
            granted in any::<bool>(),
            mask in proptest::collection::vec(any::<bool>(), 1..40),
            upper in proptest::collection::vec(any::<bool>(), 1..40),
        )| {
            let op = Operation::all()[op_index];
            let v = &setup.vouchers[&op];
            let token = if granted { &v.granted } else { &v.not_granted };
            let spelling = encode(&full_path(op), &mask, &upper);
            let r = rt.block_on(setup.send("POST", &spelling, token, op));
            prop_assert_eq!(r.status, canonical[&(op, granted)], "{}", spelling);
            let id = r.header("x-request-id").unwrap_or_default().to_owned();
            let audited = rt.block_on(setup.audited_operation(&id));
            prop_assert_eq!(audited, Some(Some(op.id().to_owned())), "{}", spelling);
        });
    }
}

#[tokio::test]
async fn status_is_get_only_and_says_so() {
    let h = Harness::start().await;
    for path in ["/status", "/anagrafe/v1/status", "/tributi/v1/status"] {
        let ok = raw_request(h.env.running.public, "GET", path, &[], b"").await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.text());
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = raw_request(h.env.running.public, method, path, &[], b"").await;
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET"), "{method} {path}");
            assert_eq!(
                r.header("content-type"),
                Some("application/problem+json"),
                "{method} {path}"
            );
        }
    }
}
