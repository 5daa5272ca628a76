//! The path an internal caller appends to a fruizione's base URL, allow-listed segment by
//! segment before anything is sent.
//!
//! The tail of `/fruizioni/{name}/{tail}` is forwarded to `{remote_base_url}/{tail}`. Whatever
//! decodes it on the way (the remote's server, a proxy in front of it, a framework that decodes
//! twice) must never see a segment that leaves the base (`..`, `.`), splits a segment in two
//! (an encoded `/` or `\`), or carries a path parameter (`..;` is `..` to some Java servers).
//! So each segment is checked as written, then percent-decoded again and again (`%252e` is
//! `%2e` once, `.` twice) and checked at every level, up to [`MAX_DECODINGS`] levels; a
//! segment still changing after that is refused too. As written, a segment may hold only
//! unreserved characters (`A-Z a-z 0-9 - . _ ~`), a short safe set (`: @ , = +`) and
//! well-formed `%XX` escapes.

use percent_encoding::percent_decode;

/// How many levels of percent-encoding are undone and checked.
pub const MAX_DECODINGS: usize = 3;

/// Why a path tail is refused; shown to the caller (it is the caller's own input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("a path segment is `.` or `..` (plain or percent-encoded)")]
    DotSegment,
    #[error("a path segment holds an encoded `/`")]
    EncodedSlash,
    #[error("a path segment holds `\\` (plain or percent-encoded)")]
    Backslash,
    #[error("a path segment holds `;` (plain or percent-encoded)")]
    Semicolon,
    #[error("a path segment holds a control character")]
    ControlCharacter,
    #[error("a path segment holds `{0}`; allowed: letters, digits, `-._~:@,=+` and %XX escapes")]
    Disallowed(char),
    #[error("a path segment holds a `%` that is not a %XX escape")]
    MalformedEscape,
    #[error("a path segment is empty (`//`)")]
    EmptySegment,
    #[error("a path segment is percent-encoded more than {MAX_DECODINGS} times")]
    TooDeeplyEncoded,
}

fn allowed_raw(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:@,=+".contains(&b)
}

/// The checks every decoding level must pass.
fn check_level(seg: &[u8], decoded: bool) -> Result<(), PathRefusal> {
    if seg == b"." || seg == b".." {
        return Err(PathRefusal::DotSegment);
    }
    for &b in seg {
        match b {
            b'/' if decoded => return Err(PathRefusal::EncodedSlash),
            b'\\' => return Err(PathRefusal::Backslash),
            b';' => return Err(PathRefusal::Semicolon),
            0..=0x1f | 0x7f => return Err(PathRefusal::ControlCharacter),
            _ => {}
        }
    }
    Ok(())
}

/// The segment as written: only allowed characters and well-formed escapes.
fn check_raw(seg: &[u8]) -> Result<(), PathRefusal> {
    check_level(seg, false)?;
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let hex = seg.get(i + 1..i + 3).ok_or(PathRefusal::MalformedEscape)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(PathRefusal::MalformedEscape);
            }
            i += 3;
            continue;
        }
        if !allowed_raw(b) {
            return Err(PathRefusal::Disallowed(char::from(b)));
        }
        i += 1;
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), PathRefusal> {
    let mut current: Vec<u8> = seg.as_bytes().to_vec();
    check_raw(&current)?;
    for _ in 0..MAX_DECODINGS {
        let next: Vec<u8> = percent_decode(&current).collect();
        if next == current {
            return Ok(());
        }
        check_level(&next, true)?;
        current = next;
    }
    // Still decodable after every level we checked: refuse rather than guess.
    if percent_decode(&current).collect::<Vec<u8>>() == current {
        Ok(())
    } else {
        Err(PathRefusal::TooDeeplyEncoded)
    }
}

/// Checks the tail of `/fruizioni/{name}/{tail}` (raw, as received). An empty tail (the base
/// itself) and one trailing `/` are allowed; an empty segment elsewhere is not.
pub fn check_tail(tail: &str) -> Result<(), PathRefusal> {
    if tail.is_empty() {
        return Ok(());
    }
    let tail = tail.strip_suffix('/').unwrap_or(tail);
    for seg in tail.split('/') {
        if seg.is_empty() {
            return Err(PathRefusal::EmptySegment);
        }
        check_segment(seg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_tails_pass() {
        for ok in [
            "",
            "residenza",
            "residenza/",
            "a/b/c",
            "v1/x.json",
            "a..b",
            "...",
            ".well-known",
            "imu/posizione",
            "anno=2026,rata:1",
            "citt%C3%A0",
            "a%20b",
            "user@ente",
            "100%25",
            "~tilde_under-score",
        ] {
            assert_eq!(check_tail(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn hostile_tails_are_refused_with_their_reason() {
        use PathRefusal::*;
        for (bad, why) in [
            ("..", DotSegment),
            ("../x", DotSegment),
            ("a/../../b", DotSegment),
            ("a/./b", DotSegment),
            (".", DotSegment),
            ("%2e%2e/x", DotSegment),
            ("%2E./x", DotSegment),
            (".%2e", DotSegment),
            ("%252e%252e/x", DotSegment),
            ("%25252e%25252e/x", DotSegment),
            ("%2e", DotSegment),
            ("a%2fb", EncodedSlash),
            ("a%2Fb", EncodedSlash),
            ("a%252fb", EncodedSlash),
            ("a\\b", Backslash),
            ("a%5cb", Backslash),
            ("a%5Cb", Backslash),
            ("a%255cb", Backslash),
            ("..;/x", Semicolon),
            ("a;jsessionid=1", Semicolon),
            ("..%3b/x", Semicolon),
            ("a%00b", ControlCharacter),
            ("a%0d%0aX-Injected:1", ControlCharacter),
            ("a%7f", ControlCharacter),
            ("a%2500", ControlCharacter),
            ("a b", Disallowed(' ')),
            ("a?b", Disallowed('?')),
            ("a#b", Disallowed('#')),
            ("a\"b", Disallowed('"')),
            ("a%", MalformedEscape),
            ("a%2", MalformedEscape),
            ("a%zz", MalformedEscape),
            ("a//b", EmptySegment),
            ("/a", EmptySegment),
            ("%2525252e", TooDeeplyEncoded),
        ] {
            assert_eq!(check_tail(bad), Err(why.clone()), "{bad}");
        }
    }

    proptest! {
        /// Whatever passes never decodes (once or twice) to a dot segment, a slash, a
        /// backslash, a semicolon or a control character inside a segment.
        #[test]
        fn accepted_segments_stay_segments(seg in "([a-zA-Z0-9._~;/\\\\%]|%2[eEfF5]|%5[cC]|%3[bB]|%0[0a]){1,12}") {
            if check_tail(&seg).is_ok() {
                let tail = seg.strip_suffix('/').unwrap_or(&seg);
                for s in tail.split('/') {
                    let once: Vec<u8> = percent_decode(s.as_bytes()).collect();
                    let twice: Vec<u8> = percent_decode(&once).collect();
                    for level in [s.as_bytes(), &once[..], &twice[..]] {
                        prop_assert!(level != b"." && level != b"..");
                        prop_assert!(!level.iter().any(|b| matches!(b, b'/' | b'\\' | b';' | 0..=0x1f | 0x7f)));
                    }
                }
            }
        }
    }
}
