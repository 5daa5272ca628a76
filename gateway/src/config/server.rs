//! `[server]`: the two listeners, worker threads, the body deadline and the internal listener's
//! TLS (whether that listener may be exposed is [`super::serve_policy`]'s check).

use super::{invalid, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Listeners and worker threads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where other administrations reach the e-services (through PDND).
    pub public_listen: SocketAddr,
    /// The comune's own systems: fruizioni, status, admin. Never expose it publicly.
    pub internal_listen: SocketAddr,
    /// HTTP worker threads per listener.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Longest time to receive a request's whole body once its headers arrived (ms); slower
    /// bodies get 408, so a trickling client cannot hold a worker.
    #[serde(default = "default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// TLS for the internal listener (mTLS with `client_ca_file`). Required when
    /// `internal_listen` is not a loopback address, unless the next key opts out.
    #[serde(default)]
    pub internal_tls: Option<InternalTlsConfig>,
    /// Accept `internal_listen` on a non-loopback address in clear text (default `false`):
    /// only when something else confines that network (a NetworkPolicy admitting only the
    /// comune's systems, a service mesh doing mTLS). Logged as a warning at every start.
    #[serde(default)]
    pub internal_allow_plaintext_non_loopback: bool,
    /// Longest wait for in-flight requests at SIGTERM/SIGINT (see [`super::operations`]).
    #[serde(default = "super::operations::default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: u64,
    /// At SIGTERM, how long `/readyz` says 503 before the listeners close (see
    /// [`super::operations`]).
    #[serde(default)]
    pub shutdown_delay_secs: u64,
    /// Accept private key files readable by their group (Kubernetes Secret volumes with
    /// `fsGroup`); never by others (see [`super::operations`]).
    #[serde(default)]
    pub allow_group_readable_keys: bool,
}

/// The internal listener's TLS identity and, for mTLS, the CA its callers' certificates must
/// be issued by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalTlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1), mode 0600 or stricter.
    pub key_file: PathBuf,
    /// PEM bundle of the CA(s) that issue the comune's systems' client certificates; when set,
    /// a caller without such a certificate cannot even complete the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

fn default_workers() -> usize {
    2
}

fn default_body_read_timeout_ms() -> u64 {
    5_000
}

impl ServerConfig {
    /// Worker count and body deadline bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.workers) {
            return invalid("server.workers", "must be between 1 and 64");
        }
        if !(100..=120_000).contains(&self.body_read_timeout_ms) {
            return invalid(
                "server.body_read_timeout_ms",
                "must be between 100 and 120000 milliseconds",
            );
        }
        Ok(())
    }
}
