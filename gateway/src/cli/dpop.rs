//! `pdnd-gateway voucher --dpop-key <file>` and `pdnd-gateway dpop-proof`: DPoP by hand.
//!
//! The fruizioni make their DPoP key at start and keep it in memory; a person trying a
//! DPoP-bound voucher with curl needs the same key across two commands (one to obtain the
//! voucher, one per request to sign its proof), so here the key lives in a file: a P-256
//! private key in PKCS#8 PEM, created on first use readable by its owner only.

use std::io::Write as _;
use std::path::Path;

use crate::pdnd::dpop::{DpopKey, DpopKeyError};

/// Why no key or proof could be made.
#[derive(Debug, thiserror::Error)]
pub enum DpopCliError {
    #[error("DPoP key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error(transparent)]
    Proof(#[from] DpopKeyError),
}

/// The P-256 key in `path`, generated and written (mode 0600, never overwritten) when the file
/// does not exist yet.
pub fn load_or_create_key(path: &Path) -> Result<DpopKey, DpopCliError> {
    let err = |reason: String| DpopCliError::Key {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        return DpopKey::from_pem(&pem).map_err(|e| err(e.to_string()));
    }
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
        .map_err(|e| err(e.to_string()))?;
    let pem = openssl::ec::EcKey::generate(&group)
        .and_then(openssl::pkey::PKey::from_ec_key)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .map_err(|e| err(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
    file.write_all(&pem).map_err(|e| err(e.to_string()))?;
    let pem = String::from_utf8(pem).map_err(|e| err(e.to_string()))?;
    DpopKey::from_pem(&pem).map_err(|e| err(e.to_string()))
}

/// A proof of the key in `path` for one request, issued at `now`.
pub fn proof(
    key_path: &Path,
    method: &str,
    url: &str,
    voucher: Option<&str>,
    now: i64,
) -> Result<String, DpopCliError> {
    let key = load_or_create_key(key_path)?;
    Ok(key.proof(method, url, voucher, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdnd::dpop::{verify, ProofPolicy, ProofRequest};

    const URL: &str = "http://127.0.0.1:8080/anagrafe/v1/residenza";

    #[test]
    fn key_is_created_once_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("pdndgw-dpop-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dpop.pem");
        let first = load_or_create_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = load_or_create_key(&path).unwrap();
        assert_eq!(first.jkt(), again.jkt());

        let proof = proof(&path, "POST", URL, Some("the.voucher.x"), 1_700_000_000).unwrap();
        let request = ProofRequest {
            method: "POST",
            url: URL,
            access_token: Some("the.voucher.x"),
        };
        let verified = verify(&proof, &request, &ProofPolicy::default(), 1_700_000_000).unwrap();
        assert!(verified.is_bound_to(first.jkt()));

        // A file that is not a P-256 key is refused, not replaced.
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_or_create_key(&path),
            Err(DpopCliError::Key { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
