//! External services a suite starts for itself (a PostgreSQL it can stop and restart), under
//! the rule of `test-support`: unavailable locally is a visible skip, in CI a failure.

use std::path::PathBuf;

/// A throwaway PostgreSQL server of its own (via `tests/scripts/postgres.sh`), for suites that
/// must stop and restart the database. Stopped and removed on drop.
pub struct Postgres {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub url: String,
}

const POSTGRES_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");

impl Postgres {
    /// Starts one. Where PostgreSQL cannot be had, a local run skips (returns None with a
    /// message) but CI fails: the suites must never silently lose their PostgreSQL half.
    pub fn start() -> Option<Postgres> {
        let tmp = crate::temp_dir("pg");
        let dir = tmp.path().to_path_buf();
        match Self::run("start", &dir) {
            Ok(out) => {
                let url = out
                    .lines()
                    .find_map(|l| l.strip_prefix("DATABASE_URL="))
                    .expect("postgres.sh prints DATABASE_URL")
                    .to_owned();
                Some(Postgres {
                    dir,
                    _tmp: tmp,
                    url,
                })
            }
            Err(e) => {
                test_support::skip_or_fail(&format!("PostgreSQL could not be started: {e}"));
                None
            }
        }
    }

    fn run(cmd: &str, dir: &std::path::Path) -> Result<String, String> {
        let out = std::process::Command::new("bash")
            .arg(POSTGRES_SCRIPT)
            .arg(cmd)
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (an outage).
    pub fn stop(&self) {
        Self::run("stop", &self.dir).expect("postgres stops");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        Self::run("start", &self.dir).expect("postgres restarts");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The directory itself goes when `_tmp` drops, after this.
        let _ = Self::run("stop", &self.dir);
    }
}
