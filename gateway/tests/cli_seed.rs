//! `pdnd-gateway seed` as an operator runs it, against real SQLite files: it takes its
//! database only from `--database-url`, refuses (and leaves untouched) a database holding
//! data it did not write, overwrites one only with `--replace`, and reseeds its own.

use sqlx::{Connection, Row, SqliteConnection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pdndgw-seed-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

fn seed(args: &[&str], env_url: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("seed")
        .args(args)
        .env_remove("PDNDGW_DATABASE__URL");
    if let Some(env_url) = env_url {
        cmd.env("PDNDGW_DATABASE__URL", env_url);
    }
    cmd.output().expect("seed runs")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rows per table (every table of the file, bookkeeping included).
async fn counts(path: &Path) -> BTreeMap<String, i64> {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    let tables: Vec<String> =
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{t}\"")))
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .get(0);
        counts.insert(t, n);
    }
    counts
}

async fn execute(path: &Path, sql: &str) {
    let mut conn = SqliteConnection::connect(&url(path)).await.expect("open");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("sql");
}

/// A register as the comune's software leaves it: the catalogue filled, no seed marker.
async fn register(dir: &Path) -> PathBuf {
    let path = dir.join("register.db");
    assert_ok(&seed(
        &["--database-url", &url(&path), "--residents", "30"],
        None,
    ));
    execute(&path, "DROP TABLE seed_marker").await;
    path
}

#[tokio::test]
async fn the_database_url_comes_only_from_the_flag() {
    let dir = temp_dir();
    let from_env = dir.join("from-env.db");
    let out = seed(&["--residents", "5"], Some(&url(&from_env)));
    assert!(!out.status.success(), "seeded the environment's database");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!from_env.exists(), "the environment's database was opened");

    let from_flag = dir.join("from-flag.db");
    let out = seed(
        &["--database-url", &url(&from_flag), "--residents", "5"],
        Some(&url(&from_env)),
    );
    assert_ok(&out);
    assert!(!from_env.exists(), "the environment's database was opened");
    assert!(counts(&from_flag).await["persone"] > 0);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn a_database_with_foreign_data_is_refused_and_left_untouched() {
    let dir = temp_dir();
    // A register without marker, and a database of something else entirely.
    let register = register(&dir).await;
    let other = dir.join("other.db");
    execute(
        &other,
        "CREATE TABLE protocollo (id INTEGER PRIMARY KEY, oggetto TEXT);
         INSERT INTO protocollo (oggetto) VALUES ('delibera 1'), ('delibera 2');",
    )
    .await;
    // A seeded database into which real persons were added afterwards.
    let grown = dir.join("grown.db");
    assert_ok(&seed(
        &["--database-url", &url(&grown), "--residents", "10"],
        None,
    ));
    execute(
        &grown,
        "CREATE TEMP TABLE x AS SELECT * FROM persone LIMIT 1;
         UPDATE x SET codice_fiscale = 'RSSMRA80A01H501U';
         INSERT INTO persone SELECT * FROM x;",
    )
    .await;
    for (db, table) in [
        (&register, "persone"),
        (&other, "protocollo"),
        (&grown, "persone"),
    ] {
        let before = counts(db).await;
        let out = seed(&["--database-url", &url(db), "--residents", "5"], None);
        assert!(!out.status.success(), "{}: seeded", db.display());
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("did not write") && stderr.contains("--replace"),
            "{stderr}"
        );
        assert!(stderr.contains(table), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(counts(db).await, before, "{}: changed", db.display());
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn replace_overwrites_a_foreign_database() {
    let dir = temp_dir();
    let register = register(&dir).await;
    assert!(!counts(&register).await.contains_key("seed_marker"));
    let out = seed(
        &[
            "--database-url",
            &url(&register),
            "--residents",
            "7",
            "--replace",
        ],
        None,
    );
    assert_ok(&out);
    let after = counts(&register).await;
    assert_eq!(after["seed_marker"], 1);
    // Only the new sample is left.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("seeded 7 residents"), "{stdout}");
    let out = seed(
        &["--database-url", &url(&register), "--residents", "5"],
        None,
    );
    assert_ok(&out);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn the_seed_reseeds_its_own_database() {
    let dir = temp_dir();
    let db = dir.join("sample.db");
    assert_ok(&seed(
        &["--database-url", &url(&db), "--residents", "20"],
        None,
    ));
    let first = counts(&db).await;
    assert_ok(&seed(
        &["--database-url", &url(&db), "--residents", "20"],
        None,
    ));
    assert_eq!(counts(&db).await, first, "the same sample again");
    assert_ok(&seed(
        &["--database-url", &url(&db), "--residents", "5"],
        None,
    ));
    assert!(counts(&db).await["persone"] < first["persone"]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
