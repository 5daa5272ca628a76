//! `pdnd-gateway verify-response`: for an administration that received one of our answers and
//! kept it, check that it is what the comune signed.
//!
//! The input is the response as `curl -si` saves it (status line, headers, blank line, body
//! bytes exactly as received). The check is [`crate::modi::verify_response`]: the
//! `Agid-JWT-Signature` chains to the given CA, names the receiver's clientId as `aud`, its
//! signed headers equal the saved ones and the `Digest` matches the body byte for byte. The time
//! window is judged at the moment the response was sent (its `Date` header) unless `--at`
//! says otherwise, so evidence can be re-checked long after the signature expired.

use crate::modi::{
    self, KeySource, ModiError, SignatureExpectations, Signer, TrustStore, VerifiedSignature,
};
use std::fmt;
use std::path::PathBuf;

/// What to verify, from the command line.
#[derive(Debug, Clone)]
pub struct VerifyArgs {
    /// PEM bundle of the CA(s) the producer's certificate must chain to.
    pub ca: PathBuf,
    /// Our PDND clientId: the `aud` the producer signed for.
    pub audience: String,
    /// The saved response.
    pub response: PathBuf,
    /// Judge the time window at this instant (unix seconds or RFC 3339) instead of `Date`.
    pub at: Option<String>,
    /// Clock-skew tolerance on `iat`/`nbf`/`exp`.
    pub leeway_secs: i64,
}

/// Why the response could not be verified (every variant is a non-zero exit).
#[derive(Debug, thiserror::Error)]
pub enum VerifyResponseError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("CA file {path}: {source}")]
    Ca { path: String, source: ModiError },
    #[error("not a saved HTTP response (curl -si output): {0}")]
    NotAResponse(String),
    #[error("--at {0:?} is neither unix seconds nor an RFC 3339 time")]
    BadTime(String),
    #[error("status {0} carries no body and is never signed: nothing to verify")]
    Unsigned(u16),
    #[error("NOT VERIFIED: {0}")]
    Verification(#[from] ModiError),
}

/// A response as saved by `curl -si`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResponse {
    pub status: u16,
    /// Header names as saved, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line, untouched.
    pub body: Vec<u8>,
}

/// Parses `curl -si` output. Interim `1xx` blocks (e.g. `100 Continue`) are skipped; the body is
/// every byte after the final header block's blank line (CRLF or LF line ends).
pub fn parse_saved(bytes: &[u8]) -> Result<SavedResponse, VerifyResponseError> {
    let bad = |reason: &str| VerifyResponseError::NotAResponse(reason.to_owned());
    let mut rest = bytes;
    loop {
        let (head, body) = split_head(rest).ok_or_else(|| bad("no blank line after headers"))?;
        let head = std::str::from_utf8(head).map_err(|_| bad("headers are not UTF-8"))?;
        let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.split_whitespace();
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(bad("no status line"));
        };
        if !version.starts_with("HTTP/") {
            return Err(bad("the first line is not an HTTP status line"));
        }
        let status: u16 = code
            .parse()
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad("the status code is not a number between 100 and 599"))?;
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad("a header line without ':'"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        return Ok(SavedResponse {
            status,
            headers,
            body: body.to_vec(),
        });
    }
}

/// Splits at the first blank line (`\r\n\r\n` or `\n\n`, whichever comes first).
fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = find(bytes, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(bytes, b"\n\n").map(|i| (i, 2));
    let (at, len) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&bytes[..at], &bytes[at + len..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where the verification time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    Argument,
    DateHeader,
    Now,
}

/// A response whose signature held.
#[derive(Debug, Clone)]
pub struct VerifiedResponse {
    pub status: u16,
    pub body_len: usize,
    pub at: i64,
    pub at_source: TimeSource,
    pub signature: VerifiedSignature,
}

fn parse_time(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        return Some(secs);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(value))
        .ok()
        .map(|t| t.timestamp())
}

/// Verifies a saved response file against a CA file, at the time `now` unless the response or
/// the arguments name another.
pub fn verify(args: &VerifyArgs, now: i64) -> Result<VerifiedResponse, VerifyResponseError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| VerifyResponseError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    };
    let ca_pem = read(&args.ca)?;
    let trust = TrustStore::from_pem(&ca_pem).map_err(|source| VerifyResponseError::Ca {
        path: args.ca.display().to_string(),
        source,
    })?;
    let saved = parse_saved(&read(&args.response)?)?;
    verify_saved(&saved, &trust, args, now)
}

/// [`verify`] on an already parsed response.
pub fn verify_saved(
    saved: &SavedResponse,
    trust: &TrustStore,
    args: &VerifyArgs,
    now: i64,
) -> Result<VerifiedResponse, VerifyResponseError> {
    if !modi::is_signable_status(saved.status) {
        return Err(VerifyResponseError::Unsigned(saved.status));
    }
    let headers: Vec<(&str, &str)> = saved
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let date = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("date"))
        .and_then(|(_, v)| parse_time(v));
    let (at, at_source) = match (&args.at, date) {
        (Some(at), _) => (
            parse_time(at).ok_or_else(|| VerifyResponseError::BadTime(at.clone()))?,
            TimeSource::Argument,
        ),
        (None, Some(date)) => (date, TimeSource::DateHeader),
        (None, None) => (now, TimeSource::Now),
    };
    let expect = SignatureExpectations {
        audience: args.audience.clone(),
        leeway_secs: args.leeway_secs,
        now: at,
        max_lifetime_secs: None,
    };
    let signature = modi::verify_response(
        saved.status,
        &headers,
        &saved.body,
        &KeySource::X5c(trust),
        &expect,
    )?;
    Ok(VerifiedResponse {
        status: saved.status,
        body_len: saved.body.len(),
        at,
        at_source,
        signature,
    })
}

impl fmt::Display for VerifiedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.signature;
        let time = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| t.to_string())
        };
        let source = match self.at_source {
            TimeSource::Argument => "--at",
            TimeSource::DateHeader => "the response's Date header",
            TimeSource::Now => "now",
        };
        writeln!(
            f,
            "VERIFIED: status {} response, signature {}",
            self.status,
            s.algorithm.jose_name()
        )?;
        match &s.signer {
            Signer::Certificate(leaf) => {
                writeln!(f, "  signed by      {}", leaf.subject)?;
                writeln!(f, "  issued by      {}", leaf.issuer)?;
                writeln!(f, "  serial         {}", leaf.serial)?;
                writeln!(f, "  sha-256        {}", leaf.fingerprint_sha256)?;
            }
            Signer::Kid(kid) => writeln!(f, "  key id         {kid}")?,
        }
        writeln!(
            f,
            "  iss / sub      {} / {}",
            s.iss.as_deref().unwrap_or("-"),
            s.sub.as_deref().unwrap_or("-")
        )?;
        writeln!(f, "  aud            {}", s.audience)?;
        writeln!(f, "  jti            {}", s.jti)?;
        writeln!(f, "  iat .. exp     {} .. {}", time(s.iat), time(s.exp))?;
        writeln!(f, "  checked at     {} ({source})", time(self.at))?;
        for (name, value) in &s.signed_headers {
            writeln!(f, "  signed header  {name}: {value}")?;
        }
        write!(
            f,
            "  body           {} bytes, SHA-256 equal to the signed Digest",
            self.body_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_output_with_interim_block_and_crlf() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\nDigest:  SHA-256=abc= \r\n\r\n{\"a\":1}\n\r\n";
        let saved = parse_saved(raw).unwrap();
        assert_eq!(saved.status, 200);
        assert_eq!(
            saved.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("Digest".to_owned(), "SHA-256=abc=".to_owned())
            ]
        );
        // The body is kept byte for byte, trailing bytes included.
        assert_eq!(saved.body, b"{\"a\":1}\n\r\n");
    }

    #[test]
    fn lf_only_and_http2_status_lines() {
        let saved = parse_saved(b"HTTP/2 404\nx: y\n\nbody").unwrap();
        assert_eq!(saved.status, 404);
        assert_eq!(saved.body, b"body");
    }

    #[test]
    fn not_a_response() {
        for raw in [
            &b"hello"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                matches!(parse_saved(raw), Err(VerifyResponseError::NotAResponse(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn times_in_every_accepted_form() {
        assert_eq!(parse_time("1780000000"), Some(1_780_000_000));
        assert_eq!(parse_time("2026-05-28T20:26:40Z"), Some(1_780_000_000));
        assert_eq!(
            parse_time("Thu, 28 May 2026 20:26:40 GMT"),
            Some(1_780_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
