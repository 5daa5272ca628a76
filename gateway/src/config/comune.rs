//! `[comune]`: who the comune is on PDND and the contact its OpenAPI documents publish.

use super::{check_http_url, invalid, ConfigError};
use serde::Deserialize;

/// Who the comune is on PDND.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComuneConfig {
    /// The comune's PDND tenant id (`producerId` of vouchers for its e-services).
    #[serde(default)]
    pub producer_id: Option<String>,
    pub name: String,
    /// Who answers consumers' questions about the e-services (`info.contact` of the OpenAPI
    /// documents; the Italian guidelines require a contact).
    #[serde(default)]
    pub contact_email: Option<String>,
    /// The web page of that contact (`info.contact.url`).
    #[serde(default)]
    pub contact_url: Option<String>,
    /// The terms of use of the e-services (`info.termsOfService`).
    #[serde(default)]
    pub terms_of_service_url: Option<String>,
}

impl ComuneConfig {
    /// The PDND tenant id every voucher is checked against: set, or left out, never blank.
    pub fn validate_producer_id(&self) -> Result<(), ConfigError> {
        if self
            .producer_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return invalid(
                "comune.producer_id",
                "must be the PDND identifier or be left out (every voucher is checked against it)",
            );
        }
        Ok(())
    }

    /// What the OpenAPI documents publish: the contact's e-mail and URL, the terms of service.
    pub fn validate_published(&self) -> Result<(), ConfigError> {
        if let Some(email) = &self.contact_email {
            let at = email.find('@');
            if !at.is_some_and(|i| i > 0 && i + 1 < email.len())
                || email.contains(char::is_whitespace)
            {
                return invalid("comune.contact_email", "must be an e-mail address");
            }
        }
        if let Some(url) = &self.contact_url {
            check_http_url("comune.contact_url", url)?;
        }
        if let Some(url) = &self.terms_of_service_url {
            check_http_url("comune.terms_of_service_url", url)?;
        }
        Ok(())
    }
}
