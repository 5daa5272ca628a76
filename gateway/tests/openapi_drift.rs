//! The committed contracts (`openapi/*-v1.yaml`, what a comune uploads to PDND) are exactly what
//! the code generates from `config/produzione.example.toml`. A change to a handler, a type or
//! the gateway's envelope without regenerating fails here, with the command that regenerates.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pdnd-gateway");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace root")
        .to_path_buf()
}

/// Runs `pdnd-gateway openapi` as the regeneration command does, without any PDNDGW_*
/// override of the caller's environment leaking in.
fn generate(eservice: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root())
        .args(["openapi", "--eservice", eservice])
        .args(extra);
    for (key, _) in std::env::vars() {
        if key.starts_with("PDNDGW_") {
            cmd.env_remove(key);
        }
    }
    cmd.output().expect("pdnd-gateway openapi runs")
}

fn first_difference(committed: &str, generated: &str) -> String {
    for (n, (a, b)) in committed.lines().zip(generated.lines()).enumerate() {
        if a != b {
            return format!("line {}:\n  committed: {a}\n  generated: {b}", n + 1);
        }
    }
    format!(
        "one is a prefix of the other ({} vs {} lines)",
        committed.lines().count(),
        generated.lines().count()
    )
}

#[test]
fn committed_contracts_match_the_code() {
    let mut stale = Vec::new();
    for eservice in ["anagrafe", "tributi"] {
        let file = format!("openapi/{eservice}-v1.yaml");
        let out = generate(
            eservice,
            &[
                "--format",
                "yaml",
                "--config",
                "config/produzione.example.toml",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let generated = String::from_utf8(out.stdout).expect("utf-8 YAML");
        let committed = std::fs::read_to_string(root().join(&file)).unwrap_or_default();
        if committed != generated {
            stale.push(format!(
                "{file} differs from the code ({}). Regenerate with:\n  \
                 cargo run -q --bin pdnd-gateway -- openapi --eservice {eservice} \
                 --config config/produzione.example.toml > {file}",
                first_difference(&committed, &generated)
            ));
        }
    }
    assert!(stale.is_empty(), "{}", stale.join("\n\n"));
}

#[test]
fn json_and_yaml_say_the_same_and_name_the_configured_server() {
    for eservice in ["anagrafe", "tributi"] {
        let config = ["--config", "config/produzione.example.toml"];
        let yaml = generate(eservice, &[&["--format", "yaml"][..], &config[..]].concat());
        let json = generate(eservice, &[&["--format", "json"][..], &config[..]].concat());
        let yaml: serde_json::Value = yaml_serde::from_slice(&yaml.stdout).expect("YAML parses");
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON parses");
        assert_eq!(yaml, json, "{eservice}");
        assert_eq!(
            json["servers"][0]["url"],
            format!("https://api.comune.example.it/{eservice}/v1")
        );
        // PDND's upload: `openapi` is a string starting with 3.
        assert!(json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
    }
    // Without --config: the development configuration, a sandbox server.
    let dev = generate("anagrafe", &["--format", "json"]);
    let dev: serde_json::Value = serde_json::from_slice(&dev.stdout).expect("JSON parses");
    assert_eq!(
        dev["servers"][0]["url"],
        "http://127.0.0.1:8080/anagrafe/v1"
    );
    assert_eq!(dev["servers"][0]["x-sandbox"], true);
}

#[test]
fn a_relative_public_url_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("pdndgw-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = std::fs::read_to_string(root().join("config/produzione.example.toml"))
        .expect("example config")
        .replace(
            "public_url = \"https://api.comune.example.it/tributi/v1\"",
            "public_url = \"/tributi/v1\"",
        );
    let path = dir.join("relative.toml");
    std::fs::write(&path, text).expect("write config");
    let path = path.to_string_lossy().into_owned();
    let out = generate("tributi", &["--config", &path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("eservices.tributi.public_url"), "{stderr}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
