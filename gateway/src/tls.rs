//! TLS of the internal listener: what lets it leave loopback without carrying the comune's
//! API keys and the fruizioni's personal data in clear text.
//!
//! Built once at start from `[server.internal_tls]`: the certificate chain and key (PEM), and,
//! with `client_ca_file`, a client-certificate verifier that makes the listener mTLS (a caller
//! without a certificate issued by that CA fails the handshake). The crypto provider is named
//! explicitly (aws-lc-rs, as everywhere in the process) so nothing depends on a process-wide
//! default having been installed.

use crate::config::InternalTlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// Why the internal listener's TLS could not be set up; each names the key and file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("`{key}`: cannot read {path}: {reason}")]
    Read {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{key}`: {path} holds no PEM {what}")]
    Empty {
        key: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("`server.internal_tls`: {0}")]
    Rustls(String),
}

/// The rustls server configuration of the internal listener.
pub fn internal_server_config(tls: &InternalTlsConfig) -> Result<ServerConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("server.internal_tls.cert_file", &tls.cert_file)?;
    let key_pem = read("server.internal_tls.key_file", &tls.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsSetupError::Read {
        key: "server.internal_tls.key_file",
        path: tls.key_file.display().to_string(),
        reason: format!("no usable PEM private key ({e})"),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("server.internal_tls.client_ca_file", ca_file)? {
                roots
                    .add(ca)
                    .map_err(|e| TlsSetupError::Rustls(format!("client CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsSetupError::Rustls(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Rustls(format!("certificate and key: {e}")))?;
    // The build serves HTTP/1.1 only (actix-web without its `http2` feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::Read {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Read {
            key,
            path: path.display().to_string(),
            reason: format!("bad PEM ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Empty {
            key,
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pdndgw-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    /// A self-signed certificate for localhost and its key, as files.
    fn identity(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write");
        std::fs::write(&key_file, key.serialize_pem()).expect("write");
        (cert_file, key_file)
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_config_with_or_without_client_ca() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = dir();
        let (cert_file, key_file) = identity(&dir);
        let mut tls = InternalTlsConfig {
            cert_file: cert_file.clone(),
            key_file,
            client_ca_file: None,
        };
        let config = internal_server_config(&tls).expect("TLS");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        tls.client_ca_file = Some(cert_file);
        internal_server_config(&tls).expect("mTLS");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unusable_files_are_named_by_key_and_path() {
        let dir = dir();
        let (cert_file, key_file) = identity(&dir);
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a PEM file").expect("write");
        let missing = dir.join("missing.pem");
        let tls = |cert: &Path, key: &Path, ca: Option<&Path>| InternalTlsConfig {
            cert_file: cert.to_owned(),
            key_file: key.to_owned(),
            client_ca_file: ca.map(Path::to_owned),
        };
        for (config, key, path) in [
            (
                tls(&missing, &key_file, None),
                "server.internal_tls.cert_file",
                &missing,
            ),
            (
                tls(&garbage, &key_file, None),
                "server.internal_tls.cert_file",
                &garbage,
            ),
            (
                tls(&cert_file, &missing, None),
                "server.internal_tls.key_file",
                &missing,
            ),
            (
                tls(&cert_file, &garbage, None),
                "server.internal_tls.key_file",
                &garbage,
            ),
            (
                tls(&cert_file, &key_file, Some(&garbage)),
                "server.internal_tls.client_ca_file",
                &garbage,
            ),
        ] {
            let err = internal_server_config(&config)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(key), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        // A key that is not the certificate's.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).expect("dir");
        let (_, other_key) = identity(&other);
        let err = internal_server_config(&tls(&cert_file, &other_key, None))
            .expect_err("mismatch")
            .to_string();
        assert!(err.contains("server.internal_tls"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
