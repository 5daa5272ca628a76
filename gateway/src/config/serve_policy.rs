//! What a configuration must pass before the gateway faces the real PDND: no placeholder or
//! guessable secret, no clear-text URL toward PDND or another administration, no private key
//! that other users of the machine can read, no internal listener open in clear text.
//!
//! [`Config::validate`] holds the rules every environment shares, the internal listener's
//! exposure among them. The others live in [`Config::validate_for_serve`]: `dev` generates its
//! own secrets and keys and talks to a local authority over loopback HTTP, and tests build
//! configurations freely, so only `serve` applies them. Every refusal names the key (and the
//! file, for key files) and never prints a secret.

use super::secret_strength::{assess, SecretKind};
use super::{Config, ConfigError};
use std::path::Path;

/// Which `http://` URLs a configuration may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAllowance {
    /// Only `https://` (`serve`).
    None,
    /// `http://` to this machine only: loopback, `localhost`, or an unspecified address a
    /// local listener was given (`dev`, whose authority and sample fruizione are local).
    Local,
}

impl Config {
    /// Everything `serve` requires: [`Config::validate`], then strong secrets, https toward
    /// PDND and the remotes, and private key files readable by their owner only.
    pub fn validate_for_serve(&self) -> Result<(), ConfigError> {
        self.validate()?;
        self.check_secrets()?;
        self.check_transport(HttpAllowance::None)?;
        self.check_key_files()
    }

    /// The internal listener is on loopback, has TLS, or its clear text is explicitly accepted.
    pub(super) fn validate_internal_exposure(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if let Some(tls) = &server.internal_tls {
            if tls.cert_file.as_os_str().is_empty() {
                return invalid("server.internal_tls.cert_file", "must name a PEM file");
            }
            if tls.key_file.as_os_str().is_empty() {
                return invalid("server.internal_tls.key_file", "must name a PEM file");
            }
            if tls
                .client_ca_file
                .as_ref()
                .is_some_and(|p| p.as_os_str().is_empty())
            {
                return invalid(
                    "server.internal_tls.client_ca_file",
                    "must name a PEM file (or be left out)",
                );
            }
            return Ok(());
        }
        if server.internal_listen.ip().is_loopback() || server.internal_allow_plaintext_non_loopback
        {
            return Ok(());
        }
        invalid(
            "server.internal_listen",
            &format!(
                "{} is not a loopback address and the internal listener (fruizioni with the \
                 comune's API keys) has no TLS: configure [server.internal_tls] (cert_file, \
                 key_file, client_ca_file for mTLS), listen on 127.0.0.1, or, only where the \
                 network is otherwise confined, set server.internal_allow_plaintext_non_loopback = true",
                server.internal_listen.ip()
            ),
        )
    }

    /// Whether the internal listener serves clear text beyond this machine (allowed by
    /// `server.internal_allow_plaintext_non_loopback`; the start logs a warning).
    pub fn internal_plaintext_exposed(&self) -> bool {
        self.server.internal_tls.is_none() && !self.server.internal_listen.ip().is_loopback()
    }

    /// The audit HMAC secret, the internal API keys and the passwords of the database URLs are
    /// neither placeholders nor guessable (see [`super::secret_strength`]).
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        if let Err(weak) = assess(&self.audit.hmac_secret, SecretKind::Key) {
            return invalid(
                "audit.hmac_secret",
                &format!("the value {weak} (set PDNDGW_AUDIT__HMAC_SECRET)"),
            );
        }
        for (i, key) in self.internal.api_keys.iter().enumerate() {
            if let Err(weak) = assess(key, SecretKind::Key) {
                return invalid(
                    "internal.api_keys",
                    &format!(
                        "entry {} of {}: the value {weak} (set PDNDGW_INTERNAL__API_KEYS)",
                        i + 1,
                        self.internal.api_keys.len()
                    ),
                );
            }
        }
        check_url_password("database.url", &self.database.url)?;
        check_url_password("audit.url", &self.audit.url)
    }

    /// Every URL toward PDND, another administration or published to consumers is `https://`
    /// (with [`HttpAllowance::Local`], `http://` to this machine is accepted too).
    pub fn check_transport(&self, allowance: HttpAllowance) -> Result<(), ConfigError> {
        check_https("pdnd.token_endpoint", &self.pdnd.token_endpoint, allowance)?;
        check_https("pdnd.jwks_url", &self.pdnd.jwks_url, allowance)?;
        if let Some(url) = &self.pdnd.keys_url {
            check_https("pdnd.keys_url", url, allowance)?;
        }
        check_https(
            "eservices.anagrafe.public_url",
            &self.eservices.anagrafe.public_url,
            allowance,
        )?;
        check_https(
            "eservices.tributi.public_url",
            &self.eservices.tributi.public_url,
            allowance,
        )?;
        for f in &self.fruizioni {
            check_https("fruizioni.remote_base_url", &f.remote_base_url, allowance).map_err(
                |e| match e {
                    ConfigError::Invalid { key, reason } => ConfigError::Invalid {
                        key,
                        reason: format!("`{}`: {reason}", f.name),
                    },
                    other => other,
                },
            )?;
        }
        Ok(())
    }

    /// Every private key file the gateway loads, with the key that names it.
    pub fn private_key_files(&self) -> Vec<(&'static str, &Path)> {
        let mut files: Vec<(&'static str, &Path)> = Vec::new();
        if let Some(client) = &self.client {
            files.push(("client.key_file", &client.key_file));
        }
        if let Some(path) = &self.pdnd.api_key_file {
            files.push(("pdnd.api_key_file", path));
        }
        if let Some(path) = &self.modi.signing_key_file {
            files.push(("modi.signing_key_file", path));
        }
        if let Some(tls) = &self.server.internal_tls {
            files.push(("server.internal_tls.key_file", &tls.key_file));
        }
        for f in &self.fruizioni {
            if let Some(path) = &f.key_file {
                files.push(("fruizioni.key_file", path));
            }
            if let Some(path) = &f.signing_key_file {
                files.push(("fruizioni.signing_key_file", path));
            }
        }
        files
    }

    /// Each private key file exists and no one but its owner may read or write it.
    pub fn check_key_files(&self) -> Result<(), ConfigError> {
        for (key, path) in self.private_key_files() {
            check_key_file(key, path)?;
        }
        Ok(())
    }
}

/// A private key file readable by group or others is refused, with the command that fixes it.
pub fn check_key_file(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    let metadata = std::fs::metadata(path).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("cannot read the private key file {}: {e}", path.display()),
    })?;
    if !metadata.is_file() {
        return invalid(
            key,
            &format!("{} is not a regular file", path.display()),
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return invalid(
                key,
                &format!(
                    "the private key file {path} has mode {mode:04o}: group or others may access it; \
                     allow its owner only: chmod 600 {path} (a Kubernetes Secret volume: defaultMode: 0400)",
                    path = path.display()
                ),
            );
        }
    }
    Ok(())
}

/// The password inside a database URL, when there is one (`user:password@` or
/// `?password=`), is not a placeholder or guessable. A URL without one is fine: the password
/// then comes from the engine's own means (PGPASSWORD, .pgpass, peer authentication).
fn check_url_password(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let Ok(url) = url::Url::parse(value) else {
        return Ok(());
    };
    let in_query = url
        .query_pairs()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned());
    for password in url.password().map(str::to_owned).into_iter().chain(in_query) {
        if let Err(weak) = assess(&password, SecretKind::Password) {
            return invalid(
                key,
                &format!(
                    "the password in the URL {weak} (set PDNDGW_{}__URL)",
                    key.split('.').next().unwrap_or_default().to_ascii_uppercase()
                ),
            );
        }
    }
    Ok(())
}

fn check_https(key: &'static str, value: &str, allowance: HttpAllowance) -> Result<(), ConfigError> {
    let Ok(url) = url::Url::parse(value) else {
        return invalid(key, "is not a URL");
    };
    match (url.scheme(), allowance) {
        ("https", _) => Ok(()),
        ("http", HttpAllowance::Local) if is_local(&url) => Ok(()),
        ("http", HttpAllowance::Local) => invalid(
            key,
            "http:// is accepted only toward this machine (loopback) in dev; use https://",
        ),
        _ => invalid(
            key,
            "must be https:// (clear text would expose vouchers, keys and personal data on the network)",
        ),
    }
}

fn is_local(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => false,
    }
}

fn invalid<T>(key: &'static str, reason: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    })
}
