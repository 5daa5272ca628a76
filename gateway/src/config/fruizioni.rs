//! `[[fruizioni]]`: the other administrations' e-services the comune's systems call through the
//! gateway (`/fruizioni/{name}/...`), with the ModI patterns each call applies.

use super::{check_http_url, invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

/// One e-service of another administration that the comune's systems call through the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FruizioneConfig {
    /// The path segment: `/fruizioni/{name}/...` (lowercase letters, digits, `-`).
    pub name: String,
    /// The e-service's base URL; `/fruizioni/{name}/a/b?q` calls `{remote_base_url}/a/b?q`.
    pub remote_base_url: String,
    /// The PDND purpose the comune holds for this e-service.
    pub purpose_id: String,
    /// The PDND client to ask vouchers with; default: the `[client]` section's.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its private key (PEM); required with `client_id`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// ModI patterns applied to the calls: `INTEGRITY_REST_01` or `INTEGRITY_REST_02`, and
    /// `AUDIT_REST_01` or `AUDIT_REST_02` (see [`OutboundModiPattern`]).
    #[serde(default)]
    pub modi: Vec<String>,
    /// The remote e-service's audience (the `aud` of the ModI JWS we send, as declared on its
    /// PDND descriptor); required when `modi` names any pattern.
    #[serde(default)]
    pub audience: Option<String>,
    /// INTEGRITY_REST_01: the private key (PEM) that signs `Agid-JWT-Signature`...
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// ...and its certificate chain (PEM, leaf first), sent as the JWS `x5c`.
    #[serde(default)]
    pub signing_chain_file: Option<PathBuf>,
    /// INTEGRITY_REST_01 algorithm: `RS256` (default), `PS256` or `ES256`. INTEGRITY_REST_02
    /// and the tracking evidence always sign RS256 with the PDND client key.
    #[serde(default)]
    pub signing_algorithm: Option<String>,
    /// Check the remote's signed answer (`Digest` + `Agid-JWT-Signature` with `aud` = our
    /// client id); an answer that does not verify becomes a 502.
    #[serde(default)]
    pub verify_response: bool,
    /// PEM bundle of the CAs the remote's `x5c` must lead to; required with `verify_response`.
    #[serde(default)]
    pub response_trust_file: Option<PathBuf>,
    /// Whole-call timeout toward the remote.
    #[serde(default = "default_fruizione_timeout")]
    pub timeout_ms: u64,
    /// Calls in flight at once; beyond it the proxy answers 503 with Retry-After.
    #[serde(default = "default_fruizione_concurrency")]
    pub max_concurrency: usize,
    /// PEM bundle of CAs trusted for the remote, in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Largest answer body accepted from the remote; a larger one becomes a 502 (read with
    /// this limit while it streams in, never buffered whole).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Ask PDND for DPoP-bound vouchers (RFC 9449) and prove possession of the key on every
    /// call (`Authorization: DPoP` + a fresh `DPoP` proof). The proof key is a P-256 key the
    /// gateway generates at start and never writes down. Default: Bearer vouchers.
    #[serde(default)]
    pub dpop: bool,
}

/// The highest `max_response_bytes` accepted: answers are held in memory whole.
pub const MAX_RESPONSE_BYTES_CEILING: u64 = 256 * 1024 * 1024;

/// 1 MiB: ample for JSON e-service answers.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A ModI pattern a fruizione may apply to its outbound calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboundModiPattern {
    /// `Digest` + `Agid-JWT-Signature` with an `x5c` certificate chain.
    IntegrityRest01,
    /// `Digest` + `Agid-JWT-Signature` with the `kid` of the PDND client key.
    IntegrityRest02,
    /// `Agid-JWT-TrackingEvidence` signed with the PDND client key.
    AuditRest01,
    /// AUDIT_REST_01, with the evidence's digest bound into the voucher.
    AuditRest02,
}

impl OutboundModiPattern {
    /// The names accepted in `fruizioni.modi`.
    pub const NAMES: [&'static str; 4] = [
        "INTEGRITY_REST_01",
        "INTEGRITY_REST_02",
        "AUDIT_REST_01",
        "AUDIT_REST_02",
    ];

    /// Parses a pattern name as written in the guidelines (exact, upper case).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "INTEGRITY_REST_01" => Some(Self::IntegrityRest01),
            "INTEGRITY_REST_02" => Some(Self::IntegrityRest02),
            "AUDIT_REST_01" => Some(Self::AuditRest01),
            "AUDIT_REST_02" => Some(Self::AuditRest02),
            _ => None,
        }
    }
}

impl FruizioneConfig {
    /// The `modi` patterns, typed. Call after [`super::Config::validate`], which refuses unknown names.
    pub fn modi_patterns(&self) -> Vec<OutboundModiPattern> {
        self.modi
            .iter()
            .filter_map(|n| OutboundModiPattern::parse(n))
            .collect()
    }
}

fn default_fruizione_timeout() -> u64 {
    10_000
}
fn default_fruizione_concurrency() -> usize {
    64
}

/// Every fruizione: distinct names, and each one [`FruizioneConfig::validate`]d.
/// `default_client` says whether a `[client]` section exists to lend its PDND client.
pub fn validate_all(
    fruizioni: &[FruizioneConfig],
    default_client: bool,
) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for f in fruizioni {
        if f.name.is_empty()
            || !f
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid(
                "fruizioni.name",
                &format!("`{}`: use lowercase letters, digits and `-`", f.name),
            );
        }
        if !names.insert(f.name.as_str()) {
            return invalid("fruizioni.name", &format!("`{}` is used twice", f.name));
        }
        f.validate(default_client)?;
    }
    Ok(())
}

impl FruizioneConfig {
    /// One fruizione: URL, identifiers, its PDND client (its own, or the `[client]` section's
    /// when `default_client`), ModI options and bounds.
    pub fn validate(&self, default_client: bool) -> Result<(), ConfigError> {
        let f = self;
        check_http_url("fruizioni.remote_base_url", &f.remote_base_url)?;
        if uuid::Uuid::parse_str(&f.purpose_id).is_err() {
            return invalid(
                "fruizioni.purpose_id",
                &format!("`{}`: must be a PDND purposeId, a UUID", f.name),
            );
        }
        match (&f.client_id, &f.key_file) {
            (Some(id), Some(_)) => {
                if uuid::Uuid::parse_str(id).is_err() {
                    return invalid(
                        "fruizioni.client_id",
                        &format!("`{}`: must be a PDND clientId, a UUID", f.name),
                    );
                }
            }
            (None, None) if default_client => {}
            (None, None) => {
                return invalid(
                    "fruizioni.client_id",
                    &format!(
                        "`{}`: no client_id/key_file and no [client] section to default to",
                        f.name
                    ),
                )
            }
            _ => {
                return invalid(
                    "fruizioni.key_file",
                    &format!("`{}`: client_id and key_file go together", f.name),
                )
            }
        }
        validate_modi(f)?;
        if !(1..=300_000).contains(&f.timeout_ms) {
            return invalid(
                "fruizioni.timeout_ms",
                &format!("`{}`: must be between 1 and 300000", f.name),
            );
        }
        if !(1..=100_000).contains(&f.max_concurrency) {
            return invalid(
                "fruizioni.max_concurrency",
                &format!("`{}`: must be between 1 and 100000", f.name),
            );
        }
        if !(1..=MAX_RESPONSE_BYTES_CEILING).contains(&f.max_response_bytes) {
            return invalid(
                "fruizioni.max_response_bytes",
                &format!(
                    "`{}`: must be between 1 and {MAX_RESPONSE_BYTES_CEILING} (256 MiB)",
                    f.name
                ),
            );
        }
        Ok(())
    }
}

/// A fruizione's ModI options: known pattern names, at most one integrity and one audit
/// pattern, and the files and audience each pattern needs.
fn validate_modi(f: &FruizioneConfig) -> Result<(), ConfigError> {
    use OutboundModiPattern as P;
    let name = &f.name;
    let mut patterns = Vec::with_capacity(f.modi.len());
    for p in &f.modi {
        match OutboundModiPattern::parse(p) {
            Some(parsed) if patterns.contains(&parsed) => {
                return invalid("fruizioni.modi", &format!("`{name}`: `{p}` listed twice"))
            }
            Some(parsed) => patterns.push(parsed),
            None => {
                return invalid(
                    "fruizioni.modi",
                    &format!(
                        "`{name}`: unknown pattern `{p}` (known: {})",
                        OutboundModiPattern::NAMES.join(", ")
                    ),
                )
            }
        }
    }
    let has = |p: P| patterns.contains(&p);
    if has(P::IntegrityRest01) && has(P::IntegrityRest02) {
        return invalid(
            "fruizioni.modi",
            &format!("`{name}`: INTEGRITY_REST_01 and INTEGRITY_REST_02 exclude each other"),
        );
    }
    if has(P::AuditRest01) && has(P::AuditRest02) {
        return invalid(
            "fruizioni.modi",
            &format!("`{name}`: AUDIT_REST_01 and AUDIT_REST_02 exclude each other"),
        );
    }
    if !patterns.is_empty() {
        match &f.audience {
            Some(a) if !a.trim().is_empty() => {}
            _ => {
                return invalid(
                    "fruizioni.audience",
                    &format!(
                        "`{name}`: required with `modi` (the remote e-service's audience on PDND)"
                    ),
                )
            }
        }
    }
    let x5c_files = f.signing_key_file.is_some() || f.signing_chain_file.is_some();
    if has(P::IntegrityRest01) {
        if f.signing_key_file.is_none() {
            return invalid(
                "fruizioni.signing_key_file",
                &format!("`{name}`: INTEGRITY_REST_01 needs the signing key (PEM)"),
            );
        }
        if f.signing_chain_file.is_none() {
            return invalid(
                "fruizioni.signing_chain_file",
                &format!("`{name}`: INTEGRITY_REST_01 needs the certificate chain (PEM)"),
            );
        }
    } else if x5c_files || f.signing_algorithm.is_some() {
        return invalid(
            "fruizioni.signing_key_file",
            &format!("`{name}`: signing_key_file, signing_chain_file and signing_algorithm are only used by INTEGRITY_REST_01"),
        );
    }
    if let Some(alg) = &f.signing_algorithm {
        if !["RS256", "PS256", "ES256"].contains(&alg.as_str()) {
            return invalid(
                "fruizioni.signing_algorithm",
                &format!("`{name}`: `{alg}` is not RS256, PS256 or ES256"),
            );
        }
    }
    match (f.verify_response, &f.response_trust_file) {
        (true, None) => invalid(
            "fruizioni.response_trust_file",
            &format!("`{name}`: verify_response needs the CA bundle the remote's x5c leads to"),
        ),
        (false, Some(_)) => invalid(
            "fruizioni.verify_response",
            &format!("`{name}`: response_trust_file is set but verify_response is not"),
        ),
        _ => Ok(()),
    }
}
