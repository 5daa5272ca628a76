//! `[audit]`: the audit trail's store, the key of its data-subject hashes, and how commits are
//! batched and bounded.

use super::{invalid, ConfigError};
use serde::Deserialize;

/// The audit trail's store and keyed hash.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `sqlite://path?mode=rwc` (WAL) or `postgres://...`.
    pub url: String,
    /// The HMAC key of data-subject hashes, at least 32 bytes. Give it through the environment
    /// (`PDNDGW_AUDIT__HMAC_SECRET`) or a secret file; losing it makes past records unsearchable
    /// by codice fiscale, leaking it makes hashes guessable.
    #[serde(default)]
    pub hmac_secret: String,
    /// Most records committed in one transaction.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest wait for an audit commit (ms); beyond it the request answers 503, so a hung
    /// database cannot hang the requests waiting on it.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
    /// Longest a batch of fewer than 8 records waits (ms) for the records of requests still in
    /// progress before it commits (group commit: fewer transactions and fsyncs when answers are
    /// slow to produce, as with RSA signatures). A lone request never waits; 0 turns it off.
    #[serde(default = "default_commit_delay_ms")]
    pub commit_delay_ms: u64,
    /// Records per second of requests refused before the voucher check, written without
    /// making their answer wait (best effort; the excess is counted in the log).
    #[serde(default = "default_best_effort_per_sec")]
    pub best_effort_per_sec: u32,
    /// Days per-request records are kept (`audit purge`); unset, the purge refuses to run.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Days the daily aggregates per purpose and status are kept (longer than the records).
    #[serde(default)]
    pub aggregate_retention_days: Option<u32>,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("url", &redact_url(&self.url))
            .field("hmac_secret", &"<redacted>")
            .field("batch_max", &self.batch_max)
            .field("commit_timeout_ms", &self.commit_timeout_ms)
            .field("commit_delay_ms", &self.commit_delay_ms)
            .field("best_effort_per_sec", &self.best_effort_per_sec)
            .field("retention_days", &self.retention_days)
            .field("aggregate_retention_days", &self.aggregate_retention_days)
            .finish()
    }
}

/// A URL with its password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

fn default_batch_max() -> usize {
    256
}

fn default_commit_timeout_ms() -> u64 {
    5_000
}

fn default_commit_delay_ms() -> u64 {
    2
}

fn default_best_effort_per_sec() -> u32 {
    200
}

impl AuditConfig {
    /// The store URL, the HMAC key's length, and the batching and waiting bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let audit = self.url.as_str();
        if !(audit.starts_with("sqlite:")
            || audit.starts_with("postgres://")
            || audit.starts_with("postgresql://"))
        {
            return invalid("audit.url", "must start with sqlite: or postgres://");
        }
        if self.hmac_secret.len() < 32 {
            return invalid(
                "audit.hmac_secret",
                "must be at least 32 characters (set PDNDGW_AUDIT__HMAC_SECRET)",
            );
        }
        if !(1..=10_000).contains(&self.batch_max) {
            return invalid("audit.batch_max", "must be between 1 and 10000");
        }
        if !(50..=60_000).contains(&self.commit_timeout_ms) {
            return invalid(
                "audit.commit_timeout_ms",
                "must be between 50 and 60000 milliseconds",
            );
        }
        if self.commit_delay_ms > 100 {
            return invalid(
                "audit.commit_delay_ms",
                "must be between 0 and 100 milliseconds",
            );
        }
        if !(1..=100_000).contains(&self.best_effort_per_sec) {
            return invalid("audit.best_effort_per_sec", "must be between 1 and 100000");
        }
        Ok(())
    }
}
