//! DPoP-bound vouchers (RFC 9449) over real sockets: the dev authority binds a voucher to the
//! key of the proof sent with the token request; the provider accepts it only under the `DPoP`
//! scheme with a valid proof of that key for that very request, and a fruizione configured with
//! `dpop = true` obtains and uses such vouchers on its own.
//!
//! The harness' gateway listens on a random port while its configured public URL says
//! `127.0.0.1:8080`: exactly the situation behind a reverse proxy, so the proofs here name the
//! configured public URL, and one that names the address really called is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use e2e::{header, now, Harness};
use gateway::dev::sample;
use gateway::pdnd::dpop::{access_token_hash, DpopKey};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PURPOSE: &str = sample::ANAGRAFE_FULL.purpose_id;

/// A P-256 key known both as a [`DpopKey`] (to obtain vouchers and sign good proofs) and as raw
/// signing material (to sign proofs that break one rule).
struct ProofSigner {
    key: DpopKey,
    raw: EncodingKey,
}

impl ProofSigner {
    fn new() -> Self {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = openssl::ec::EcKey::generate(&group).unwrap();
        let pem = openssl::pkey::PKey::from_ec_key(ec)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        ProofSigner {
            key: DpopKey::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap(),
            raw: EncodingKey::from_ec_pem(&pem).unwrap(),
        }
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.public().to_jwk()})
    }

    /// Header and claims exactly as given, signed ES256.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.raw, Algorithm::ES256)
            .expect("ES256 signs");
        format!("{input}.{sig}")
    }
}

/// The URL a caller uses for `path` of the anagrafe: the configured public URL.
fn public_url(h: &Harness, path: &str) -> String {
    format!("{}{path}", h.env.config.eservices.anagrafe.public_url)
}

/// Claims of a good proof for `POST {public_url}{path}` with `voucher`.
fn claims(h: &Harness, path: &str, voucher: &str) -> Value {
    json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "POST",
        "htu": public_url(h, path),
        "iat": now(),
        "ath": access_token_hash(voucher),
    })
}

/// POSTs the residenza request with the given Authorization and DPoP headers.
async fn call(
    h: &Harness,
    authorization: &str,
    proof: Option<&str>,
) -> (StatusCode, Option<String>) {
    let mut req = h
        .http
        .post(h.public("/anagrafe/v1/residenza"))
        .header("Authorization", authorization)
        .json(&json!({ "codiceFiscale": h.sample_cf() }));
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    let resp = req.send().await.expect("request sent");
    (resp.status(), header(&resp, "www-authenticate"))
}

fn is_dpop_challenge(challenge: &Option<String>, error: &str) -> bool {
    challenge.as_deref().is_some_and(|c| {
        c.starts_with("DPoP ") && c.contains(&format!("error=\"{error}\"")) && c.contains("algs=")
    })
}

#[tokio::test]
async fn dpop_vouchers_need_a_proof_of_their_key_for_each_request() {
    let h = Harness::start().await;
    let signer = ProofSigner::new();
    let response = h.dpop_voucher(PURPOSE, &signer.key).await;
    assert_eq!(response.token_type.as_deref(), Some("DPoP"));
    let voucher = response.access_token;
    let (_, voucher_claims) = gateway::pdnd::decode_unverified(&voucher).unwrap();
    assert_eq!(voucher_claims["cnf"]["jkt"], signer.key.jkt());
    let dpop_auth = format!("DPoP {voucher}");

    // Accepted: our own proof of the configured public URL, and a hand-built one.
    let proof = signer
        .key
        .proof("POST", &public_url(&h, "/residenza"), Some(&voucher), now())
        .unwrap();
    let (status, _) = call(&h, &dpop_auth, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK);
    let good = signer.sign(&signer.header(), &claims(&h, "/residenza", &voucher));
    assert_eq!(call(&h, &dpop_auth, Some(&good)).await.0, StatusCode::OK);

    // The same voucher as Bearer: refused, it is bound.
    let (status, challenge) = call(&h, &format!("Bearer {voucher}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"pdnd-gateway\", error=\"invalid_token\"")
    );

    // No proof.
    let (status, challenge) = call(&h, &dpop_auth, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        is_dpop_challenge(&challenge, "invalid_dpop_proof"),
        "{challenge:?}"
    );

    // One rule broken each: 401 with the invalid_dpop_proof challenge.
    let edited = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = claims(&h, "/residenza", &voucher);
        edit(c.as_object_mut().unwrap());
        signer.sign(&signer.header(), &c)
    };
    let really_called = h.public("/anagrafe/v1/residenza");
    let other_voucher = h.voucher(PURPOSE).await;
    let mut typ_jwt = signer.header();
    typ_jwt["typ"] = json!("JWT");
    let mut alg_none = signer.header();
    alg_none["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(alg_none.to_string()),
        URL_SAFE_NO_PAD.encode(claims(&h, "/residenza", &voucher).to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "htm GET",
            edited(&|c| drop(c.insert("htm".into(), json!("GET")))),
        ),
        (
            "htu of another operation",
            edited(&|c| drop(c.insert("htu".into(), json!(public_url(&h, "/stato-famiglia"))))),
        ),
        (
            "htu of the address really called (Host is not trusted)",
            edited(&|c| drop(c.insert("htu".into(), json!(really_called)))),
        ),
        (
            "older than 60 s",
            edited(&|c| drop(c.insert("iat".into(), json!(now() - 120)))),
        ),
        (
            "from the future",
            edited(&|c| drop(c.insert("iat".into(), json!(now() + 120)))),
        ),
        (
            "ath of another voucher",
            edited(&|c| drop(c.insert("ath".into(), json!(access_token_hash(&other_voucher))))),
        ),
        ("no ath", edited(&|c| drop(c.remove("ath")))),
        ("no jti", edited(&|c| drop(c.remove("jti")))),
        (
            "typ JWT",
            signer.sign(&typ_jwt, &claims(&h, "/residenza", &voucher)),
        ),
        ("alg none", unsigned),
    ];
    for (name, proof) in &cases {
        let (status, challenge) = call(&h, &dpop_auth, Some(proof)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            is_dpop_challenge(&challenge, "invalid_dpop_proof"),
            "{name}: {challenge:?}"
        );
    }

    // Replayed jti: the first use passes, the second is refused.
    let once = signer.sign(&signer.header(), &claims(&h, "/residenza", &voucher));
    assert_eq!(call(&h, &dpop_auth, Some(&once)).await.0, StatusCode::OK);
    let (status, challenge) = call(&h, &dpop_auth, Some(&once)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed jti");
    assert!(is_dpop_challenge(&challenge, "invalid_dpop_proof"));

    // A valid proof, but of a key the voucher is not bound to: invalid_token.
    let stranger = ProofSigner::new();
    let foreign = stranger.sign(&stranger.header(), &claims(&h, "/residenza", &voucher));
    let (status, challenge) = call(&h, &dpop_auth, Some(&foreign)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "foreign key");
    assert!(
        is_dpop_challenge(&challenge, "invalid_token"),
        "{challenge:?}"
    );

    // Two DPoP headers.
    let a = signer.sign(&signer.header(), &claims(&h, "/residenza", &voucher));
    let b = signer.sign(&signer.header(), &claims(&h, "/residenza", &voucher));
    let resp = h
        .http
        .post(h.public("/anagrafe/v1/residenza"))
        .header("Authorization", &dpop_auth)
        .header("DPoP", a)
        .header("DPoP", b)
        .json(&json!({ "codiceFiscale": h.sample_cf() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "two proofs");
}

#[tokio::test]
async fn bearer_vouchers_work_as_before_and_not_under_the_dpop_scheme() {
    let h = Harness::start().await;
    let voucher = h.voucher(PURPOSE).await;
    let (_, claims_of) = gateway::pdnd::decode_unverified(&voucher).unwrap();
    assert!(claims_of.get("cnf").is_none());
    assert_eq!(
        call(&h, &format!("Bearer {voucher}"), None).await.0,
        StatusCode::OK
    );

    // An unbound voucher under the DPoP scheme, even with a valid proof: invalid_token.
    let signer = ProofSigner::new();
    let proof = signer.sign(&signer.header(), &claims(&h, "/residenza", &voucher));
    let (status, challenge) = call(&h, &format!("DPoP {voucher}"), Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        is_dpop_challenge(&challenge, "invalid_token"),
        "{challenge:?}"
    );

    // A tampered voucher under the DPoP scheme: invalid_token with the DPoP challenge.
    let dpop = h.dpop_voucher(PURPOSE, &signer.key).await.access_token;
    let tampered = format!("{}x", dpop);
    let proof = signer.sign(&signer.header(), &claims(&h, "/residenza", &tampered));
    let (status, challenge) = call(&h, &format!("DPoP {tampered}"), Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        is_dpop_challenge(&challenge, "invalid_token"),
        "{challenge:?}"
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_and_replayed_proofs() {
    let h = Harness::start().await;
    let token_url = h.env.config.pdnd.token_endpoint.clone();
    let signer = ProofSigner::new();
    let plan = gateway::cli::voucher::plan(&h.env.config, Some(PURPOSE), None).unwrap();
    let assertion = plan.builder.sign(&plan.key, now()).unwrap();
    let form = gateway::pdnd::TokenRequest::new(&plan.builder.client_id, &assertion);
    let post = |proof: String| {
        h.http
            .post(&token_url)
            .header("DPoP", proof)
            .form(&form)
            .send()
    };
    let proof_claims = |htm: &str, htu: &str, iat: i64| json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": htm, "htu": htu, "iat": iat});

    let good = signer.sign(&signer.header(), &proof_claims("POST", &token_url, now()));
    let resp = post(good.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");

    // The same proof again: PDND's 400.
    let resp = post(good).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "replayed proof");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "015-0008");

    for (name, proof) in [
        (
            "htu of another endpoint",
            signer.sign(
                &signer.header(),
                &proof_claims("POST", "http://127.0.0.1:1/token.oauth2", now()),
            ),
        ),
        (
            "htm GET",
            signer.sign(&signer.header(), &proof_claims("GET", &token_url, now())),
        ),
        (
            "expired",
            signer.sign(
                &signer.header(),
                &proof_claims("POST", &token_url, now() - 120),
            ),
        ),
        ("not a JWS", "not-a-proof".to_owned()),
    ] {
        let resp = post(proof).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}");
    }

    // Without a DPoP header the same form still gets a Bearer voucher.
    let assertion = plan.builder.sign(&plan.key, now()).unwrap();
    let form = gateway::pdnd::TokenRequest::new(&plan.builder.client_id, &assertion);
    let resp = h.http.post(&token_url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
}

/// What a recording remote received: the Authorization and DPoP headers of each call.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

async fn record(req: actix_web::HttpRequest, seen: actix_web::web::Data<Seen>) -> &'static str {
    let get = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    seen.lock()
        .unwrap()
        .push((get("authorization"), get("dpop")));
    "{}"
}

#[tokio::test]
async fn a_dpop_fruizione_binds_its_vouchers_and_proves_every_call() {
    // The provider's public URL must be the address the fruizione calls: a fixed free port.
    let port = e2e::closed_port().port();
    let h = Harness::start_with(|c| {
        c.server.public_listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.eservices.anagrafe.public_url = format!("http://127.0.0.1:{port}/anagrafe/v1");
    })
    .await;
    assert_eq!(h.env.running.public.port(), port);

    // A remote that records what it receives, to look at the proofs themselves.
    let seen: Seen = Default::default();
    let data = actix_web::web::Data::new(seen.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(actix_web::web::to(record))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let recorder = server.addrs()[0];
    tokio::spawn(server.run());

    let consumer = h
        .start_consumer(|c| {
            let mut real = h.anagrafe_fruizione("anagrafe-dpop");
            real.dpop = true;
            let mut recorded = h.anagrafe_fruizione("registra");
            recorded.remote_base_url = format!("http://{recorder}/v1");
            recorded.dpop = true;
            let plain = h.anagrafe_fruizione("anagrafe-bearer");
            c.fruizioni = vec![real, recorded, plain];
        })
        .await;
    let body = json!({ "codiceFiscale": h.sample_cf() });

    // Through the proxy to the real provider, twice with the same voucher: 200 each.
    let before = h.token_requests();
    for _ in 0..2 {
        let resp = consumer.call("anagrafe-dpop", "residenza", &body).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(h.token_requests() - before, 1, "one DPoP voucher, reused");
    // A Bearer fruizione beside it still works.
    let resp = consumer.call("anagrafe-bearer", "residenza", &body).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // What the calls carry: Authorization DPoP, and a fresh proof of this call bound to the
    // voucher's cnf.jkt.
    for _ in 0..2 {
        let resp = consumer.call("registra", "residenza?x=1", &body).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let mut jtis = Vec::new();
    for (authorization, proof) in &seen {
        let voucher = authorization
            .strip_prefix("DPoP ")
            .expect("the DPoP scheme");
        let (_, claims) = gateway::pdnd::decode_unverified(voucher).unwrap();
        let jkt = claims["cnf"]["jkt"].as_str().expect("a bound voucher");
        let request = gateway::pdnd::dpop::ProofRequest {
            method: "POST",
            url: &format!("http://{recorder}/v1/residenza"),
            access_token: Some(voucher),
        };
        let verified = gateway::pdnd::dpop::verify(
            proof,
            &request,
            &gateway::pdnd::dpop::ProofPolicy::default(),
            now(),
        )
        .expect("the proof verifies for this call");
        assert!(verified.is_bound_to(jkt));
        jtis.push(verified.jti().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "a fresh proof per call");
    consumer.stop().await;
}

#[tokio::test]
async fn the_cli_key_file_obtains_a_bound_voucher_and_signs_its_proofs() {
    let h = Harness::start().await;
    let key_file = h.dir.join("dpop-cli.pem");
    // `voucher --dpop-key` path: the key file is created, the voucher bound to it.
    let mut plan = gateway::cli::voucher::plan(&h.env.config, Some(PURPOSE), None).unwrap();
    plan.dpop = Some(gateway::cli::dpop::load_or_create_key(&key_file).unwrap());
    let voucher = gateway::cli::voucher::obtain(&plan)
        .await
        .unwrap()
        .response
        .access_token;
    // `dpop-proof --key` path, once per request.
    let url = public_url(&h, "/residenza");
    for _ in 0..2 {
        let proof =
            gateway::cli::dpop::proof(&key_file, "POST", &url, Some(&voucher), now()).unwrap();
        let (status, _) = call(&h, &format!("DPoP {voucher}"), Some(&proof)).await;
        assert_eq!(status, StatusCode::OK);
    }
    // A proof from another key file is not one of the voucher's key.
    let other = h.dir.join("dpop-other.pem");
    let proof = gateway::cli::dpop::proof(&other, "POST", &url, Some(&voucher), now()).unwrap();
    let (status, challenge) = call(&h, &format!("DPoP {voucher}"), Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        is_dpop_challenge(&challenge, "invalid_token"),
        "{challenge:?}"
    );
}
