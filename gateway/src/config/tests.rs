use super::*;
use figment::providers::{Format, Toml};
use figment::Figment;
use std::path::PathBuf;

fn dev() -> Config {
    let mut c = Config::from_toml_str(DEV_TOML).expect("the embedded dev config parses");
    c.database.url = "sqlite://x.db".into();
    c.audit.url = "sqlite://a.db".into();
    c.audit.hmac_secret = "k".repeat(32);
    c.purposes.file = "purposes.toml".into();
    c.modi.signing_key_file = Some("signing-key.pem".into());
    c.modi.certificate_chain_file = Some("signing-chain.pem".into());
    c
}

#[test]
fn embedded_dev_config_is_valid() {
    dev().validate().expect("dev config validates");
}

#[test]
fn unknown_key_is_named() {
    let toml = format!("{DEV_TOML}\n[extra]\nfoo = 1\n");
    let err = Config::from_toml_str(&toml).unwrap_err().to_string();
    assert!(err.contains("extra"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let toml = DEV_TOML.replace("workers = 2", "workers = \"two\"");
    let err = Config::from_toml_str(&toml).unwrap_err().to_string();
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn bad_listen_address_is_named() {
    let toml = DEV_TOML.replace("\"127.0.0.1:8080\"", "\"localhost:http\"");
    let err = Config::from_toml_str(&toml).unwrap_err().to_string();
    assert!(err.contains("public_listen"), "{err}");
}

#[test]
fn validation_names_the_key() {
    let mut c = dev();
    c.pdnd.token_endpoint = "ftp://x/token".into();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("pdnd.token_endpoint"));
    let mut c = dev();
    c.pdnd.client_assertion_audience = "https://auth.uat.interop.pagopa.it/client-assertion".into();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("pdnd.client_assertion_audience"));
    let mut c = dev();
    c.eservices.tributi.audiences.clear();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("eservices.tributi.audiences"));
    let mut c = dev();
    assert_eq!(c.audit.commit_delay_ms, 2);
    c.audit.commit_delay_ms = 101;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("audit.commit_delay_ms"));
    c.audit.commit_delay_ms = 0;
    assert!(c.validate().is_ok());
    let mut c = dev();
    c.pdnd.leeway_secs = 3600;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("pdnd.leeway_secs"));
    for bad in [
        "/anagrafe/v1",
        "api.comune.example.it/anagrafe/v1",
        "https://api.comune.example.it/anagrafe/v1/",
        "https://api.comune.example.it/anagrafe/v1?x=1",
        "ftp://api.comune.example.it/anagrafe/v1",
    ] {
        let mut c = dev();
        c.eservices.anagrafe.public_url = bad.into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("eservices.anagrafe.public_url"),
            "{bad}: {err}"
        );
    }
    let mut c = dev();
    c.comune.contact_email = Some("not-an-address".into());
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("comune.contact_email"));
    let mut c = dev();
    c.database.url = "mysql://x".into();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("database.url"));
    let mut c = dev();
    c.audit.hmac_secret = "short".into();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("audit.hmac_secret"));
}

fn with_fruizione(c: &mut Config) {
    c.internal.api_keys = vec![ApiKeyConfig::for_key(
        "ufficio-tributi",
        &"k".repeat(32),
        vec!["inps-isee".into()],
    )];
    c.fruizioni = vec![FruizioneConfig {
        name: "inps-isee".into(),
        remote_base_url: "https://api.example.gov.it/isee/v1".into(),
        purpose_id: "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01".into(),
        client_id: None,
        key_file: None,
        modi: vec![],
        audience: None,
        signing_key_file: None,
        signing_chain_file: None,
        signing_algorithm: None,
        verify_response: false,
        response_trust_file: None,
        timeout_ms: 5000,
        max_concurrency: 8,
        ca_file: None,
        max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        dpop: false,
    }];
    c.client = Some(ClientConfig {
        client_id: "8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into(),
        key_file: "client.pem".into(),
        default_purpose_id: None,
        assertion_lifetime_secs: 300,
    });
}

#[test]
fn fruizioni_are_checked_key_by_key() {
    let mut c = dev();
    with_fruizione(&mut c);
    c.validate().expect("a sound fruizione validates");
    type Breakage = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(&str, Breakage)> = vec![
        (
            "internal.api_key",
            Box::new(|c| c.internal.api_keys.clear()),
        ),
        (
            "internal.api_key.name",
            Box::new(|c| c.internal.api_keys[0].name = "Ufficio Tributi".into()),
        ),
        (
            "internal.api_key.name",
            Box::new(|c| c.internal.api_keys[0].name = "x".repeat(65)),
        ),
        (
            "internal.api_key.name",
            Box::new(|c| {
                let mut k = ApiKeyConfig::for_key("x", &"j".repeat(32), vec!["inps-isee".into()]);
                k.name = c.internal.api_keys[0].name.clone();
                c.internal.api_keys.push(k)
            }),
        ),
        (
            "internal.api_key.sha256",
            Box::new(|c| c.internal.api_keys[0].sha256 = "k".repeat(32)),
        ),
        (
            "internal.api_key.sha256",
            Box::new(|c| c.internal.api_keys[0].sha256 = "g".repeat(64)),
        ),
        (
            "internal.api_key.sha256",
            Box::new(|c| {
                let mut k = c.internal.api_keys[0].clone();
                k.name = "ufficio-anagrafe".into();
                k.sha256 = k.sha256.to_ascii_uppercase();
                c.internal.api_keys.push(k)
            }),
        ),
        (
            "internal.api_key.previous_sha256",
            Box::new(|c| c.internal.api_keys[0].previous_sha256 = Some("x".into())),
        ),
        (
            "internal.api_key.previous_sha256",
            Box::new(|c| {
                c.internal.api_keys[0].previous_sha256 = Some(c.internal.api_keys[0].sha256.clone())
            }),
        ),
        (
            "internal.api_key.fruizioni",
            Box::new(|c| c.internal.api_keys[0].fruizioni.clear()),
        ),
        (
            "internal.api_key.fruizioni",
            Box::new(|c| c.internal.api_keys[0].fruizioni = vec!["inps-iseee".into()]),
        ),
        (
            "fruizioni.name",
            Box::new(|c| c.fruizioni[0].name = "Has Space".into()),
        ),
        (
            "fruizioni.name",
            Box::new(|c| {
                let f = c.fruizioni[0].clone();
                c.fruizioni.push(f)
            }),
        ),
        (
            "fruizioni.remote_base_url",
            Box::new(|c| c.fruizioni[0].remote_base_url = "ftp://x".into()),
        ),
        (
            "fruizioni.purpose_id",
            Box::new(|c| c.fruizioni[0].purpose_id = "nope".into()),
        ),
        ("fruizioni.client_id", Box::new(|c| c.client = None)),
        (
            "fruizioni.key_file",
            Box::new(|c| {
                c.fruizioni[0].client_id = Some("8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into())
            }),
        ),
        (
            "fruizioni.timeout_ms",
            Box::new(|c| c.fruizioni[0].timeout_ms = 0),
        ),
        (
            "fruizioni.max_concurrency",
            Box::new(|c| c.fruizioni[0].max_concurrency = 0),
        ),
        (
            "fruizioni.max_response_bytes",
            Box::new(|c| c.fruizioni[0].max_response_bytes = 0),
        ),
        (
            "fruizioni.max_response_bytes",
            Box::new(|c| c.fruizioni[0].max_response_bytes = MAX_RESPONSE_BYTES_CEILING + 1),
        ),
        (
            "voucher_client.renew_margin_fraction",
            Box::new(|c| c.voucher_client.renew_margin_fraction = 1.0),
        ),
        (
            "voucher_client.max_attempts",
            Box::new(|c| c.voucher_client.max_attempts = 0),
        ),
    ];
    for (key, break_it) in cases {
        let mut c = dev();
        with_fruizione(&mut c);
        break_it(&mut c);
        let err = c.validate().expect_err(key).to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn fruizioni_modi_options_are_checked() {
    let modi = |c: &mut Config, patterns: &[&str]| {
        let f = &mut c.fruizioni[0];
        f.modi = patterns.iter().map(|p| p.to_string()).collect();
        f.audience = Some("https://api.example.gov.it/isee/v1".into());
    };
    for sound in [
        &["INTEGRITY_REST_02", "AUDIT_REST_02"][..],
        &["AUDIT_REST_01"],
        &["INTEGRITY_REST_02"],
    ] {
        let mut c = dev();
        with_fruizione(&mut c);
        modi(&mut c, sound);
        c.validate().unwrap_or_else(|e| panic!("{sound:?}: {e}"));
        assert_eq!(c.fruizioni[0].modi_patterns().len(), sound.len());
    }
    let mut c = dev();
    with_fruizione(&mut c);
    modi(&mut c, &["INTEGRITY_REST_01"]);
    c.fruizioni[0].signing_key_file = Some("k.pem".into());
    c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
    c.fruizioni[0].signing_algorithm = Some("ES256".into());
    c.fruizioni[0].verify_response = true;
    c.fruizioni[0].response_trust_file = Some("ca.pem".into());
    c.validate()
        .expect("INTEGRITY_REST_01 with its files validates");
    assert_eq!(
        c.fruizioni[0].modi_patterns(),
        vec![OutboundModiPattern::IntegrityRest01]
    );

    type Breakage = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(&str, &str, Breakage)> = vec![
        (
            "fruizioni.modi",
            "ID_AUTH_REST_03",
            Box::new(move |c| modi(c, &["ID_AUTH_REST_03"])),
        ),
        (
            "fruizioni.modi",
            "integrity_rest_02",
            Box::new(move |c| modi(c, &["integrity_rest_02"])),
        ),
        (
            "fruizioni.modi",
            "twice",
            Box::new(move |c| modi(c, &["AUDIT_REST_02", "AUDIT_REST_02"])),
        ),
        (
            "fruizioni.modi",
            "exclude",
            Box::new(move |c| modi(c, &["INTEGRITY_REST_01", "INTEGRITY_REST_02"])),
        ),
        (
            "fruizioni.modi",
            "exclude",
            Box::new(move |c| modi(c, &["AUDIT_REST_01", "AUDIT_REST_02"])),
        ),
        (
            "fruizioni.audience",
            "required",
            Box::new(move |c| {
                modi(c, &["INTEGRITY_REST_02"]);
                c.fruizioni[0].audience = None;
            }),
        ),
        (
            "fruizioni.audience",
            "required",
            Box::new(move |c| {
                modi(c, &["AUDIT_REST_01"]);
                c.fruizioni[0].audience = Some(" ".into());
            }),
        ),
        (
            "fruizioni.signing_key_file",
            "INTEGRITY_REST_01",
            Box::new(move |c| {
                modi(c, &["INTEGRITY_REST_01"]);
                c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
            }),
        ),
        (
            "fruizioni.signing_chain_file",
            "INTEGRITY_REST_01",
            Box::new(move |c| {
                modi(c, &["INTEGRITY_REST_01"]);
                c.fruizioni[0].signing_key_file = Some("k.pem".into());
            }),
        ),
        (
            "fruizioni.signing_key_file",
            "only used",
            Box::new(move |c| {
                modi(c, &["INTEGRITY_REST_02"]);
                c.fruizioni[0].signing_key_file = Some("k.pem".into());
            }),
        ),
        (
            "fruizioni.signing_algorithm",
            "HS256",
            Box::new(move |c| {
                modi(c, &["INTEGRITY_REST_01"]);
                c.fruizioni[0].signing_key_file = Some("k.pem".into());
                c.fruizioni[0].signing_chain_file = Some("chain.pem".into());
                c.fruizioni[0].signing_algorithm = Some("HS256".into());
            }),
        ),
        (
            "fruizioni.response_trust_file",
            "verify_response",
            Box::new(|c| c.fruizioni[0].verify_response = true),
        ),
        (
            "fruizioni.verify_response",
            "response_trust_file",
            Box::new(|c| c.fruizioni[0].response_trust_file = Some("ca.pem".into())),
        ),
    ];
    for (key, detail, break_it) in cases {
        let mut c = dev();
        with_fruizione(&mut c);
        break_it(&mut c);
        let err = c.validate().expect_err(key).to_string();
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(detail), "{key}: {err}");
        assert!(err.contains("inps-isee"), "{key}: {err}");
    }
}

#[test]
fn commented_modi_fruizione_of_the_collaudo_example_validates() {
    let text = include_str!("../../../config/collaudo.example.toml");
    let start = text
        .find("# [[fruizioni]]\n# name = \"ente-tributi\"")
        .expect("the example has a commented ModI fruizione");
    // Uncomment the block's own lines, keep its commented alternatives commented.
    let block: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Config::from_toml_str(&format!("{text}\n{block}")).expect("parses");
    c.validate().expect("validates");
    let f = c
        .fruizioni
        .iter()
        .find(|f| f.name == "ente-tributi")
        .expect("uncommented");
    assert_eq!(
        f.modi_patterns(),
        vec![
            OutboundModiPattern::IntegrityRest02,
            OutboundModiPattern::AuditRest02
        ]
    );
    assert!(f.audience.is_some());
}

#[test]
fn api_keys_hold_only_digests() {
    let entry = ApiKeyConfig::for_key(
        "ufficio-tributi",
        " secret-key-secret-key-secret-key-1 ",
        vec!["inps".into()],
    );
    assert_eq!(
        entry.sha256,
        // printf %s secret-key-secret-key-secret-key-1 | sha256sum
        "c18bd81bf8ee4ae440d48c2f4d10d7271767abe4b7c67f2920fabbd1ad46e4d2"
    );
    let mut c = dev();
    c.internal.api_keys = vec![entry];
    assert!(!format!("{c:?}").contains("secret-key"));
}

#[test]
fn fruizioni_parse_from_toml() {
    let toml = format!(
            "{DEV_TOML}\n[[internal.api_key]]\nname = \"ufficio-isee\"\nsha256 = \"{}\"\nfruizioni = [\"inps\"]\n\n[[fruizioni]]\nname = \"inps\"\nremote_base_url = \"https://x.gov.it/v1\"\npurpose_id = \"2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01\"\nmax_concurrency = 3\n",
            "ab".repeat(32)
        );
    let c = Config::from_toml_str(&toml).expect("parses");
    assert_eq!(c.fruizioni.len(), 1);
    assert_eq!(c.internal.api_keys[0].name, "ufficio-isee");
    assert_eq!(c.internal.api_keys[0].fruizioni, ["inps"]);
    assert_eq!(c.fruizioni[0].max_response_bytes, 1024 * 1024);
    assert_eq!(c.fruizioni[0].max_concurrency, 3);
    assert_eq!(c.fruizioni[0].timeout_ms, 10_000);
    assert_eq!(c.voucher_client.renew_margin_fraction, 0.2);
    let bad = toml.replace("max_concurrency = 3", "max_concurency = 3");
    let err = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("max_concurency"), "{err}");
    // The old anonymous list is refused by name, not silently ignored.
    let old = format!(
        "{DEV_TOML}\n[internal]\napi_keys = [\"{}\"]\n",
        "k".repeat(32)
    );
    let err = Config::from_toml_str(&old).unwrap_err().to_string();
    assert!(err.contains("api_keys"), "{err}");
    // DPoP is off unless asked for, and a string is not a yes.
    assert!(!c.fruizioni[0].dpop);
    let dpop = Config::from_toml_str(&format!("{toml}dpop = true\n")).expect("parses");
    assert!(dpop.fruizioni[0].dpop);
    let err = Config::from_toml_str(&format!("{toml}dpop = \"yes\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dpop"), "{err}");
}

#[test]
fn modi_patterns_parse_per_eservice() {
    let toml = DEV_TOML
        .replace(
            "request_integrity = \"none\"   #",
            "request_integrity = \"integrity_rest_02\"   #",
        )
        .replace(
            "audit = \"none\"               #",
            "audit = \"audit_rest_02\" #",
        );
    let c = Config::from_toml_str(&toml).unwrap();
    assert_eq!(
        c.eservices.anagrafe.modi,
        EserviceModiConfig {
            sign_responses: true,
            request_integrity: RequestIntegrity::IntegrityRest02,
            audit: AuditPattern::AuditRest02,
        }
    );
    assert_eq!(c.eservices.tributi.modi, EserviceModiConfig::default());
    assert_eq!(c.modi.algorithm, SignatureAlgorithm::RS256);
    assert_eq!(c.modi.signature_lifetime_secs, 60);

    let bad = DEV_TOML.replace(
        "request_integrity = \"none\"   #",
        "request_integrity = \"integrity_rest_03\"   #",
    );
    let err = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("request_integrity"), "{err}");
    let bad = DEV_TOML.replace("algorithm = \"RS256\"", "algorithm = \"HS256\"");
    let err = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("algorithm"), "{err}");
    let bad = DEV_TOML.replace("sign_responses = true", "sign_responses = \"yes\"");
    let err = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(err.contains("sign_responses"), "{err}");
}

#[test]
fn api_client_is_both_keys_or_neither() {
    let err = |c: Config| c.validate().unwrap_err().to_string();
    let mut c = dev();
    c.pdnd.api_client_id = None;
    c.pdnd.api_key_file = None;
    c.validate().expect("valid without an API client");
    let mut c = dev();
    c.pdnd.api_client_id = Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into());
    c.pdnd.api_key_file = Some("api-client-key.pem".into());
    c.validate().expect("valid with both");
    let mut c = dev();
    c.pdnd.api_client_id = Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f".into());
    c.pdnd.api_key_file = None;
    assert!(err(c).contains("`pdnd.api_key_file`"));
    let mut c = dev();
    c.pdnd.api_client_id = None;
    c.pdnd.api_key_file = Some("api-client-key.pem".into());
    assert!(err(c).contains("`pdnd.api_client_id`"));
    let mut c = dev();
    c.pdnd.api_client_id = Some("not-a-uuid".into());
    c.pdnd.api_key_file = Some("api-client-key.pem".into());
    let e = err(c);
    assert!(
        e.contains("`pdnd.api_client_id`") && e.contains("UUID"),
        "{e}"
    );
    let toml = DEV_TOML.replace(
            "[pdnd]\n",
            "[pdnd]\napi_client_id = \"a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f\"\napi_key_file = \"k.pem\"\n",
        );
    let c = Config::from_toml_str(&toml).unwrap();
    assert_eq!(
        c.pdnd.api_client_id.as_deref(),
        Some("a7c1e2d3-4b5f-4a6e-8d7c-9b0a1c2d3e4f")
    );
    assert_eq!(c.pdnd.api_key_file, Some(PathBuf::from("k.pem")));
}

#[test]
fn modi_validation_names_the_key() {
    let err = |c: Config| c.validate().unwrap_err().to_string();
    let mut c = dev();
    c.modi.signing_key_file = None;
    assert!(err(c).contains("modi.signing_key_file"));
    let mut c = dev();
    c.modi.certificate_chain_file = None;
    assert!(err(c).contains("modi.certificate_chain_file"));
    let mut c = dev();
    c.modi.issuer = " ".into();
    assert!(err(c).contains("modi.issuer"));
    // Nobody signs: no signing material needed.
    let mut c = dev();
    c.modi.signing_key_file = None;
    c.modi.certificate_chain_file = None;
    c.eservices.anagrafe.modi.sign_responses = false;
    c.eservices.tributi.modi.sign_responses = false;
    c.validate().expect("valid without signing material");
    let mut c = dev();
    c.eservices.tributi.modi.request_integrity = RequestIntegrity::IntegrityRest01;
    let e = err(c);
    assert!(
        e.contains("modi.trust_store_file") && e.contains("eservices.tributi.modi"),
        "{e}"
    );
    let mut c = dev();
    c.eservices.anagrafe.modi.audit = AuditPattern::AuditRest01;
    c.pdnd.keys_url = None;
    let e = err(c);
    assert!(
        e.contains("pdnd.keys_url") && e.contains("eservices.anagrafe.modi"),
        "{e}"
    );
    let mut c = dev();
    c.modi.signature_lifetime_secs = 0;
    assert!(err(c).contains("modi.signature_lifetime_secs"));
    let mut c = dev();
    c.modi.max_peer_token_lifetime_secs = 86_400;
    assert!(err(c).contains("modi.max_peer_token_lifetime_secs"));
    let mut c = dev();
    c.modi.replay_cache_capacity = 0;
    assert!(err(c).contains("modi.replay_cache_capacity"));
}

#[test]
fn modi_bounds_have_safe_defaults_and_refuse_hostile_values() {
    let err = |c: Config| c.validate().unwrap_err().to_string();
    let c = dev();
    assert_eq!(c.modi.replay_cache_per_client, 10_000);
    assert_eq!(c.modi.unknown_kid_ttl_secs, 300);
    assert_eq!(c.modi.kid_lookups_per_minute, 60);
    assert_eq!(c.server.body_read_timeout_ms, 5_000);
    // A per-client share larger than the whole memory means no share at all.
    let mut c = dev();
    c.modi.replay_cache_capacity = 1_000;
    c.modi.replay_cache_per_client = 1_001;
    assert!(err(c).contains("modi.replay_cache_per_client"));
    let mut c = dev();
    c.modi.replay_cache_per_client = 0;
    assert!(err(c).contains("modi.replay_cache_per_client"));
    let mut c = dev();
    c.modi.unknown_kid_ttl_secs = 0;
    assert!(err(c).contains("modi.unknown_kid_ttl_secs"));
    let mut c = dev();
    c.modi.kid_lookups_per_minute = 0;
    assert!(err(c).contains("modi.kid_lookups_per_minute"));
    let mut c = dev();
    c.modi.kid_lookups_per_minute = 1_000_000;
    assert!(err(c).contains("modi.kid_lookups_per_minute"));
    // No body deadline, or one that holds a connection for minutes.
    for ms in [0, 600_000] {
        let mut c = dev();
        c.server.body_read_timeout_ms = ms;
        assert!(err(c).contains("server.body_read_timeout_ms"), "{ms}");
    }
}

#[test]
fn voucher_checks_defaults_and_hostile_values() {
    let c = dev();
    assert_eq!(c.pdnd.voucher_max_lifetime_secs, 86_400);
    assert_eq!(c.pdnd.jwks_max_backoff_secs, 300);
    assert_eq!(c.pdnd.jwks_fetch_timeout_ms, 3_000);
    c.validate().unwrap();
    type Tweak = fn(&mut Config);
    let cases: [(&str, Tweak); 11] = [
        ("pdnd.voucher_max_lifetime_secs", |c| {
            c.pdnd.voucher_max_lifetime_secs = 0
        }),
        ("pdnd.voucher_max_lifetime_secs", |c| {
            c.pdnd.voucher_max_lifetime_secs = -600
        }),
        ("pdnd.voucher_max_lifetime_secs", |c| {
            c.pdnd.voucher_max_lifetime_secs = 30 * 86_400
        }),
        ("dev.voucher_lifetime_secs", |c| {
            c.pdnd.voucher_max_lifetime_secs = 300
        }),
        ("pdnd.jwks_min_refetch_interval_secs", |c| {
            c.pdnd.jwks_min_refetch_interval_secs = 0
        }),
        ("pdnd.jwks_max_backoff_secs", |c| {
            c.pdnd.jwks_max_backoff_secs = 5
        }),
        ("pdnd.jwks_max_backoff_secs", |c| {
            c.pdnd.jwks_max_backoff_secs = 86_400
        }),
        ("pdnd.jwks_fetch_timeout_ms", |c| {
            c.pdnd.jwks_fetch_timeout_ms = 0
        }),
        ("pdnd.jwks_fetch_timeout_ms", |c| {
            c.pdnd.jwks_fetch_timeout_ms = 600_000
        }),
        ("comune.producer_id", |c| {
            c.comune.producer_id = Some(" ".into())
        }),
        ("eservices.tributi.descriptor_id", |c| {
            c.eservices.tributi.descriptor_id = Some(String::new())
        }),
    ];
    for (key, tweak) in cases {
        let mut c = dev();
        tweak(&mut c);
        let e = c.validate().expect_err(key).to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
// The closure's error type is figment's own, fixed by `Jail::expect_with`.
#[allow(clippy::result_large_err)]
fn environment_overrides_keys_and_ignores_test_variables() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PDNDGW_PDND__LEEWAY_SECS", "30");
        jail.set_env("PDNDGW_SERVER__PUBLIC_LISTEN", "0.0.0.0:9999");
        jail.set_env("PDNDGW_TEST_POSTGRES_URL", "postgres://x");
        let c = Config::load_dev(None).map_err(|e| e.to_string())?;
        assert_eq!(c.pdnd.leeway_secs, 30);
        assert_eq!(c.server.public_listen.port(), 9999);
        jail.set_env("PDNDGW_PDND__LEEWAY", "30");
        let err = Config::load_dev(None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("leeway"), "{err}");
        Ok(())
    });
}

#[test]
fn example_configs_parse_and_validate() {
    for (name, text) in [
        (
            "collaudo",
            include_str!("../../../config/collaudo.example.toml"),
        ),
        (
            "produzione",
            include_str!("../../../config/produzione.example.toml"),
        ),
    ] {
        let c = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// The keys a section's type accepts, asked of the type itself: `snippet` gives the section an
/// unknown key, and serde's refusal lists the expected ones.
fn keys_of(snippet: &str) -> Vec<String> {
    let figment = Figment::from(Toml::string(DEV_TOML)).merge(Toml::string(snippet));
    let err = Config::from_figment_with_env(figment, false)
        .expect_err("an unknown key is refused")
        .to_string();
    assert!(err.contains("zzz_unknown"), "{snippet}: {err}");
    // e.g. "unknown field: found `zzz_unknown`, expected `one of `a`, `b`` for key ...".
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{snippet}: no list of keys in {err}"))
        .1;
    let expected = expected.split(" for key").next().unwrap_or(expected);
    expected
        .split('`')
        .filter(|k| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn reference_documents_every_section_and_key() {
    let reference = include_str!("../../../docs/configuration.md");
    // The part of the reference under a heading, up to the next one.
    let section = |heading: &str| -> &str {
        let marker = format!("## {heading}\n");
        let start = reference
            .find(&marker)
            .unwrap_or_else(|| panic!("docs/configuration.md has no `{marker}`"));
        let rest = &reference[start + marker.len()..];
        &rest[..rest.find("\n## ").unwrap_or(rest.len())]
    };
    let top = keys_of("zzz_unknown = 1");
    assert!(top.len() >= 14, "{top:?}");
    for key in &top {
        assert!(
            reference.contains(&format!("## `[{key}"))
                || reference.contains(&format!("## `[[{key}")),
            "section `{key}` is not documented in docs/configuration.md"
        );
    }
    let tables = [
        ("[server]\nzzz_unknown = 1", "`[server]`"),
        (
            "[server.internal_tls]\nzzz_unknown = 1",
            "`[server.internal_tls]`",
        ),
        ("[pdnd]\nzzz_unknown = 1", "`[pdnd]`"),
        (
            "[eservices.anagrafe]\nzzz_unknown = 1",
            "`[eservices.<name>]`",
        ),
        (
            "[eservices.tributi.modi]\nzzz_unknown = 1",
            "`[eservices.<name>.modi]`",
        ),
        ("[comune]\nzzz_unknown = 1", "`[comune]`"),
        ("[database]\nzzz_unknown = 1", "`[database]`"),
        ("[audit]\nzzz_unknown = 1", "`[audit]`"),
        ("[purposes]\nzzz_unknown = 1", "`[purposes]`"),
        ("[client]\nzzz_unknown = 1", "`[client]`"),
        ("[cache]\nzzz_unknown = 1", "`[cache]`"),
        ("[dev]\nzzz_unknown = 1", "`[dev]`"),
        ("[internal]\nzzz_unknown = 1", "`[internal]`"),
        (
            "[[internal.api_key]]\nzzz_unknown = 1",
            "`[[internal.api_key]]`",
        ),
        ("[voucher_client]\nzzz_unknown = 1", "`[voucher_client]`"),
        ("[[fruizioni]]\nzzz_unknown = 1", "`[[fruizioni]]`"),
        ("[modi]\nzzz_unknown = 1", "`[modi]`"),
        ("[state]\nzzz_unknown = 1", "`[state]`"),
        ("[rate_limits]\nzzz_unknown = 1", "`[rate_limits]`"),
        (
            "[[rate_limits.purpose]]\nzzz_unknown = 1",
            "`[[rate_limits.purpose]]`",
        ),
        (
            "[tracing]\nservice_url = \"https://x\"\npurpose_id = \"x\"\nzzz_unknown = 1",
            "`[tracing]`",
        ),
        ("[telemetry]\nzzz_unknown = 1", "`[telemetry]`"),
    ];
    for (snippet, heading) in tables {
        let documented = section(heading);
        let keys = keys_of(snippet);
        assert!(!keys.is_empty(), "{snippet}");
        for key in keys {
            assert!(
                documented.contains(&format!("| `{key}` |")),
                "key `{key}` of {heading} is not documented in docs/configuration.md"
            );
        }
    }
}

#[test]
fn daily_thresholds_and_rates_refuse_zero_negative_and_absurd_values() {
    type Tweak = fn(&mut Config);
    let cases: [(&str, Tweak); 5] = [
        ("eservices.anagrafe.daily_calls_total", |c| {
            c.eservices.anagrafe.daily_calls_total = Some(0)
        }),
        ("eservices.tributi.daily_calls_per_consumer", |c| {
            c.eservices.tributi.daily_calls_per_consumer = Some(u64::MAX)
        }),
        ("eservices.anagrafe.daily_calls_per_consumer", |c| {
            c.eservices.anagrafe.daily_calls_per_consumer = Some(11);
            c.eservices.anagrafe.daily_calls_total = Some(10);
        }),
        ("rate_limits.requests_per_second", |c| {
            c.rate_limits.requests_per_second = -1.0
        }),
        ("rate_limits.burst", |c| c.rate_limits.burst = 0),
    ];
    for (key, tweak) in cases {
        let mut c = dev();
        tweak(&mut c);
        let e = c.validate().expect_err(key).to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let mut c = dev();
    c.eservices.anagrafe.daily_calls_per_consumer = Some(10);
    c.eservices.anagrafe.daily_calls_total = Some(10);
    c.validate().expect("equal thresholds are fine");
    // A negative count does not even parse, and the error names the key.
    let text = DEV_TOML.replacen("\nburst = 10000\n", "\nburst = -3\n", 1);
    assert!(
        text.contains("burst = -3"),
        "dev.toml sets [rate_limits] burst"
    );
    let e = Config::from_toml_str(&text)
        .expect_err("negative burst")
        .to_string();
    assert!(e.contains("burst"), "{e}");
    let text = DEV_TOML.replacen(
        "[eservices.anagrafe]\n",
        "[eservices.anagrafe]\ndaily_calls_total = -1\n",
        1,
    );
    let e = Config::from_toml_str(&text)
        .expect_err("negative total")
        .to_string();
    assert!(e.contains("daily_calls_total"), "{e}");
}
