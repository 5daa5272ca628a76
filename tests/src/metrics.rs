//! `/metrics` read by the reference parser: the exposition is parsed by Prometheus' own Python
//! client (`prometheus-client`, pinned and installed by `tests/scripts/prometheus_client.sh`
//! into `tests/.tools/`), so a malformed exposition fails the test instead of being read the
//! way we meant it.

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One sample of the exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The Python that has the parser, or `None` after `skip_or_fail` when it cannot be installed.
fn parser_python() -> Option<PathBuf> {
    let script = repo_root().join("tests/scripts/prometheus_client.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("bash runs");
    if !out.status.success() {
        test_support::skip_or_fail(&format!(
            "prometheus-client could not be installed ({}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("PROMETHEUS_PYTHON="))
        .map(PathBuf::from)
}

impl Exposition {
    /// Parses `text` with prometheus-client; `None` only when the parser is unavailable
    /// locally (a visible SKIPPED; CI fails). A parse error fails the test.
    pub fn parse(text: &str) -> Option<Exposition> {
        let python = parser_python()?;
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/scripts/metrics_samples.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(text.as_bytes())
            .expect("exposition written");
        let out = child.wait_with_output().expect("parser ends");
        assert!(
            out.status.success(),
            "prometheus-client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("a JSON sample");
                Sample {
                    name: v["name"].as_str().expect("name").to_owned(),
                    labels: v["labels"].as_object().cloned().unwrap_or_default(),
                    value: v["value"].as_f64().expect("numeric value"),
                }
            })
            .collect();
        Some(Exposition { samples })
    }

    /// The sum of the samples named `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).and_then(Value::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The names of every sample.
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// Every label value of every sample.
    pub fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|s| s.labels.values().filter_map(Value::as_str))
    }
}
