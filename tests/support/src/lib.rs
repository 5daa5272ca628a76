//! The one rule for tests that need a service from outside the process (PostgreSQL, Redis):
//! `tests/run.sh` starts them and exports their URLs; where a URL is missing or a service cannot
//! be started, a local run skips the test with a visible `SKIPPED` line, but a run with `CI` set
//! fails, so that CI never silently loses the PostgreSQL or Redis half of a suite.
//!
//! A crate of its own, with no dependencies, so that every package's tests (the gateway's unit
//! and CLI tests, the e-services' suites, the end-to-end binary) use the same rule without
//! depending on each other.

/// The variable `tests/run.sh` sets to the throwaway PostgreSQL's URL.
pub const POSTGRES_URL_VAR: &str = "PDNDGW_TEST_POSTGRES_URL";
/// The variable `tests/run.sh` sets to the throwaway Redis's URL.
pub const REDIS_URL_VAR: &str = "PDNDGW_TEST_REDIS_URL";
/// The variable `tests/run.sh` sets to the throwaway Sentinel deployment's URL
/// (`redis+sentinel://...`, from `tests/scripts/redis_ha.sh`).
pub const REDIS_SENTINEL_URL_VAR: &str = "PDNDGW_TEST_REDIS_SENTINEL_URL";
/// The variable `tests/run.sh` sets to the throwaway Redis Cluster's URL (`redis+cluster://...`).
pub const REDIS_CLUSTER_URL_VAR: &str = "PDNDGW_TEST_REDIS_CLUSTER_URL";

/// Whether this run is CI's (the `CI` variable is set, to anything).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A required service is missing: panics with `why` when `CI` is set; otherwise prints
/// `SKIPPED: why` (on stderr, shown with `--nocapture` and on failure) and returns, so that
/// the caller returns `None` or skips the test.
pub fn skip_or_fail(why: &str) {
    assert!(!in_ci(), "{why}, but CI is set: CI must run this test");
    eprintln!("SKIPPED: {why} (tests/run.sh provides it; CI runs this test)");
}

/// The value of `var`, or `None` after [`skip_or_fail`] when it is unset or empty.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail(&format!("{var} is not set"));
            None
        }
    }
}

/// The shared test PostgreSQL's URL ([`POSTGRES_URL_VAR`]), or `None` locally.
pub fn postgres_url() -> Option<String> {
    service_url(POSTGRES_URL_VAR)
}

/// The shared test Redis's URL ([`REDIS_URL_VAR`]), or `None` locally.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR)
}

/// The test Sentinel deployment's URL ([`REDIS_SENTINEL_URL_VAR`]), or `None` locally.
pub fn redis_sentinel_url() -> Option<String> {
    service_url(REDIS_SENTINEL_URL_VAR)
}

/// The test Redis Cluster's URL ([`REDIS_CLUSTER_URL_VAR`]), or `None` locally.
pub fn redis_cluster_url() -> Option<String> {
    service_url(REDIS_CLUSTER_URL_VAR)
}

/// A SQLite database file of one test, in the temporary directory. Dropping it (also when the
/// test panics) removes the file with its `-wal`, `-shm` and `-journal` companions, which a
/// `remove_file` of the database alone would leave behind.
#[derive(Debug)]
struct TempSqlite {
    path: std::path::PathBuf,
}

impl TempSqlite {
    /// A new, not yet created file named `{tag}-{pid}-{n}-{nanos}.db`.
    fn new(tag: &str) -> TempSqlite {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{tag}-{}-{}-{nanos}.db",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TempSqlite {
            path: std::env::temp_dir().join(name),
        }
    }

    /// The sqlx URL that creates the file on first connection.
    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.path.display())
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        for suffix in [
            "",
            "-wal",
            "-shm",
            "-journal",
            ".lookups",
            ".lookups-wal",
            ".lookups-shm",
        ] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A fresh database of one test, as the URL the code under test takes; for SQLite also the
/// file, removed when this drops. Dereferences to the URL.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    _file: Option<TempSqlite>,
}

impl TestDb {
    /// A new SQLite file named after `tag` ([`TempSqlite`]).
    pub fn sqlite(tag: &str) -> TestDb {
        let file = TempSqlite::new(tag);
        TestDb {
            url: file.url(),
            _file: Some(file),
        }
    }

    /// A database (a schema) the caller made on a server: nothing to remove here.
    pub fn server(url: String) -> TestDb {
        TestDb { url, _file: None }
    }

    /// A new, empty schema on the test PostgreSQL ([`postgres_url`]), as a URL whose
    /// `search_path` is that schema; `None` (a visible skip) when no PostgreSQL is configured
    /// outside CI.
    pub async fn postgres() -> Option<TestDb> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = postgres_url()?;
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!("t_{}_{n}_{nanos}", std::process::id());
        sqlx::any::install_default_drivers();
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .expect("connect to the test PostgreSQL");
        for sql in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
                .expect("make the test schema");
        }
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb::server(format!(
            "{base}{sep}options[search_path]={schema}"
        )))
    }
}

impl std::ops::Deref for TestDb {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, not several: they change the process environment, which tests running in
    // parallel would see.
    #[test]
    fn set_urls_are_returned_and_missing_ones_skip_locally_and_fail_in_ci() {
        let var = "TEST_SUPPORT_SELF_TEST_URL";
        std::env::set_var(var, "redis://127.0.0.1:1");
        assert_eq!(service_url(var).as_deref(), Some("redis://127.0.0.1:1"));

        std::env::set_var(var, "");
        let ci = std::env::var_os("CI");
        std::env::remove_var("CI");
        assert_eq!(service_url(var), None, "empty is unset: skipped locally");
        std::env::remove_var(var);
        assert_eq!(service_url(var), None, "unset: skipped locally");

        std::env::set_var("CI", "true");
        let in_ci = std::panic::catch_unwind(|| service_url(var));
        match ci {
            Some(v) => std::env::set_var("CI", v),
            None => std::env::remove_var("CI"),
        }
        assert!(in_ci.is_err(), "unset with CI set must fail the test");
    }

    #[test]
    fn a_temp_sqlite_removes_its_companions() {
        let db = TempSqlite::new("test-support");
        let wal = format!("{}-wal", db.path.as_path().display());
        std::fs::write(db.path.as_path(), b"x").expect("db");
        std::fs::write(&wal, b"x").expect("wal");
        assert!(db.url().starts_with("sqlite://") && db.url().ends_with(".db?mode=rwc"));
        let path = db.path.as_path().to_owned();
        drop(db);
        assert!(!path.exists());
        assert!(!std::path::Path::new(&wal).exists());
    }
}
