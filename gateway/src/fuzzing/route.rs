//! The routing decision (`eservices::route`): a request target reaches an operation only when
//! it spells exactly that operation's path.

use super::Outcome;

/// Decodes every `%XX` escape once; `None` when an escape is malformed or the result is not
/// UTF-8 (such a path names no operation).
fn percent_decoded(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Request target (path and query, as on the request line). Accepted when the router's
/// decision names an operation; then the target's path, every escape decoded, must be that
/// operation's full path, byte for byte: no other spelling (encoded `/`, dot segments, case,
/// slashes, parameters) may reach it, and no escape may smuggle one operation's path into
/// another's.
pub fn path_resolver(data: &[u8]) -> Outcome {
    let Ok(target) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let Some(op) = eservices::route::resolve_target(target) else {
        return Outcome::Refused;
    };
    let uri: actix_web::http::Uri = target
        .parse()
        .expect("a target the router resolved is a URI");
    let canonical = format!("{}{}", op.eservice().base_path(), op.path());
    assert_eq!(
        percent_decoded(uri.path()).as_deref(),
        Some(canonical.as_str()),
        "{target:?} reached {}",
        op.id()
    );
    Outcome::Accepted
}
