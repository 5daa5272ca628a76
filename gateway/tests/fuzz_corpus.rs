//! Replays every committed fuzz corpus file through its target on stable Rust.
//!
//! The fuzz crate (`gateway/fuzz`) needs nightly and is outside the workspace; its targets are
//! thin wrappers around `gateway::fuzzing`, so running the same functions here keeps the corpus
//! (seeds, and every input a fuzzing run found worth keeping, crashes included once fixed) a
//! regression suite of the ordinary test command.

use std::path::{Path, PathBuf};

use gateway::fuzzing::seeds::seeds;
use gateway::fuzzing::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target.name);
        let files = files_in(&dir);
        assert!(!files.is_empty(), "{} has no seed corpus", target.name);
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let run = target.run;
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(file.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "failing corpus inputs: {failures:#?}");
    assert!(replayed >= TARGETS.len());
}

#[test]
fn the_fuzz_crate_has_exactly_the_library_targets() {
    let mut binaries: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .collect();
    binaries.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    names.sort();
    assert_eq!(binaries, names);

    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let script = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/fuzz.sh"),
    )
    .unwrap();
    for name in &names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a [[bin]] of gateway/fuzz"
        );
        assert!(
            script.lines().any(|l| l.trim() == *name),
            "{name} is not in the target list of tests/scripts/fuzz.sh"
        );
    }
}

/// The committed `seed-*` files are exactly the seeds the library makes from the fixed vectors
/// and keys; `FUZZ_WRITE_SEEDS=1` rewrites them.
#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("FUZZ_WRITE_SEEDS").is_some_and(|v| v == "1");
    let seeds = seeds();
    let mut stale = Vec::new();
    for seed in &seeds {
        let path = fuzz_dir().join("corpus").join(seed.target).join(&seed.name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &seed.data).unwrap();
        } else if std::fs::read(&path).ok().as_ref() != Some(&seed.data) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or changed (FUZZ_WRITE_SEEDS=1 rewrites them): {stale:#?}"
    );
    // Each seed reaches the path it was written for: the accepted ones run the assertions
    // behind acceptance, the refused ones a refusal.
    for seed in &seeds {
        let run = target(seed.target).unwrap();
        assert_eq!(
            run(&seed.data),
            seed.expected,
            "{}/{}",
            seed.target,
            seed.name
        );
    }
    for target in TARGETS {
        for file in files_in(&fuzz_dir().join("corpus").join(target.name)) {
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with("seed-") {
                assert!(
                    seeds
                        .iter()
                        .any(|s| s.target == target.name && s.name == name),
                    "{} is not a generated seed",
                    file.display()
                );
            }
        }
    }
    for target in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == target.name),
            "{} has no seed",
            target.name
        );
    }
}
