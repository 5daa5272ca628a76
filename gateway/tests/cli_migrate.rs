//! `pdnd-gateway migrate` and a `serve` told not to migrate, as an operator meets them, on
//! SQLite and on PostgreSQL: a missing schema stops `serve --no-migrate` (and
//! `database.migrate_on_start = false`) with a message naming `migrate`; `migrate` (also with
//! `PDNDGW_CONFIG`) creates it, a second run changes nothing; then `serve --no-migrate` starts
//! and stops on SIGTERM with status 0. Errors exit non-zero without the database password.

use sqlx::any::AnyPoolOptions;
use sqlx::AssertSqlSafe;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");
const HMAC: &str = "c2068f4f4dfdac0c79499a29236787a230a678b668810153dd48f1606cf7e6bc";
const PASSWORD: &str = "Zq8-unguessable-Pw-41xT";

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pdndgw-migrate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// A configuration `serve` accepts (no key files: no e-service signs), on these databases.
fn config(dir: &Path, database_url: &str, audit_url: &str) -> PathBuf {
    let purposes = dir.join("purposes.toml");
    std::fs::write(&purposes, "").expect("purposes");
    let text = format!(
        r#"
[server]
public_listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
workers = 1

[pdnd]
environment = "collaudo"
token_endpoint = "https://127.0.0.1:9/token.oauth2"
client_assertion_audience = "auth.uat.interop.pagopa.it/client-assertion"
voucher_issuers = ["uat.interop.pagopa.it"]
jwks_url = "https://127.0.0.1:9/.well-known/jwks.json"

[eservices.anagrafe]
public_url = "https://api.comune.example.it/anagrafe/v1"
audiences = ["https://api.comune.example.it/anagrafe/v1"]

[eservices.anagrafe.modi]
sign_responses = false

[eservices.tributi]
public_url = "https://api.comune.example.it/tributi/v1"
audiences = ["https://api.comune.example.it/tributi/v1"]

[eservices.tributi.modi]
sign_responses = false

[comune]
name = "Comune di Prova"
contact_email = "interoperabilita@comune.example.it"

[database]
url = "{database_url}"

[audit]
url = "{audit_url}"
hmac_secret = ""

[purposes]
file = "{purposes}"
"#,
        purposes = purposes.display()
    );
    let file = dir.join(format!("gateway-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, text).expect("config");
    file
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PDNDGW_AUDIT__HMAC_SECRET", HMAC)
        .envs(env.iter().copied())
        .output()
        .expect("runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failure's message, after checking it is a clean one.
fn failed(out: &Output) -> String {
    let (_, stderr) = text(out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(HMAC), "a secret is printed: {stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "a password is printed: {stderr}"
    );
    stderr
}

/// `serve --no-migrate` starts (its "serving" log line), then stops on SIGTERM with status 0.
fn serves_and_stops(file: &Path) {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--no-migrate", "--config"])
        .arg(file)
        .env_clear()
        .env("PDNDGW_AUDIT__HMAC_SECRET", HMAC)
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
    });
    let started = Instant::now();
    let mut log = String::new();
    while !log.contains("pdnd-gateway serving") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start: {log}"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited {status:?}: {log}");
        }
        if let Ok(latest) = rx.recv_timeout(Duration::from_millis(200)) {
            log = latest;
        }
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{log}");
}

/// The whole operator story on one pair of fresh databases.
fn migrate_story(dir: &Path, database_url: &str, audit_url: &str) {
    let file = config(dir, database_url, audit_url);
    let config_arg = file.to_str().expect("utf-8 path");

    // Not migrated yet: serve that may not migrate refuses, with the way out.
    for (args, env) in [
        (
            vec!["serve", "--no-migrate", "--config", config_arg],
            vec![],
        ),
        (
            vec!["serve", "--config", config_arg],
            vec![("PDNDGW_DATABASE__MIGRATE_ON_START", "false")],
        ),
    ] {
        let err = failed(&run(&args, &env));
        assert!(
            err.contains("pdnd-gateway migrate --config") && err.contains("missing or behind"),
            "{err}"
        );
    }

    let out = run(&["migrate", "--config", config_arg], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("applied migration(s) 1"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // Again, the configuration from the environment: nothing left to do.
    let out = run(&["migrate"], &[("PDNDGW_CONFIG", config_arg)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("already current"), "{stdout}");

    serves_and_stops(&file);
}

#[test]
fn sqlite_serve_without_migrating_refuses_a_missing_schema_until_migrate_ran() {
    let dir = temp_dir();
    let url = |name: &str| format!("sqlite://{}?mode=rwc", dir.join(name).display());
    migrate_story(&dir, &url("comune.db"), &url("audit.db"));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A fresh schema of the test PostgreSQL, as a URL whose search_path points at it.
fn fresh_postgres_schema(runtime: &tokio::runtime::Runtime, base: &str) -> String {
    let schema = format!("migrate_{}", uuid::Uuid::new_v4().simple());
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(base)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

#[test]
fn postgres_serve_without_migrating_refuses_a_missing_schema_until_migrate_ran() {
    let Some(base) = test_support::postgres_url() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = temp_dir();
    let database = fresh_postgres_schema(&runtime, &base);
    let audit = fresh_postgres_schema(&runtime, &base);
    migrate_story(&dir, &database, &audit);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn an_unreachable_database_fails_migrate_clearly_without_its_password() {
    let dir = temp_dir();
    // Port 1 on loopback: nobody listens, the connection is refused at once.
    let url = format!("postgres://gateway:{PASSWORD}@127.0.0.1:1/anagrafe");
    let audit = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
    let file = config(&dir, &url, &audit);
    let err = failed(&run(
        &["migrate", "--config", file.to_str().expect("utf-8")],
        &[],
    ));
    assert!(
        err.contains("e-service store") && err.contains("postgres://gateway:***@127.0.0.1:1"),
        "{err}"
    );
    let err = failed(&run(
        &["migrate", "--config", "/nonexistent/gateway.toml"],
        &[],
    ));
    assert!(err.contains("--config"), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
