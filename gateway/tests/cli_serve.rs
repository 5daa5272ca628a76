//! `pdnd-gateway serve` refusing to start insecurely, as an operator meets it: the example
//! configurations with their placeholders, clear-text PDND URLs, private keys others can read,
//! an internal listener open beyond loopback. Every refusal exits non-zero with a message
//! naming the key (and the file), never a panic, never the secret.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");
const COLLAUDO: &str = include_str!("../../config/collaudo.example.toml");
const PRODUZIONE: &str = include_str!("../../config/produzione.example.toml");
const PLACEHOLDER: &str = "replace-me-with-32-or-more-random-characters";
const STRONG_HMAC: &str = "c2068f4f4dfdac0c79499a29236787a230a678b668810153dd48f1606cf7e6bc";
/// The examples' placeholder digest of the internal caller's key, and the SHA-256 of a strong
/// key (`KhFyncULoXwkAsYJE04NFFmhtlQnbvOybAVo9vKfSi4=`) to put in its place.
const PLACEHOLDER_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const STRONG_DIGEST: &str = "c11a3f8beb04a11baec629965a4b16a04be0491ec8935535dffb4f992bfcd613";

/// An example with its API key digest replaced by a strong one.
fn with_strong_api_key(text: &str) -> String {
    text.replace(PLACEHOLDER_DIGEST, STRONG_DIGEST)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pdndgw-serve-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Runs `serve` on a configuration text with only the given environment.
fn serve(dir: &Path, config: &str, env: &[(&str, &str)]) -> Output {
    let file = dir.join(format!("{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, config).expect("config");
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("serve runs")
}

/// The refusal's message, after checking it is a clean one.
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(PLACEHOLDER),
        "a secret is printed: {stderr}"
    );
    assert!(
        !stderr.contains(STRONG_HMAC),
        "a secret is printed: {stderr}"
    );
    assert!(
        !stderr.contains("KhFyncULoXwk"),
        "a secret is printed: {stderr}"
    );
    stderr
}

fn key_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn each_example_is_refused_with_its_placeholders_and_passes_them_with_strong_values() {
    let dir = temp_dir();
    for (name, text) in [("collaudo", COLLAUDO), ("produzione", PRODUZIONE)] {
        let err = refused(&serve(&dir, text, &[]));
        assert!(
            err.contains("`audit.hmac_secret`") && err.contains("placeholder"),
            "{name}: {err}"
        );

        let err = refused(&serve(
            &dir,
            text,
            &[("PDNDGW_AUDIT__HMAC_SECRET", STRONG_HMAC)],
        ));
        assert!(err.contains("`internal.api_key`"), "{name}: {err}");
        assert!(!err.contains(PLACEHOLDER_DIGEST), "{name}: {err}");

        // With both secrets strong, the next thing missing is the mounted key files.
        let err = refused(&serve(
            &dir,
            &with_strong_api_key(text),
            &[("PDNDGW_AUDIT__HMAC_SECRET", STRONG_HMAC)],
        ));
        assert!(
            !err.contains("hmac_secret") && !err.contains("internal.api_key"),
            "{name}: {err}"
        );
        assert!(
            err.contains("`client.key_file`") && err.contains("/run/secrets/pdnd-client/key.pem"),
            "{name}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn clear_text_pdnd_urls_are_refused() {
    let dir = temp_dir();
    for (var, key) in [
        ("PDNDGW_PDND__TOKEN_ENDPOINT", "pdnd.token_endpoint"),
        ("PDNDGW_PDND__JWKS_URL", "pdnd.jwks_url"),
        ("PDNDGW_PDND__KEYS_URL", "pdnd.keys_url"),
    ] {
        let err = refused(&serve(
            &dir,
            &with_strong_api_key(COLLAUDO),
            &[
                ("PDNDGW_AUDIT__HMAC_SECRET", STRONG_HMAC),
                (var, "http://127.0.0.1:8090/x"),
            ],
        ));
        assert!(
            err.contains(key) && err.contains("https://"),
            "{key}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn private_keys_readable_by_others_are_refused_with_the_fix() {
    let dir = temp_dir();
    let vars = [
        ("PDNDGW_CLIENT__KEY_FILE", "client.key_file"),
        ("PDNDGW_PDND__API_KEY_FILE", "pdnd.api_key_file"),
        ("PDNDGW_MODI__SIGNING_KEY_FILE", "modi.signing_key_file"),
        (
            "PDNDGW_SERVER__INTERNAL_TLS__KEY_FILE",
            "server.internal_tls.key_file",
        ),
    ];
    let strict: Vec<String> = vars
        .iter()
        .enumerate()
        .map(|(i, _)| {
            key_file(&dir, &format!("key-{i}.pem"), 0o600)
                .display()
                .to_string()
        })
        .collect();
    let database = format!("sqlite://{}?mode=rwc", dir.join("comune.db").display());
    let audit = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let base = [
        ("PDNDGW_AUDIT__HMAC_SECRET", STRONG_HMAC),
        ("PDNDGW_DATABASE__URL", database.as_str()),
        ("PDNDGW_AUDIT__URL", audit.as_str()),
    ];
    for (exposed, (_, key)) in vars.iter().enumerate() {
        let open_path = key_file(&dir, &format!("open-{exposed}.pem"), 0o644)
            .display()
            .to_string();
        let mut env: Vec<(&str, &str)> = base.to_vec();
        for (i, (var, _)) in vars.iter().enumerate() {
            let path = if i == exposed { &open_path } else { &strict[i] };
            env.push((var, path.as_str()));
        }
        let err = refused(&serve(&dir, &with_strong_api_key(COLLAUDO), &env));
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains(&format!("chmod 600 {open_path}")), "{err}");
        assert!(err.contains("0644"), "{err}");
    }
    // All 0600: the key files pass, and the start goes on to what this test did not provide.
    let mut env: Vec<(&str, &str)> = base.to_vec();
    for (i, (var, _)) in vars.iter().enumerate() {
        env.push((var, strict[i].as_str()));
    }
    let err = refused(&serve(&dir, &with_strong_api_key(COLLAUDO), &env));
    assert!(!err.contains("chmod"), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn an_internal_listener_beyond_loopback_without_tls_is_refused_unless_allowed() {
    let dir = temp_dir();
    let start = COLLAUDO.find("[server.internal_tls]").expect("TLS block");
    let end = start + COLLAUDO[start..].find("\n\n").expect("block end");
    let without_tls = format!("{}{}", &COLLAUDO[..start], &COLLAUDO[end..]);
    let err = refused(&serve(&dir, &without_tls, &[]));
    assert!(
        err.contains("`server.internal_listen`")
            && err.contains("internal_tls")
            && err.contains("internal_allow_plaintext_non_loopback"),
        "{err}"
    );
    let allowed = without_tls.replace(
        "workers = 2\n",
        "workers = 2\ninternal_allow_plaintext_non_loopback = true\n",
    );
    let err = refused(&serve(&dir, &allowed, &[]));
    assert!(!err.contains("internal_listen"), "{err}");
    assert!(err.contains("audit.hmac_secret"), "the next check: {err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `dev` with the internal listener on every interface: refused without the opt-in; with it,
/// it starts and its log warns that the listener is clear text beyond loopback.
#[test]
fn clear_text_internal_listener_opt_in_is_logged_as_a_warning() {
    use std::io::{BufRead, BufReader};
    let dir = temp_dir();
    let dev = |opt_in: bool, log: &Path| {
        let mut cmd = Command::new(BIN);
        cmd.args(["dev", "--data-dir"])
            .arg(dir.join("data"))
            .env_clear()
            .env("PDNDGW_SERVER__PUBLIC_LISTEN", "127.0.0.1:0")
            .env("PDNDGW_SERVER__INTERNAL_LISTEN", "0.0.0.0:0")
            .env("PDNDGW_DEV__AUTHORITY_LISTEN", "127.0.0.1:0")
            .env("PDNDGW_DEV__RESIDENTS", "10")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log"));
        if opt_in {
            cmd.env(
                "PDNDGW_SERVER__INTERNAL_ALLOW_PLAINTEXT_NON_LOOPBACK",
                "true",
            );
        }
        cmd.spawn().expect("dev starts")
    };
    let log = dir.join("refused.log");
    let status = dev(false, &log).wait().expect("dev ends");
    assert_eq!(status.code(), Some(1));
    let refusal = std::fs::read_to_string(&log).expect("log");
    assert!(refusal.contains("`server.internal_listen`"), "{refusal}");

    let log = dir.join("allowed.log");
    let mut child = dev(true, &log);
    let stdout = child.stdout.take().expect("stdout");
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("Stop with Ctrl-C"));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(started, "dev did not start: {log}");
    assert!(
        log.contains("WARN") && log.contains("clear text beyond loopback"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `voucher --config` talks to the real PDND as well: a clear-text token endpoint is refused.
#[test]
fn voucher_with_a_real_configuration_refuses_a_clear_text_token_endpoint() {
    let dir = temp_dir();
    let file = dir.join("collaudo.toml");
    std::fs::write(&file, COLLAUDO).expect("config");
    let out = Command::new(BIN)
        .args(["voucher", "--config"])
        .arg(&file)
        .env_clear()
        .env(
            "PDNDGW_PDND__TOKEN_ENDPOINT",
            "http://auth.uat.interop.pagopa.it/token.oauth2",
        )
        .output()
        .expect("voucher runs");
    let err = refused(&out);
    assert!(
        err.contains("pdnd.token_endpoint") && err.contains("https://"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
