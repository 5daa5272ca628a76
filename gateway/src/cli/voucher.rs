//! `pdnd-gateway voucher`: obtain a PDND voucher as the comune's client.
//!
//! Where `dev` runs, no argument is needed: the data directory names the sample client and the
//! local authority. With `--config`, the `[client]` section and `[pdnd]` token endpoint are used,
//! so the same command works against PDND collaudo and production.

use crate::config::Config;
use crate::pdnd::client_assertion::{decode_unverified, ClientAssertionBuilder, DigestClaim};
use crate::pdnd::dpop::DpopKey;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd_client::token_client::{Obtained, TokenClient, TokenClientError};
use std::path::Path;

/// Why the command could not even ask for a voucher.
#[derive(Debug, thiserror::Error)]
pub enum VoucherCliError {
    #[error("no [client] section in the configuration: the comune's PDND client is needed")]
    NoClient,
    #[error("no purpose: pass --purpose-id or set client.default_purpose_id")]
    NoPurpose,
    #[error("--digest must be 64 lowercase hex characters (SHA-256 of the TrackingEvidence JWS)")]
    BadDigest,
    #[error("client key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error(transparent)]
    Token(#[from] TokenClientError),
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Everything needed to ask for one voucher.
pub struct VoucherPlan {
    pub endpoint: String,
    pub builder: ClientAssertionBuilder,
    pub key: RsaPrivateKey,
    /// Ask for a DPoP-bound voucher with a proof of this key (`None`: a Bearer voucher).
    pub dpop: Option<DpopKey>,
}

/// Builds the plan from a (completed) configuration.
pub fn plan(
    config: &Config,
    purpose_id: Option<&str>,
    digest: Option<&str>,
) -> Result<VoucherPlan, VoucherCliError> {
    let client = config.client.as_ref().ok_or(VoucherCliError::NoClient)?;
    let purpose_id = purpose_id
        .map(str::to_owned)
        .or_else(|| client.default_purpose_id.clone())
        .ok_or(VoucherCliError::NoPurpose)?;
    let digest = match digest {
        None => None,
        Some(value) => {
            if value.len() != 64
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(VoucherCliError::BadDigest);
            }
            Some(DigestClaim {
                alg: "SHA256".to_owned(),
                value: value.to_owned(),
            })
        }
    };
    let key = load_key(&client.key_file)?;
    Ok(VoucherPlan {
        endpoint: config.pdnd.token_endpoint.clone(),
        builder: ClientAssertionBuilder {
            client_id: client.client_id.clone(),
            audience: config.pdnd.client_assertion_audience.clone(),
            purpose_id: Some(purpose_id),
            digest,
            lifetime_secs: client.assertion_lifetime_secs,
        },
        key,
        dpop: None,
    })
}

fn load_key(path: &Path) -> Result<RsaPrivateKey, VoucherCliError> {
    let err = |reason: String| VoucherCliError::Key {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    RsaPrivateKey::from_pem(&pem).map_err(|e| err(e.to_string()))
}

/// Asks the token endpoint.
pub async fn obtain(plan: &VoucherPlan) -> Result<Obtained, VoucherCliError> {
    let http =
        crate::http_client::http_client().map_err(|e| VoucherCliError::Http(e.to_string()))?;
    let client = TokenClient::new(http, plan.endpoint.clone());
    let now = chrono::Utc::now().timestamp();
    Ok(client
        .obtain_with_dpop(&plan.builder, &plan.key, plan.dpop.as_ref(), now)
        .await?)
}

/// The `--decode` output: the voucher's header and claims, and the exchange's metadata.
pub fn decoded(obtained: &Obtained) -> serde_json::Value {
    let (header, claims) = decode_unverified(&obtained.response.access_token)
        .unwrap_or((serde_json::Value::Null, serde_json::Value::Null));
    serde_json::json!({
        "header": header,
        "claims": claims,
        "token_type": obtained.response.token_type,
        "expires_in": obtained.response.expires_in,
    })
}
