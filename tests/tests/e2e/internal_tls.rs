//! The internal listener beyond loopback: refused in clear text unless explicitly allowed, and
//! served over TLS or mTLS from `[server.internal_tls]`, checked with a real TLS client
//! (reqwest over rustls) against a PKI made for the test.

use e2e::Harness;
use gateway::config::{Config, InternalTlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A CA, a server certificate for localhost issued by it, a client certificate issued by it,
/// and a client certificate from an unrelated CA.
struct Pki {
    ca_file: PathBuf,
    ca_pem: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_identity: String,
    stranger_identity: String,
    /// Holds the files above; removed when the PKI drops.
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("CA").pem();
    (Issuer::new(params, key), pem)
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("leaf").pem();
    (cert, key.serialize_pem())
}

fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn pki() -> Pki {
    let tmp = e2e::temp_dir("tls");
    let dir = tmp.path();
    let (issuer, ca_pem) = ca("internal clients and server CA");
    let (server_pem, server_key_pem) = leaf(
        &issuer,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(
        &issuer,
        &["protocollo.comune.example.it"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (stranger_issuer, _) = ca("someone else's CA");
    let (stranger_pem, stranger_key) = leaf(
        &stranger_issuer,
        &["stranger.example.it"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write");
    let server_cert = dir.join("tls.crt");
    std::fs::write(&server_cert, &server_pem).expect("write");
    let server_key = dir.join("tls.key");
    write_private(&server_key, &server_key_pem);
    Pki {
        ca_file,
        ca_pem,
        server_cert,
        server_key,
        client_identity: format!("{client_pem}{client_key}"),
        stranger_identity: format!("{stranger_pem}{stranger_key}"),
        _dir: tmp,
    }
}

/// A TLS client trusting only the test CA, resolving `localhost` to the listener.
fn client(pki: &Pki, h: &Harness, identity: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA")])
        .resolve("localhost", h.env.running.internal);
    if let Some(identity) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("id"));
    }
    builder.build().expect("client")
}

fn https(h: &Harness, path: &str) -> String {
    format!("https://localhost:{}{path}", h.env.running.internal.port())
}

#[tokio::test]
async fn internal_listener_over_tls_serves_https_and_refuses_clear_text() {
    let pki = pki();
    let tls = InternalTlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: None,
    };
    let h = Harness::start_with(|c| c.server.internal_tls = Some(tls)).await;
    let http = client(&pki, &h, None);
    let resp = http.get(https(&h, "/status")).send().await.expect("TLS");
    assert_eq!(resp.status(), 200);
    // The whole fruizione round trip, API key included, inside TLS.
    let cf = h.env.samples[0].codice_fiscale.clone();
    let resp = http
        .post(https(&h, "/fruizioni/comune-anagrafe/residenza"))
        .header("X-API-Key", h.api_key())
        .json(&json!({ "codiceFiscale": cf }))
        .send()
        .await
        .expect("TLS");
    assert_eq!(resp.status(), 200);
    // Clear text on the same port gets no answer.
    let plain = reqwest::Client::new()
        .get(h.internal("/status"))
        .send()
        .await;
    assert!(plain.is_err(), "clear text answered: {plain:?}");
    // A client that does not trust the server's CA does not connect.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", h.env.running.internal)
        .build()
        .expect("client");
    assert!(untrusting.get(https(&h, "/status")).send().await.is_err());
}

#[tokio::test]
async fn internal_listener_with_a_client_ca_admits_only_its_certificates() {
    let pki = pki();
    let tls = InternalTlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: Some(pki.ca_file.clone()),
    };
    let h = Harness::start_with(|c| c.server.internal_tls = Some(tls)).await;
    let resp = client(&pki, &h, Some(&pki.client_identity))
        .get(https(&h, "/status"))
        .send()
        .await
        .expect("mTLS with the comune's certificate");
    assert_eq!(resp.status(), 200);
    for (who, identity) in [
        ("no certificate", None),
        (
            "another CA's certificate",
            Some(pki.stranger_identity.as_str()),
        ),
    ] {
        let refused = client(&pki, &h, identity)
            .get(https(&h, "/status"))
            .send()
            .await;
        assert!(refused.is_err(), "{who}: {refused:?}");
    }
}

#[tokio::test]
async fn clear_text_beyond_loopback_needs_the_explicit_opt_in() {
    let mut config = Config::load_dev(None).expect("dev config");
    config.server.public_listen = "127.0.0.1:0".parse().expect("addr");
    config.server.internal_listen = "0.0.0.0:0".parse().expect("addr");
    config.dev.authority_listen = "127.0.0.1:0".parse().expect("addr");
    config.dev.residents = 10;
    let dir = e2e::temp_dir("e2e");
    let refused = gateway::dev::start(config, dir.path())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.contains("server.internal_listen") && refused.contains("internal_tls"),
        "{refused}"
    );

    let h = Harness::start_with(|c| {
        c.server.internal_listen = "0.0.0.0:0".parse().expect("addr");
        c.server.internal_allow_plaintext_non_loopback = true;
    })
    .await;
    assert!(h.env.config.internal_plaintext_exposed());
    let port = h.env.running.internal.port();
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .expect("served");
    assert_eq!(resp.status(), 200);
}
