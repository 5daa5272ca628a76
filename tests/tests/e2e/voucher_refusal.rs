//! A token endpoint answering 400 (PDND's opaque refusal): not retried, reported with the
//! claims that were sent, and no private key material in any log line or error.

use e2e::{ScriptedTokenEndpoint, Step};
use gateway::pdnd::client_assertion::ClientAssertionBuilder;
use gateway::pdnd::jwk::RsaPrivateKey;
use gateway::pdnd_client::token_client::TokenClient;
use gateway::pdnd_client::voucher_cache::{
    CachePolicy, SystemClock, VoucherCache, VoucherFetchError, VoucherSpec,
};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// current_thread: every future of this test, spawned ones included, runs on this thread, so
// the thread-local subscriber sees every log line.
#[tokio::test(flavor = "current_thread")]
async fn refusal_is_not_retried_and_leaks_no_key() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .json()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let endpoint = ScriptedTokenEndpoint::start(
        vec![],
        Step::Fail {
            status: 400,
            retry_after: None,
        },
        None,
    )
    .await;
    let key = RsaPrivateKey::generate().expect("key");
    let pem = key.to_pem();
    let spec = VoucherSpec {
        builder: ClientAssertionBuilder {
            client_id: "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into(),
            audience: "auth.dev.interop.local/client-assertion".into(),
            purpose_id: Some("2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01".into()),
            digest: None,
            lifetime_secs: 300,
        },
        key: Arc::new(key),
        dpop: None,
    };
    let cache = VoucherCache::new(
        TokenClient::new(reqwest::Client::new(), endpoint.url.clone()),
        Arc::new(SystemClock),
        CachePolicy::default(),
    );
    let err = cache.get(&spec).await.expect_err("refused");
    assert_eq!(endpoint.requests(), 1, "a 400 is not retried");
    let VoucherFetchError::Refused { status, claims, .. } = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert_eq!(*status, 400);
    let claims: serde_json::Value = serde_json::from_str(claims).expect("claims are JSON");
    assert_eq!(claims["iss"], "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b");
    assert_eq!(claims["sub"], "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b");
    assert_eq!(claims["purposeId"], "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01");
    assert_eq!(claims["aud"], "auth.dev.interop.local/client-assertion");
    assert!(claims.get("nbf").is_none());

    // A second call asks again (a refusal is not a voucher) but still once.
    let _ = cache.get(&spec).await.expect_err("refused again");
    assert_eq!(endpoint.requests(), 2);

    let text = String::from_utf8(logs.0.lock().expect("log lock").clone()).expect("utf-8 logs");
    assert!(
        text.contains("PDND refused the voucher request"),
        "the refusal is logged: {text}"
    );
    assert!(text.contains("purposeId"), "with the claims: {text}");
    let key_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for haystack in [
        text.as_str(),
        &err.to_string(),
        &format!("{err:?}"),
        &format!("{:?}", spec.key),
    ] {
        assert!(!haystack.contains("PRIVATE KEY"), "{haystack}");
        assert!(!haystack.contains(&key_body[..40]), "key material leaked");
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!haystack.contains(line), "a line of the key leaked");
        }
    }
}
