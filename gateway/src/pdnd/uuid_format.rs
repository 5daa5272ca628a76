//! The UUID syntax PDND accepts for client ids, subjects and purpose ids.
//!
//! PDND validates these with zod's `z.string().uuid()`: exactly the hyphenated 8-4-4-4-12 hex
//! form, any case, any version. `uuid::Uuid::parse_str` is more lenient (braces, `urn:uuid:`,
//! no hyphens), so an assertion it accepts could still be refused by PDND; this check is the
//! PDND one.

/// True when `s` is a hyphenated 8-4-4-4-12 hexadecimal UUID, as PDND requires.
pub fn is_pdnd_uuid(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return false;
    }
    bytes.iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::is_pdnd_uuid;

    #[test]
    fn accepts_hyphenated_hex_of_any_case_and_version() {
        assert!(is_pdnd_uuid("8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b"));
        assert!(is_pdnd_uuid("8E9F24CA-78F5-4C69-9E4F-0EFBEAC7BB2B"));
        assert!(is_pdnd_uuid("00000000-0000-0000-0000-000000000000"));
    }

    #[test]
    fn rejects_other_spellings() {
        assert!(!is_pdnd_uuid("8e9f24ca78f54c699e4f0efbeac7bb2b"));
        assert!(!is_pdnd_uuid("{8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b}"));
        assert!(!is_pdnd_uuid("8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2g"));
        assert!(!is_pdnd_uuid("8e9f24ca-78f5-4c699-e4f-0efbeac7bb2b"));
        assert!(!is_pdnd_uuid("not-a-uuid"));
        assert!(!is_pdnd_uuid(""));
    }
}
