//! ModI on the outbound proxy over real sockets: a second gateway (the consumer) calls a small
//! remote e-service of this suite's own, which records what it receives and checks it with the
//! `modi` module the way a provider would (INTEGRITY_REST_02 signature and Digest, AUDIT_REST_02
//! tracking evidence bound to the voucher it came with), and which signs its answers, correctly
//! or not, for `verify_response`.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use e2e::{now, ConsumerGateway, Harness};
use gateway::config::FruizioneConfig;
use gateway::modi::{
    self, InMemoryKidResolver, KeySource, ModiError, SignatureClaims, SignatureExpectations,
    SigningAlgorithm, SigningMaterial,
};
use gateway::pdnd::client_assertion::decode_unverified;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// The remote e-service's audience as the consumer is configured with it.
const AUDIENCE: &str = "https://api.ente.example.it/isee/v1";

/// One request as the remote received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// The claims of the voucher it was called with (not verified: the dev authority signed it,
    /// the test only reads the `digest` PDND copied from the client assertion).
    fn voucher_claims(&self) -> Value {
        let token = self
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .expect("a Bearer voucher");
        decode_unverified(token).expect("voucher decodes").1
    }
}

/// The remote: records every request; under `/signed/` it signs its answer for `aud`, under
/// `/altered/` it signs one body and sends another, elsewhere it does not sign.
struct Remote {
    received: Mutex<Vec<Received>>,
    signer: Option<(SigningMaterial, String)>,
}

async fn remote(req: HttpRequest, body: web::Bytes, state: web::Data<Remote>) -> HttpResponse {
    let received = Received {
        path: req.path().to_owned(),
        headers: req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let n = {
        let mut all = state.received.lock().expect("lock");
        all.push(received);
        all.len()
    };
    let answer = json!({ "isee": 12345.67, "call": n }).to_string();
    let mode = req.path().split('/').nth(1).unwrap_or("");
    let Some((material, aud)) = state.signer.as_ref().filter(|_| mode != "plain") else {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(answer);
    };
    let t = now();
    let claims = SignatureClaims {
        iss: "ente-example".into(),
        sub: "ente-example".into(),
        aud: aud.clone(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: t,
        nbf: t,
        exp: t + 100,
    };
    let sig = modi::sign_response(
        200,
        material,
        &claims,
        Some("application/json"),
        None,
        answer.as_bytes(),
    )
    .expect("remote signs")
    .expect("200 is signable");
    let sent = if mode == "altered" {
        answer.replace("12345.67", "1.00")
    } else {
        answer
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Digest", sig.digest))
        .insert_header(("Agid-JWT-Signature", sig.agid_jwt_signature))
        .body(sent)
}

struct RemoteServer {
    addr: std::net::SocketAddr,
    state: Arc<Remote>,
}

impl RemoteServer {
    async fn start(signer: Option<(SigningMaterial, String)>) -> RemoteServer {
        let state = Arc::new(Remote {
            received: Mutex::new(Vec::new()),
            signer,
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(remote))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("bind remote");
        let addr = server.addrs()[0];
        tokio::spawn(server.run());
        RemoteServer { addr, state }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    fn fruizione(&self, h: &Harness, name: &str, base: &str, modi: &[&str]) -> FruizioneConfig {
        let mut f = h.anagrafe_fruizione(name);
        f.remote_base_url = format!("http://{}/{base}", self.addr);
        f.modi = modi.iter().map(|m| m.to_string()).collect();
        f.audience = Some(AUDIENCE.to_owned());
        f
    }
}

/// What the remote knows of the consumer: its client key, registered on PDND under its kid.
fn pdnd_keys(h: &Harness) -> InMemoryKidResolver {
    let r = InMemoryKidResolver::new();
    let kid = r
        .insert_rsa_pem(h.env.data.client_key.to_pem().as_bytes())
        .expect("client key registers");
    assert_eq!(kid, h.env.data.client_key.kid());
    r
}

fn expectations() -> SignatureExpectations {
    SignatureExpectations {
        audience: AUDIENCE.to_owned(),
        leeway_secs: 30,
        now: now(),
        max_lifetime_secs: Some(300),
    }
}

fn content_type(resp: &reqwest::Response) -> String {
    e2e::header(resp, "content-type")
        .as_deref()
        .unwrap_or("")
        .to_owned()
}

async fn consumer_of(h: &Harness, fruizioni: Vec<FruizioneConfig>) -> ConsumerGateway {
    h.start_consumer(|c| c.fruizioni = fruizioni).await
}

#[tokio::test]
async fn integrity_rest_02_signature_verifies_and_is_bound_to_the_body() {
    let h = Harness::start().await;
    let remote = RemoteServer::start(None).await;
    let consumer = consumer_of(
        &h,
        vec![remote.fruizione(&h, "isee", "plain", &["INTEGRITY_REST_02"])],
    )
    .await;
    let body = json!({ "codiceFiscale": "RSSMRA80A01H501U", "anno": 2024 });
    let resp = consumer.call("isee", "attestazioni", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["isee"], 12345.67);

    let got = remote.received();
    assert_eq!(got.len(), 1);
    let call = &got[0];
    assert_eq!(call.path, "/plain/attestazioni");
    assert_eq!(
        serde_json::from_slice::<Value>(&call.body).expect("json"),
        body
    );
    let keys = pdnd_keys(&h);
    let verified = modi::verify_request(
        &call.header_pairs(),
        &call.body,
        &KeySource::Kid(&keys),
        &expectations(),
    )
    .expect("the remote verifies the signature with the client's PDND key");
    let client_id = consumer.client_id();
    assert_eq!(verified.iss.as_deref(), Some(client_id.as_str()));
    assert_eq!(verified.sub.as_deref(), Some(client_id.as_str()));
    assert_eq!(verified.audience, AUDIENCE);
    assert!(verified.exp - verified.iat <= 60, "{verified:?}");
    let signed: Vec<_> = verified
        .signed_headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(signed, ["digest", "content-type"]);
    let (header, _) =
        decode_unverified(call.header("agid-jwt-signature").expect("signature")).expect("decodes");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], h.env.data.client_key.kid());
    assert!(header.get("x5c").is_none(), "{header}");
    // Bound to the body: the same headers with another body do not verify.
    let mut other = call.body.clone();
    other.push(b' ');
    assert_eq!(
        modi::verify_request(
            &call.header_pairs(),
            &other,
            &KeySource::Kid(&keys),
            &expectations()
        )
        .unwrap_err(),
        ModiError::DigestMismatch
    );
    // Nor with another audience.
    let mut elsewhere = expectations();
    elsewhere.audience = "https://api.altro.example.it/v1".into();
    assert!(matches!(
        modi::verify_request(
            &call.header_pairs(),
            &call.body,
            &KeySource::Kid(&keys),
            &elsewhere
        ),
        Err(ModiError::WrongAudience { .. })
    ));
    assert!(call.header("agid-jwt-trackingevidence").is_none());

    // A second call is signed afresh: another jti.
    let resp = consumer.call("isee", "attestazioni", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let got = remote.received();
    assert_ne!(
        got[0].header("agid-jwt-signature"),
        got[1].header("agid-jwt-signature")
    );
    consumer.stop().await;
}

#[tokio::test]
async fn audit_rest_02_evidence_names_the_user_and_binds_to_a_voucher_per_call() {
    let h = Harness::start().await;
    let remote = RemoteServer::start(None).await;
    let consumer = consumer_of(
        &h,
        vec![remote.fruizione(&h, "isee", "plain", &["INTEGRITY_REST_02", "AUDIT_REST_02"])],
    )
    .await;
    let body = json!({ "codiceFiscale": "RSSMRA80A01H501U" });
    let before = h.token_requests();
    for (user, extra) in [
        (
            "mario.rossi",
            vec![
                ("X-User-Location", "anagrafe-sportello-2"),
                ("X-LoA", "substantial"),
            ],
        ),
        ("anna.bianchi", vec![]),
    ] {
        let mut headers = vec![("X-User-Id", user)];
        headers.extend(extra);
        let resp = consumer
            .call_with("isee", "attestazioni", &headers, &body)
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{user}");
    }
    assert_eq!(
        h.token_requests() - before,
        2,
        "a voucher bound to an evidence serves one call: two calls, two vouchers"
    );

    let got = remote.received();
    assert_eq!(got.len(), 2);
    let keys = pdnd_keys(&h);
    let mut vouchers = Vec::new();
    for (call, user, location, loa) in [
        (
            &got[0],
            "mario.rossi",
            "anagrafe-sportello-2",
            "substantial",
        ),
        (&got[1], "anna.bianchi", "unspecified", "unspecified"),
    ] {
        let jws = call
            .header("agid-jwt-trackingevidence")
            .expect("tracking evidence sent");
        let evidence = modi::verify_tracking_evidence(jws, &keys, &expectations())
            .expect("the remote verifies the evidence with the client's PDND key");
        assert_eq!(evidence.user_id, user);
        assert_eq!(evidence.user_location, location);
        assert_eq!(evidence.loa, loa);
        assert_eq!(evidence.kid, h.env.data.client_key.kid());
        assert_eq!(evidence.iss.as_deref(), Some(consumer.client_id().as_str()));
        assert_eq!(
            evidence.purpose_id.as_deref(),
            Some(gateway::dev::sample::ANAGRAFE_FULL.purpose_id)
        );
        let voucher = call.voucher_claims();
        assert_eq!(voucher["digest"]["alg"], "SHA256", "{voucher}");
        let digest = voucher["digest"]["value"].as_str().expect("digest value");
        assert!(
            modi::binds_to_voucher(jws, digest),
            "the evidence sent is the one the voucher was issued for"
        );
        assert_eq!(digest, modi::tracking_evidence_digest(jws));
        // The integrity pattern still holds alongside.
        modi::verify_request(
            &call.header_pairs(),
            &call.body,
            &KeySource::Kid(&keys),
            &expectations(),
        )
        .expect("signature verifies");
        // The caller's audit headers stay in the comune.
        for name in ["x-user-id", "x-user-location", "x-loa", "x-api-key"] {
            assert!(call.header(name).is_none(), "{name} reached the remote");
        }
        vouchers.push((jws.to_owned(), digest.to_owned()));
    }
    assert_ne!(vouchers[0].1, vouchers[1].1, "two vouchers, two digests");
    assert!(
        !modi::binds_to_voucher(&vouchers[0].0, &vouchers[1].1),
        "the first evidence does not bind to the second voucher"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn audit_without_x_user_id_is_refused_before_anything_goes_out() {
    let h = Harness::start().await;
    let remote = RemoteServer::start(None).await;
    let consumer = consumer_of(
        &h,
        vec![remote.fruizione(&h, "isee", "plain", &["AUDIT_REST_02"])],
    )
    .await;
    let body = json!({ "codiceFiscale": "RSSMRA80A01H501U" });
    let before = h.token_requests();
    for headers in [vec![], vec![("X-User-Location", "ufficio-1")]] {
        let resp = consumer
            .call_with("isee", "attestazioni", &headers, &body)
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(content_type(&resp), "application/problem+json");
        let problem: Value = resp.json().await.expect("problem");
        assert_eq!(problem["status"], 400);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or("")
                .contains("X-User-Id"),
            "{problem}"
        );
    }
    assert_eq!(h.token_requests(), before, "no voucher was asked for");
    assert!(remote.received().is_empty(), "no call went out");

    // With the header the same call goes through.
    let resp = consumer
        .call_with("isee", "attestazioni", &[("X-User-Id", "u-1")], &body)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(remote.received().len(), 1);
    consumer.stop().await;
}

#[tokio::test]
async fn verify_response_passes_signed_answers_and_refuses_altered_ones() {
    let h = Harness::start().await;
    let pki_dir = h.dir.join("ente-pki");
    let pki = modi::generate_dev_pki(&pki_dir, "api.ente.example.it").expect("remote PKI");
    let material = pki
        .signing_material(SigningAlgorithm::RS256)
        .expect("remote material");
    let client_id = h.env.data.client.client_id.clone();
    let remote = RemoteServer::start(Some((material, client_id))).await;
    let verified = |name: &str, base: &str| {
        let mut f = remote.fruizione(&h, name, base, &[]);
        f.audience = None;
        f.verify_response = true;
        f.response_trust_file = Some(pki.ca_cert.clone());
        f
    };
    let consumer = consumer_of(
        &h,
        vec![
            verified("firmata", "signed"),
            verified("alterata", "altered"),
            verified("non-firmata", "plain"),
        ],
    )
    .await;
    assert_eq!(consumer.client_id(), h.env.data.client.client_id);
    let body = json!({ "codiceFiscale": "RSSMRA80A01H501U" });

    let resp = consumer.call("firmata", "attestazioni", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("agid-jwt-signature").is_some());
    assert!(resp.headers().get("digest").is_some());
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["isee"], 12345.67, "the answer comes back unchanged");

    for name in ["alterata", "non-firmata"] {
        let resp = consumer.call(name, "attestazioni", &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{name}");
        assert_eq!(content_type(&resp), "application/problem+json");
        let problem: Value = resp.json().await.expect("problem");
        let detail = problem["detail"].as_str().unwrap_or("");
        assert!(detail.contains("ModI verification"), "{name}: {problem}");
        assert!(detail.contains(name), "{name}: {problem}");
    }
    assert_eq!(remote.received().len(), 3, "every call reached the remote");
    consumer.stop().await;
}
