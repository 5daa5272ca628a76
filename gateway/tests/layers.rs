//! The module layers of the gateway crate, read from its sources: every `crate::<module>` a
//! file names must sit on a lower layer than the file's own module, so the dependencies run one
//! way (protocol -> PDND client -> provider -> consumer -> server -> cli/dev -> main) and no
//! cycle can form. The protocol code (`pdnd/`, `modi/`) names neither actix nor an HTTP client.

use std::path::{Path, PathBuf};

/// Each top-level module of `gateway/src` and its layer (higher imports lower).
const LAYERS: &[(&str, u8)] = &[
    ("pdnd", 1),
    ("modi", 1),
    ("http_client", 1),
    ("telemetry", 1),
    ("config", 2),
    ("problem", 2),
    ("pdnd_client", 3),
    ("state", 3),
    ("openapi", 3),
    ("tls", 3),
    ("provider", 4),
    ("consumer", 5),
    ("health", 5),
    ("migrate", 5),
    ("tracing_pdnd", 5),
    ("fuzzing", 5),
    ("server", 6),
    ("cli", 7),
    ("dev", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comment lines (module docs name higher layers on purpose).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .expect("readable source file")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

/// `(file's module, file)` for every source file but `main.rs` and `lib.rs`.
fn modules() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).ok()?.to_owned();
            let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            (module != "main" && module != "lib").then_some((module, f))
        })
        .collect()
}

/// The modules a line names as `crate::<module>`.
fn named_modules(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .filter(|(i, _)| {
            // `gateway::crate::` cannot occur; skip `$crate::` of macros.
            !line[..*i].ends_with('$')
        })
        .map(|(i, m)| {
            line[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_top_level_module_has_a_layer() {
    for (module, file) in modules() {
        assert!(
            layer(&module).is_some(),
            "{}: module `{module}` has no layer in gateway/tests/layers.rs; add it where it belongs",
            file.display()
        );
    }
}

#[test]
fn imports_run_down_the_layers_only() {
    let mut against = Vec::new();
    for (module, file) in modules() {
        let Some(own) = layer(&module) else { continue };
        for (n, line) in code_lines(&file) {
            for named in named_modules(&line) {
                if named == module {
                    continue;
                }
                if let Some(theirs) = layer(&named) {
                    if theirs >= own {
                        against.push(format!(
                            "{}:{n}: `{module}` (layer {own}) names `crate::{named}` (layer {theirs})",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against the layers:\n{}",
        against.join("\n")
    );
}

#[test]
fn protocol_code_names_no_http_framework_or_client() {
    let mut found = Vec::new();
    for (module, file) in modules() {
        if module != "pdnd" && module != "modi" {
            continue;
        }
        for (n, line) in code_lines(&file) {
            for forbidden in ["actix_web", "actix_", "reqwest", "crate::http_client"] {
                if line.contains(forbidden) {
                    found.push(format!("{}:{n}: {forbidden}", file.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "protocol code reaching HTTP:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_against_the_layers() {
    // The line scanner itself: a provider line naming the server is caught, a comment is not.
    assert_eq!(named_modules("use crate::server::Bound;"), ["server"]);
    assert_eq!(
        named_modules("let x = crate::pdnd::jws::split(crate::modi::X);"),
        ["pdnd", "modi"]
    );
    assert!(layer("server") > layer("provider"));
}
