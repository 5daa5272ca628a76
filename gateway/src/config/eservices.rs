//! `[eservices.*]`: the e-services the comune publishes, their public URLs and audiences, and
//! the ModI patterns each applies.

use super::{check_public_url, invalid, ConfigError};
use serde::Deserialize;

/// The e-services the comune publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EservicesConfig {
    pub anagrafe: EserviceConfig,
    pub tributi: EserviceConfig,
}

impl EservicesConfig {
    /// The configuration of one e-service.
    pub fn get(&self, eservice: eservices::Eservice) -> &EserviceConfig {
        match eservice {
            eservices::Eservice::Anagrafe => &self.anagrafe,
            eservices::Eservice::Tributi => &self.tributi,
        }
    }
}

/// One published e-service: where consumers reach it and what its vouchers must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EserviceConfig {
    /// The absolute base URL consumers call, e.g. `https://api.comune.example.it/anagrafe/v1`:
    /// the `servers` entry of the e-service's OpenAPI document. PDND's catalogue refuses an
    /// interface document whose server URLs are not absolute.
    pub public_url: String,
    /// The audience(s) configured on the e-service's PDND descriptor.
    pub audiences: Vec<String>,
    /// The PDND eserviceId (checked against the voucher when set).
    #[serde(default)]
    pub eservice_id: Option<String>,
    /// The PDND descriptorId of the published version (checked when set).
    #[serde(default)]
    pub descriptor_id: Option<String>,
    /// Which ModI security patterns this e-service applies.
    #[serde(default)]
    pub modi: EserviceModiConfig,
    /// The descriptor's `dailyCallsPerConsumer`: calls per Europe/Rome day each consumer may
    /// make to this e-service, all its purposes together (unlimited when left out).
    #[serde(default)]
    pub daily_calls_per_consumer: Option<u64>,
    /// The descriptor's `dailyCallsTotal`: calls per Europe/Rome day of all consumers
    /// together (unlimited when left out).
    #[serde(default)]
    pub daily_calls_total: Option<u64>,
}

/// The largest daily threshold accepted: a billion calls a day is beyond any comune's
/// e-service; a larger number is a typo that would leave the e-service unprotected.
pub const MAX_DAILY_CALLS: u64 = 1_000_000_000;

/// The ModI patterns one e-service applies, as declared on its PDND descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EserviceModiConfig {
    /// INTEGRITY_REST_01 on responses: `Digest` + `Agid-JWT-Signature` with our `x5c`.
    #[serde(default = "default_true")]
    pub sign_responses: bool,
    /// What a request must carry to prove its body and headers.
    #[serde(default)]
    pub request_integrity: RequestIntegrity,
    /// Whether a request must carry an `Agid-JWT-TrackingEvidence`, and bound to the voucher.
    #[serde(default)]
    pub audit: AuditPattern,
}

impl Default for EserviceModiConfig {
    fn default() -> Self {
        EserviceModiConfig {
            sign_responses: true,
            request_integrity: RequestIntegrity::None,
            audit: AuditPattern::None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Request integrity pattern required of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestIntegrity {
    #[default]
    None,
    /// `Agid-JWT-Signature` with an `x5c` chain to our trust store.
    #[serde(rename = "integrity_rest_01")]
    IntegrityRest01,
    /// `Agid-JWT-Signature` with the `kid` of a key registered on PDND.
    #[serde(rename = "integrity_rest_02")]
    IntegrityRest02,
}

/// Audit pattern required of callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditPattern {
    #[default]
    None,
    /// A valid `Agid-JWT-TrackingEvidence` signed with the caller's PDND key.
    #[serde(rename = "audit_rest_01")]
    AuditRest01,
    /// AUDIT_REST_01, and the voucher's `digest` is the SHA-256 of that exact evidence.
    #[serde(rename = "audit_rest_02")]
    AuditRest02,
}

impl EservicesConfig {
    /// The public base URLs the OpenAPI documents publish (no secrets needed).
    pub fn validate_published(&self) -> Result<(), ConfigError> {
        for (key, eservice) in [
            ("eservices.anagrafe.public_url", &self.anagrafe),
            ("eservices.tributi.public_url", &self.tributi),
        ] {
            check_public_url(key, &eservice.public_url)?;
        }
        Ok(())
    }

    /// The audiences: at least one each, none with a comma; the daily thresholds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_thresholds()?;
        for (key, eservice) in [
            ("eservices.anagrafe.audiences", &self.anagrafe),
            ("eservices.tributi.audiences", &self.tributi),
        ] {
            if eservice.audiences.is_empty() || eservice.audiences.iter().any(|a| a.is_empty()) {
                return invalid(key, "needs at least one non-empty audience");
            }
            if eservice.audiences.iter().any(|a| a.contains(',')) {
                return invalid(
                    key,
                    "an audience may not contain ',' (PDND joins several audiences with commas)",
                );
            }
        }
        Ok(())
    }

    /// The daily thresholds: from 1 to [`MAX_DAILY_CALLS`], and one consumer's no larger than
    /// the total (PDND's descriptor has the same rule).
    fn validate_thresholds(&self) -> Result<(), ConfigError> {
        for (keys, e) in [
            (
                [
                    "eservices.anagrafe.daily_calls_per_consumer",
                    "eservices.anagrafe.daily_calls_total",
                ],
                &self.anagrafe,
            ),
            (
                [
                    "eservices.tributi.daily_calls_per_consumer",
                    "eservices.tributi.daily_calls_total",
                ],
                &self.tributi,
            ),
        ] {
            for (key, value) in keys
                .iter()
                .zip([e.daily_calls_per_consumer, e.daily_calls_total])
            {
                if let Some(n) = value.filter(|n| *n == 0 || *n > MAX_DAILY_CALLS) {
                    return invalid(
                        key,
                        &format!("{n} is not a number of calls per day from 1 to {MAX_DAILY_CALLS} (leave the key out for no threshold)"),
                    );
                }
            }
            if let (Some(one), Some(total)) = (e.daily_calls_per_consumer, e.daily_calls_total) {
                if one > total {
                    return invalid(
                        keys[0],
                        &format!("{one} is more than the e-service's daily_calls_total ({total})"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The PDND identifiers every voucher is checked against: set, or left out, never blank.
    pub fn validate_identifiers(&self) -> Result<(), ConfigError> {
        let ids = [
            ("eservices.anagrafe.eservice_id", &self.anagrafe.eservice_id),
            (
                "eservices.anagrafe.descriptor_id",
                &self.anagrafe.descriptor_id,
            ),
            ("eservices.tributi.eservice_id", &self.tributi.eservice_id),
            (
                "eservices.tributi.descriptor_id",
                &self.tributi.descriptor_id,
            ),
        ];
        for (key, id) in ids {
            if id.as_deref().is_some_and(|id| id.trim().is_empty()) {
                return invalid(
                    key,
                    "must be the PDND identifier or be left out (every voucher is checked against it)",
                );
            }
        }
        Ok(())
    }
}
