//! Fuzzing entry points: one pure function per parser that network input reaches.
//!
//! The fuzz crate (`gateway/fuzz`, built with nightly and cargo-fuzz, outside the workspace)
//! and the stable replay test (`gateway/tests/fuzz_corpus.rs`) call the same functions, so the
//! committed corpora are checked by the ordinary test command and a crash found by the fuzzer is
//! reproduced by a plain `cargo test`. This module lives in the library, rather than in the fuzz
//! crate, because the stable test cannot reach an excluded crate and the targets need a few
//! crate-private entry points (ModI's JWS header decoding, the signing keys' raw form).
//!
//! Each target takes arbitrary bytes, never panics on its own account, and asserts what must
//! hold beyond "no panic" (a validated voucher carries the claims its token says, a parsed
//! codice fiscale is its input's normal form, ...): a failed assertion is a finding, exactly
//! like a panic inside the gateway. Keys, certificates and `now` are fixed so every input means
//! the same thing on every run ([`fixtures`]).
//!
//! Input conventions shared by the targets: where a target has modes, the first byte picks
//! one (`byte % modes`); where an input has several parts (a JWS, headers, a body), they are
//! separated by NUL bytes. "Signed" modes take header or claims JSON from the input and sign
//! them with the fixed keys, so the checks behind signature verification are reachable too.
//!
//! Not a public API: hidden from the docs, used only by the fuzz crate and the replay test.

mod bodies;
pub mod fixtures;
mod keys;
mod modi;
mod route;
pub mod seeds;
mod voucher;

/// What a target's parser made of an input, so tests can check that a seed reaches the path
/// it was written for (and thus the assertions behind acceptance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input was accepted (a voucher validated, a body parsed, ...).
    Accepted,
    /// The input was refused or was not of the target's shape.
    Refused,
}

impl From<bool> for Outcome {
    fn from(accepted: bool) -> Self {
        if accepted {
            Outcome::Accepted
        } else {
            Outcome::Refused
        }
    }
}

/// A fuzz target: its name (the cargo-fuzz binary and corpus folder) and its body.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order `tests/scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "bearer_voucher",
        run: voucher::bearer_voucher,
    },
    Target {
        name: "compact_jws",
        run: voucher::compact_jws,
    },
    Target {
        name: "client_assertion",
        run: voucher::client_assertion,
    },
    Target {
        name: "modi_digest",
        run: modi::digest,
    },
    Target {
        name: "modi_signature",
        run: modi::signature,
    },
    Target {
        name: "modi_tracking",
        run: modi::tracking,
    },
    Target {
        name: "pdnd_keys",
        run: keys::pdnd_keys,
    },
    Target {
        name: "codice_fiscale",
        run: bodies::codice_fiscale,
    },
    Target {
        name: "eservice_bodies",
        run: bodies::eservice_bodies,
    },
    Target {
        name: "path_resolver",
        run: route::path_resolver,
    },
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8]) -> Outcome> {
    TARGETS.iter().find(|t| t.name == name).map(|t| t.run)
}

pub use bodies::{codice_fiscale, eservice_bodies};
pub use keys::pdnd_keys;
pub use modi::{digest as modi_digest, signature as modi_signature, tracking as modi_tracking};
pub use route::path_resolver;
pub use voucher::{bearer_voucher, client_assertion, compact_jws};

/// The first byte as a mode in `0..modes`, and the rest.
fn mode(data: &[u8], modes: u8) -> Option<(u8, &[u8])> {
    data.split_first().map(|(m, rest)| (m % modes, rest))
}

/// Up to `n` NUL-separated parts; missing parts are empty.
fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = rest;
            break;
        }
        match rest.iter().position(|&b| b == 0) {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *slot = rest;
                rest = &[];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_on_nul_and_pad_with_empty() {
        assert_eq!(parts::<3>(b"a\0b\0c\0d"), [&b"a"[..], b"b", b"c\0d"]);
        assert_eq!(parts::<3>(b"a"), [&b"a"[..], b"", b""]);
        assert_eq!(mode(b"\x05xy", 3), Some((2, &b"xy"[..])));
        assert_eq!(mode(b"", 3), None);
    }

    #[test]
    fn every_target_is_found_by_name() {
        for t in TARGETS {
            assert!(target(t.name).is_some(), "{}", t.name);
        }
        assert!(target("nope").is_none());
    }
}
