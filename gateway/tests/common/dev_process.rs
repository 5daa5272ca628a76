//! `pdnd-gateway dev` as a child process, the way a newcomer starts it: free ports (port 0 in
//! the environment), the addresses and a sample codice fiscale read from its start-up message,
//! the log (stderr) in a file of the data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");

/// A running `dev`; killed (`kill -9`) when dropped.
pub struct DevProcess {
    pub child: Child,
    /// Where its log lines (stderr) go; a new file for each start.
    pub log: PathBuf,
    /// `host:port` of the public listener, the internal listener and the local PDND authority.
    pub public: String,
    // Each suite compiles this module on its own, and not every suite reads every address.
    #[allow(dead_code)]
    pub internal: String,
    pub authority: String,
    /// One of the seed's sample subjects, as the start-up message shows it.
    pub sample_cf: String,
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of an `http://host:port` word on a start-up line beginning with `label`.
fn addr_on(line: &str, label: &str) -> Option<String> {
    if !line.trim_start().starts_with(label) {
        return None;
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .map(|w| w.trim_end_matches('/').to_owned())
}

impl DevProcess {
    /// Starts `dev --data-dir DIR ARGS` with 100 residents, then `env`, and returns once the
    /// start-up message is complete.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> DevProcess {
        std::fs::create_dir_all(dir).expect("data dir");
        let log = dir.join(format!("server-{}.log", uuid::Uuid::new_v4()));
        let mut child = Command::new(BIN)
            .args(["dev", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("PDNDGW_SERVER__PUBLIC_LISTEN", "127.0.0.1:0")
            .env("PDNDGW_SERVER__INTERNAL_LISTEN", "127.0.0.1:0")
            .env("PDNDGW_DEV__AUTHORITY_LISTEN", "127.0.0.1:0")
            .env("PDNDGW_DEV__RESIDENTS", "100")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("dev starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut public, mut internal, mut authority, mut cf) = (None, None, None, None);
        let mut banner = String::new();
        for line in lines.by_ref() {
            let line = line.expect("utf-8 start-up message");
            banner.push_str(&line);
            banner.push('\n');
            public = public.or_else(|| addr_on(&line, "e-services (public)"));
            internal = internal.or_else(|| addr_on(&line, "internal listener"));
            authority = authority.or_else(|| addr_on(&line, "local PDND authority"));
            if cf.is_none() && line.contains("\"codiceFiscale\":\"") {
                cf = line
                    .split("\"codiceFiscale\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_owned);
            }
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let missing = |what: &str| -> String { panic!("no {what} in:\n{banner}") };
        DevProcess {
            child,
            log,
            public: public.unwrap_or_else(|| missing("public address")),
            internal: internal.unwrap_or_else(|| missing("internal address")),
            authority: authority.unwrap_or_else(|| missing("authority address")),
            sample_cf: cf.unwrap_or_else(|| missing("sample codice fiscale")),
        }
    }
}
