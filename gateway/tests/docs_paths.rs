//! Every file or folder the README and the pages under `docs/` name exists in the repository:
//! markdown links (relative to the page) and repository paths in inline code (relative to the
//! root, e.g. `tests/run.sh`, `gateway/src/server.rs`), so a move or a rename cannot leave a
//! reader at a dead end.

use std::path::{Path, PathBuf};

/// Where a path in inline code starts when it names something of this repository.
const ROOTS: &[&str] = &[
    "gateway/",
    "eservices/",
    "tests/",
    "config/",
    "openapi/",
    "certs/",
    "docs/",
    ".ci/",
    "deny.toml",
    "Cargo.toml",
    "Cargo.lock",
    "README.md",
];

/// Git-ignored folders the test scripts create (tools they install): named in the docs, absent
/// from a fresh clone until the first run.
const MADE_BY_SCRIPTS: &[&str] = &["tests/.tools/"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// The text of a page outside fenced code blocks (diagrams and shell sessions name things
/// relative to where they run).
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Targets of `[text](target)` links that stay in the repository.
fn links(text: &str) -> Vec<String> {
    text.match_indices("](")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let target = &rest[..rest.find(')')?];
            let target = target.split('#').next().unwrap_or("");
            (!target.is_empty() && !target.contains("://") && !target.starts_with("mailto:"))
                .then(|| target.to_owned())
        })
        .collect()
}

/// Repository paths inside inline code spans (a span may be a whole command).
fn code_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| span.split_whitespace())
        .map(|token| token.trim_end_matches([',', ';', ':', '.', ')']))
        .filter(|token| ROOTS.iter().any(|r| token.starts_with(r)))
        .filter(|token| !MADE_BY_SCRIPTS.iter().any(|r| token.starts_with(r)))
        .filter(|token| !token.contains(['<', '{', '*', '…', '$', '[', ']']))
        .map(|token| token.split("::").next().unwrap_or(token).to_owned())
        .collect()
}

#[test]
fn every_file_the_readme_and_docs_name_exists() {
    let root = root();
    let mut missing = Vec::new();
    for page in pages() {
        let text = prose(&std::fs::read_to_string(&page).expect("readable page"));
        let dir = page.parent().expect("a page lives in a folder");
        for link in links(&text) {
            if !dir.join(&link).exists() {
                missing.push(format!("{}: link {link}", page.display()));
            }
        }
        for path in code_paths(&text) {
            if !root.join(&path).exists() {
                missing.push(format!("{}: `{path}`", page.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_finds_links_and_paths() {
    assert_eq!(
        links("see [a](docs/a.md#x) and [b](https://x.y)"),
        ["docs/a.md"]
    );
    assert_eq!(
        code_paths("run `bash tests/run.sh` then read `gateway/src/server.rs::eservice_scope`, not `/status`"),
        ["tests/run.sh", "gateway/src/server.rs"]
    );
    assert!(prose("a\n```\ngateway/none.rs\n```\nb\n")
        .lines()
        .all(|l| !l.contains("none")));
}
