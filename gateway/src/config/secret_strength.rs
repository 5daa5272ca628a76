//! Whether a configured secret is a real one: `serve` refuses the placeholders of the example
//! files and values whose structure gives them away as made by hand.
//!
//! Nothing can tell from a value how it was generated; what can be told is that it does not
//! look like a generator's output. The rules, in order:
//!
//! 1. **Placeholders**: the example files' values, well-known defaults (`changeme`, `secret`,
//!    `password`, ...), template markers (`<...>`, `${...}`) and phrases that ask to be replaced.
//! 2. **Length**: at least 32 characters for keys (audit HMAC secret, API keys), 16 for
//!    passwords.
//! 3. **Distinct characters**: one character repeated, or fewer than 6 different ones.
//! 4. **An entropy estimate**: the value is reduced to its shortest repeating unit (`abcabc...`
//!    counts as `abc`), then scored as `length x min(H(characters), H(steps))`, where `H` is the
//!    Shannon entropy of the observed frequencies and the steps are the differences between
//!    neighbouring characters (so `0123456789...` and `abab...` score almost nothing, however
//!    many distinct characters they use). Keys need 72 bits, passwords 32. Generated values
//!    clear this with room to spare (mean, and lowest of 5,000 random samples): 32 hex
//!    characters (`openssl rand -hex 16`) 115 bits (95), 32 decimal digits 99 (82), a
//!    16-character alphanumeric password 59 (47), 16 hex characters 51 (33); a repeated word,
//!    a run such as `0123456789...` or a string of a few letters in blocks scores under 25.
//!
//! The estimate is deliberately simple and errs towards accepting: it is a net for mistakes, not
//! a proof of strength. Errors never contain the value.

/// What a secret protects, which decides how much is asked of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A machine secret nobody types: the audit HMAC key, an internal API key.
    Key,
    /// A database password inside a URL.
    Password,
}

impl SecretKind {
    fn min_len(self) -> usize {
        match self {
            SecretKind::Key => 32,
            SecretKind::Password => 16,
        }
    }

    fn min_bits(self) -> u32 {
        match self {
            SecretKind::Key => 72,
            SecretKind::Password => 32,
        }
    }
}

/// The fewest different characters a secret may use.
const MIN_DISTINCT: usize = 6;

/// Values longer than this are judged on their first characters (quadratic period search).
const MAX_ANALYSED: usize = 1024;

/// Why a secret is refused. The messages complete "key `x`: the value ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    #[error("is a placeholder (a value of the example files, a well-known default or a template); generate one, e.g. `openssl rand -hex 32`")]
    Placeholder,
    #[error("is {len} characters long, at least {min} are required; generate one, e.g. `openssl rand -hex 32`")]
    TooShort { len: usize, min: usize },
    #[error("is one character repeated; generate one, e.g. `openssl rand -hex 32`")]
    OneCharacter,
    #[error("uses {distinct} different characters, at least {min} are required; generate one, e.g. `openssl rand -hex 32`")]
    FewDistinct { distinct: usize, min: usize },
    #[error("scores about {bits} bits of entropy (repetitions, sequences, few symbols), at least {min} are required; generate one, e.g. `openssl rand -hex 32`")]
    LowEntropy { bits: u32, min: u32 },
}

/// Exact values (compared lowercased, letters and digits only) that are never secrets.
const KNOWN_VALUES: &[&str] = &[
    "changeme",
    "changeit",
    "secret",
    "secrets",
    "password",
    "passw0rd",
    "pa55word",
    "postgres",
    "admin",
    "root",
    "default",
    "example",
    "placeholder",
    "test",
    "dev",
    "letmein",
    "qwerty",
    "123456",
    "12345678",
    "1234567890",
    "none",
    "null",
    "xxx",
];

/// Fragments (same normalisation) that mark a value written to be replaced.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "replaceme",
    "replacewith",
    "changeme",
    "changeit",
    "changethis",
    "placeholder",
    "example",
    "yoursecret",
    "yourpassword",
    "yourkey",
    "insertyour",
    "putyour",
    "setme",
    "fillme",
    "secret",
    "password",
    "randomcharacters",
    "xxxxxxxx",
];

/// Checks the hex SHA-256 of a secret held elsewhere (the internal API keys' digests): the
/// secret itself cannot be measured, but a digest that is itself a placeholder (all zeros,
/// a pattern) or the digest of a known non-secret (`changeme`, the empty string...) is
/// refused.
pub fn assess_digest(digest: &str) -> Result<(), Weakness> {
    use sha2::Digest;
    let digest = digest.trim().to_ascii_lowercase();
    let known = std::iter::once("").chain(KNOWN_VALUES.iter().copied());
    if known
        .into_iter()
        .any(|v| hex::encode(sha2::Sha256::digest(v.as_bytes())) == digest)
    {
        return Err(Weakness::Placeholder);
    }
    assess(&digest, SecretKind::Key)
}

/// Checks one secret; `Ok` when none of the rules of the module refuses it.
pub fn assess(value: &str, kind: SecretKind) -> Result<(), Weakness> {
    if is_placeholder(value) {
        return Err(Weakness::Placeholder);
    }
    let chars: Vec<char> = value.chars().take(MAX_ANALYSED).collect();
    let len = value.chars().count();
    if len < kind.min_len() {
        return Err(Weakness::TooShort {
            len,
            min: kind.min_len(),
        });
    }
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() == 1 {
        return Err(Weakness::OneCharacter);
    }
    if distinct.len() < MIN_DISTINCT {
        return Err(Weakness::FewDistinct {
            distinct: distinct.len(),
            min: MIN_DISTINCT,
        });
    }
    let bits = estimated_bits(&chars);
    if bits < f64::from(kind.min_bits()) {
        return Err(Weakness::LowEntropy {
            // Truncation is the point: a rounded-down figure for the message.
            bits: bits.max(0.0) as u32,
            min: kind.min_bits(),
        });
    }
    Ok(())
}

/// Template markers, known values and placeholder phrases.
fn is_placeholder(value: &str) -> bool {
    let raw = value.trim();
    if raw.is_empty()
        || (raw.contains('<') && raw.contains('>'))
        || raw.contains("${")
        || raw.contains("$(")
        || raw.contains("{{")
    {
        return true;
    }
    let normalised: String = raw
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    KNOWN_VALUES.contains(&normalised.as_str())
        || PLACEHOLDER_MARKERS.iter().any(|m| normalised.contains(m))
}

/// `length x min(H(chars), H(steps))` of the shortest repeating unit, in bits.
fn estimated_bits(chars: &[char]) -> f64 {
    let unit = &chars[..period(chars)];
    let steps: Vec<i64> = unit
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    let per_char = shannon(unit).min(shannon(&steps));
    per_char * unit.len() as f64
}

/// The smallest `p` such that the value is its first `p` characters repeated (the last copy
/// possibly cut short); the length itself when it does not repeat.
fn period(chars: &[char]) -> usize {
    (1..chars.len())
        .find(|&p| (p..chars.len()).all(|i| chars[i] == chars[i - p]))
        .unwrap_or(chars.len())
}

/// Shannon entropy (bits per symbol) of the observed symbol frequencies.
fn shannon<T: Ord + Clone>(symbols: &[T]) -> f64 {
    if symbols.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::BTreeMap::new();
    for s in symbols {
        *counts.entry(s.clone()).or_insert(0usize) += 1;
    }
    let n = symbols.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_files_placeholders_are_refused() {
        for value in [
            "replace-me-with-32-or-more-random-characters",
            "<at least 32 characters>",
            "<32+ random characters>",
            "changeme",
            "CHANGE_ME_CHANGE_ME_CHANGE_ME_CHANGE_ME",
            "secret",
            "my-very-own-audit-secret-for-the-comune-2026",
            "${AUDIT_HMAC_SECRET}",
            "Password",
            "",
        ] {
            assert_eq!(
                assess(value, SecretKind::Key),
                Err(Weakness::Placeholder),
                "{value}"
            );
        }
        assert_eq!(
            assess("postgres", SecretKind::Password),
            Err(Weakness::Placeholder)
        );
    }

    #[test]
    fn short_repeated_and_poor_values_are_refused() {
        assert_eq!(
            assess("9f2c81d07ae4", SecretKind::Key),
            Err(Weakness::TooShort { len: 12, min: 32 })
        );
        assert_eq!(
            assess(&"k".repeat(40), SecretKind::Key),
            Err(Weakness::OneCharacter)
        );
        assert!(matches!(
            assess(&"ab12".repeat(10), SecretKind::Key),
            Err(Weakness::FewDistinct { distinct: 4, .. })
        ));
        for structured in [
            "0123456789".repeat(4),
            "abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
            "aaaaaabbbbbbccccccddddddeeeeeeffffff".to_owned(),
            "pisa2026".repeat(5),
        ] {
            assert!(
                matches!(
                    assess(&structured, SecretKind::Key),
                    Err(Weakness::LowEntropy { .. })
                ),
                "{structured}: {:?}",
                assess(&structured, SecretKind::Key)
            );
        }
        assert!(matches!(
            assess("abcdefabcdefabcdefab", SecretKind::Password),
            Err(Weakness::LowEntropy { .. })
        ));
    }

    #[test]
    fn generated_values_are_accepted() {
        for value in [
            // openssl rand -hex 16, -hex 32, -base64 32; two simple UUIDs (what `dev` makes);
            // a UUID; 32 random decimal digits.
            "20bdf48476d1a4669f88a63892b5e17d",
            "c2068f4f4dfdac0c79499a29236787a230a678b668810153dd48f1606cf7e6bc",
            "KhFyncULoXwkAsYJE04NFFmhtlQnbvOybAVo9vKfSi4=",
            "56b9e037f443476a9505f71782270a836cf29aee3fc3479b8b6dc51779bf9d48",
            "9139ec33-e9fb-468a-b30b-ea5da6d1bb6a",
            "40718485297054592380164408634037",
        ] {
            assert_eq!(assess(value, SecretKind::Key), Ok(()), "{value}");
        }
        assert_eq!(assess("Xk9mP2vL7qR4tW8z", SecretKind::Password), Ok(()));
    }

    proptest::proptest! {
        /// What generators produce always passes: the rules refuse structure, not chance.
        #[test]
        fn generated_keys_and_passwords_always_pass(
            hex16 in proptest::array::uniform16(proptest::num::u8::ANY),
            b64 in proptest::array::uniform32(proptest::num::u8::ANY),
            password in "[A-Za-z0-9]{16}",
        ) {
            use base64::Engine as _;
            let hex = hex::encode(hex16);
            proptest::prop_assert_eq!(assess(&hex, SecretKind::Key), Ok(()), "{}", hex);
            let b64 = base64::engine::general_purpose::STANDARD.encode(b64);
            proptest::prop_assert_eq!(assess(&b64, SecretKind::Key), Ok(()), "{}", b64);
            proptest::prop_assert_eq!(
                assess(&password, SecretKind::Password),
                Ok(()),
                "{}",
                password
            );
        }
    }

    #[test]
    fn the_estimate_sees_through_repetition() {
        let unit: Vec<char> = "q7J2m9XvPz".chars().collect();
        let repeated: Vec<char> = "q7J2m9XvPz".repeat(6).chars().collect();
        assert_eq!(period(&repeated), 10);
        assert_eq!(estimated_bits(&repeated), estimated_bits(&unit));
        assert_eq!(period(&unit), unit.len());
    }

    #[test]
    fn messages_never_contain_the_value() {
        let value = "abababababababababababababababababab";
        let message = assess(value, SecretKind::Key)
            .expect_err("weak")
            .to_string();
        assert!(!message.contains("abab"), "{message}");
    }

    #[test]
    fn digests_of_placeholders_and_placeholder_digests_are_refused() {
        use sha2::Digest;
        let of = |v: &str| hex::encode(sha2::Sha256::digest(v.as_bytes()));
        assert_eq!(assess_digest(&"0".repeat(64)), Err(Weakness::OneCharacter));
        assert_eq!(assess_digest(&of("changeme")), Err(Weakness::Placeholder));
        assert_eq!(assess_digest(&of("")), Err(Weakness::Placeholder));
        assert!(assess_digest(&"0123456789abcdef".repeat(4)).is_err());
        assess_digest(&of("KhFyncULoXwkAsYJE04NFFmhtlQnbvOybAVo9vKfSi4=")).unwrap();
    }
}
