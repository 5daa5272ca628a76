//! `pdnd-gateway keys`: a development PKI for the ModI patterns, in a directory of files.
//!
//! A thin face over [`crate::modi::generate_dev_pki`]: it reports which files were written and
//! which reused, and the `kid` (RFC 7638 thumbprint) of the RSA key, which is what PDND shows
//! once that key is registered on a test client. Production keys never come from here.

use crate::modi::{self, DevPki, ModiError};
use std::fmt;
use std::path::Path;

/// What `keys` made or found.
#[derive(Debug, Clone)]
pub struct KeysReport {
    pub pki: DevPki,
    /// The kid PDND would give the RSA signing key.
    pub rsa_kid: String,
}

/// Creates (or completes) the dev PKI in `dir`.
pub fn generate(dir: &Path, common_name: &str) -> Result<KeysReport, ModiError> {
    let pki = modi::generate_dev_pki(dir, common_name)?;
    let rsa_pem = std::fs::read(&pki.rsa_key)
        .map_err(|e| ModiError::Pki(format!("{}: {e}", pki.rsa_key.display())))?;
    let rsa_kid = modi::rsa_thumbprint(&rsa_pem)?;
    Ok(KeysReport { pki, rsa_kid })
}

impl fmt::Display for KeysReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pki;
        writeln!(f, "dev PKI in {}", p.dir.display())?;
        for (path, role) in [
            (
                &p.ca_cert,
                "dev CA certificate: the receiving side's trust store",
            ),
            (&p.ca_key, "dev CA private key"),
            (&p.rsa_key, "RSA-2048 signing key (RS256/PS256)"),
            (&p.rsa_chain, "its certificate chain, leaf first"),
            (&p.ec_key, "P-256 signing key (ES256)"),
            (&p.ec_chain, "its certificate chain, leaf first"),
        ] {
            let state = if p.created.contains(path) {
                "written"
            } else {
                "reused "
            };
            writeln!(f, "  {state}  {}  ({role})", path.display())?;
        }
        write!(f, "RSA key kid (RFC 7638 thumbprint): {}", self.rsa_kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_run_reuses_everything_and_reports_the_same_kid() {
        let dir = std::env::temp_dir().join(format!("pdndgw-keys-{}", uuid::Uuid::new_v4()));
        let first = generate(&dir, "localhost").unwrap();
        assert_eq!(first.pki.created.len(), 6);
        assert!(first.to_string().contains("written"));
        let second = generate(&dir, "localhost").unwrap();
        assert!(second.pki.created.is_empty());
        assert!(!second.to_string().contains("written"));
        assert_eq!(first.rsa_kid, second.rsa_kid);
        assert_eq!(first.rsa_kid.len(), 43);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
