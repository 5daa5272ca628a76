//! What a configuration must pass before the gateway faces the real PDND: no placeholder or
//! guessable secret, no clear-text URL toward PDND or another administration, no private key
//! that other users of the machine can read, no internal listener open in clear text.
//!
//! [`Config::validate`] holds the rules every environment shares, the internal listener's
//! exposure among them. The others live in [`Config::validate_for_serve`]: `dev` generates its
//! own secrets and keys and talks to a local authority over loopback HTTP, and tests build
//! configurations freely, so only `serve` applies them. Every refusal names the key (and the
//! file, for key files) and never prints a secret.

use super::secret_strength::{assess, assess_digest, SecretKind};
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
        for (i, entry) in self.internal.api_keys.iter().enumerate() {
            let digests = std::iter::once(&entry.sha256).chain(entry.previous_sha256.iter());
            for digest in digests {
                if let Err(weak) = assess_digest(digest) {
                    return invalid(
                        "internal.api_key",
                        &format!(
                            "entry {} of {} (`{}`): the sha256 {weak} (the digest of a \
                             freshly generated key: `pdnd-gateway api-key`)",
                            i + 1,
                            self.internal.api_keys.len(),
                            entry.name
                        ),
                    );
                }
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
        if let Some(t) = &self.tracing {
            check_https("tracing.service_url", &t.service_url, allowance)?;
        }
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

    /// Each private key file exists and no one but its owner (and, with
    /// `server.allow_group_readable_keys`, its group) may read or write it.
    pub fn check_key_files(&self) -> Result<(), ConfigError> {
        let allow_group = self.server.allow_group_readable_keys;
        for (key, path) in self.private_key_files() {
            check_key_file(key, path, allow_group)?;
        }
        Ok(())
    }
}

/// A private key file others may access is refused, with the command that fixes it; so is one
/// its group may access, unless `allow_group` (Kubernetes mounts Secrets with `fsGroup` as 0440;
/// the group may read, never write).
pub fn check_key_file(
    key: &'static str,
    path: &Path,
    allow_group: bool,
) -> Result<(), ConfigError> {
    let metadata = std::fs::metadata(path).map_err(|e| ConfigError::Invalid {
        key,
        reason: format!("cannot read the private key file {}: {e}", path.display()),
    })?;
    if !metadata.is_file() {
        return invalid(key, &format!("{} is not a regular file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if allow_group && mode & 0o037 == 0 {
            return Ok(());
        }
        if allow_group {
            return invalid(
                key,
                &format!(
                    "the private key file {path} has mode {mode:04o}: others may access it, or \
                     its group may write it (server.allow_group_readable_keys admits group \
                     read only); chmod 640 {path} (a Kubernetes Secret volume: defaultMode: 0440)",
                    path = path.display()
                ),
            );
        }
        if mode & 0o077 != 0 {
            return invalid(
                key,
                &format!(
                    "the private key file {path} has mode {mode:04o}: group or others may access it; \
                     allow its owner only: chmod 600 {path} (a Kubernetes Secret volume: defaultMode: 0400; \
                     0440 with fsGroup needs server.allow_group_readable_keys = true)",
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
    for password in url
        .password()
        .map(str::to_owned)
        .into_iter()
        .chain(in_query)
    {
        if let Err(weak) = assess(&password, SecretKind::Password) {
            return invalid(
                key,
                &format!(
                    "the password in the URL {weak} (set PDNDGW_{}__URL)",
                    key.split('.')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase()
                ),
            );
        }
    }
    Ok(())
}

fn check_https(
    key: &'static str,
    value: &str,
    allowance: HttpAllowance,
) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InternalTlsConfig;
    use std::path::PathBuf;

    const EXAMPLES: [(&str, &str); 2] = [
        (
            "collaudo",
            include_str!("../../../config/collaudo.example.toml"),
        ),
        (
            "produzione",
            include_str!("../../../config/produzione.example.toml"),
        ),
    ];
    const PLACEHOLDER: &str = "replace-me-with-32-or-more-random-characters";
    const STRONG_HMAC: &str = "c2068f4f4dfdac0c79499a29236787a230a678b668810153dd48f1606cf7e6bc";
    const STRONG_API_KEY: &str = "KhFyncULoXwkAsYJE04NFFmhtlQnbvOybAVo9vKfSi4=";

    fn strong_caller() -> crate::config::ApiKeyConfig {
        crate::config::ApiKeyConfig::for_key(
            "ufficio-tributi",
            STRONG_API_KEY,
            vec!["inps-isee".into()],
        )
    }

    fn example(text: &str) -> Config {
        let c = Config::from_toml_str(text).expect("the example parses");
        c.validate().expect("the example validates");
        c
    }

    fn refusal(result: Result<(), ConfigError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn each_example_is_refused_with_its_placeholders_and_accepted_with_strong_values() {
        for (name, text) in EXAMPLES {
            let mut c = example(text);
            assert_eq!(c.audit.hmac_secret, PLACEHOLDER, "{name}");
            let err = refusal(c.check_secrets());
            assert!(err.contains("`audit.hmac_secret`"), "{name}: {err}");
            assert!(err.contains("placeholder"), "{name}: {err}");
            assert!(!err.contains(PLACEHOLDER), "{name}: the value is printed");

            c.audit.hmac_secret = STRONG_HMAC.into();
            let err = refusal(c.check_secrets());
            assert!(err.contains("`internal.api_key`"), "{name}: {err}");
            assert!(!err.contains(PLACEHOLDER), "{name}: the value is printed");

            c.internal.api_keys = vec![strong_caller()];
            c.check_secrets()
                .unwrap_or_else(|e| panic!("{name} with strong secrets: {e}"));
            c.check_transport(HttpAllowance::None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn weak_api_keys_are_named_by_position_never_by_value() {
        let mut c = example(EXAMPLES[0].1);
        c.audit.hmac_secret = STRONG_HMAC.into();
        let mut weak = crate::config::ApiKeyConfig::for_key(
            "ufficio-anagrafe",
            "changeme",
            vec!["inps-isee".into()],
        );
        c.internal.api_keys = vec![strong_caller(), weak.clone()];
        let err = refusal(c.check_secrets());
        assert!(
            err.contains("`internal.api_key`")
                && err.contains("entry 2 of 2")
                && err.contains("ufficio-anagrafe"),
            "{err}"
        );
        assert!(!err.contains(&weak.sha256), "{err}");
        // A rotation's previous digest is checked too.
        weak.sha256 = strong_caller().sha256;
        weak.previous_sha256 = Some("0".repeat(64));
        c.internal.api_keys = vec![strong_caller(), weak];
        let err = refusal(c.check_secrets());
        assert!(err.contains("entry 2 of 2"), "{err}");
    }

    #[test]
    fn database_passwords_in_urls_are_checked() {
        let mut c = example(EXAMPLES[1].1);
        c.audit.hmac_secret = STRONG_HMAC.into();
        c.internal.api_keys = vec![strong_caller()];
        for (url, refused) in [
            ("postgres://gw:changeme@db.example.it/anagrafe", true),
            ("postgres://gw:postgres@db.example.it/anagrafe", true),
            ("postgres://gw:Pz7k@db.example.it/anagrafe", true),
            ("postgres://gw@db.example.it/anagrafe?password=secret", true),
            (
                "postgres://gw:Xk9mP2vL7qR4tW8zN3@db.example.it/anagrafe",
                false,
            ),
            ("postgres://gw@db.example.it/anagrafe", false),
        ] {
            c.database.url = url.into();
            let result = c.check_secrets();
            assert_eq!(result.is_err(), refused, "{url}: {result:?}");
            if let Err(e) = result {
                let e = e.to_string();
                assert!(e.contains("`database.url`"), "{e}");
                assert!(!e.contains("changeme") && !e.contains("Pz7k"), "{e}");
            }
        }
        c.database.url = "postgres://gw@db.example.it/anagrafe".into();
        c.audit.url = "postgres://audit:password@db.example.it/audit".into();
        let err = refusal(c.check_secrets());
        assert!(
            err.contains("`audit.url`") && err.contains("PDNDGW_AUDIT__URL"),
            "{err}"
        );
    }

    #[test]
    fn serve_wants_https_everywhere_and_dev_allows_only_local_http() {
        type Set = fn(&mut Config, String);
        let cases: [(&str, Set); 6] = [
            ("pdnd.token_endpoint", |c, u| c.pdnd.token_endpoint = u),
            ("pdnd.jwks_url", |c, u| c.pdnd.jwks_url = u),
            ("pdnd.keys_url", |c, u| c.pdnd.keys_url = Some(u)),
            ("eservices.anagrafe.public_url", |c, u| {
                c.eservices.anagrafe.public_url = u
            }),
            ("eservices.tributi.public_url", |c, u| {
                c.eservices.tributi.public_url = u
            }),
            ("fruizioni.remote_base_url", |c, u| {
                c.fruizioni[0].remote_base_url = u
            }),
        ];
        for (key, set) in cases {
            let mut c = example(EXAMPLES[0].1);
            c.check_transport(HttpAllowance::None)
                .expect("https as shipped");
            set(&mut c, "http://127.0.0.1:8090/x".into());
            let err = refusal(c.check_transport(HttpAllowance::None));
            assert!(
                err.contains(key) && err.contains("https://"),
                "{key}: {err}"
            );
            c.check_transport(HttpAllowance::Local)
                .unwrap_or_else(|e| panic!("{key}: loopback http in dev: {e}"));
            for local in [
                "http://localhost:8090/x",
                "http://[::1]:8090/x",
                "http://0.0.0.0:8080/x",
            ] {
                set(&mut c, local.into());
                c.check_transport(HttpAllowance::Local)
                    .unwrap_or_else(|e| panic!("{key} {local}: {e}"));
            }
            set(&mut c, "http://pdnd.example.it/x".into());
            let err = refusal(c.check_transport(HttpAllowance::Local));
            assert!(
                err.contains(key) && err.contains("loopback"),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn the_internal_listener_leaves_loopback_only_with_tls_or_an_explicit_opt_in() {
        let mut c = example(EXAMPLES[0].1);
        assert!(c.server.internal_tls.is_some(), "the examples use TLS");
        assert!(!c.internal_plaintext_exposed());
        c.server.internal_tls = None;
        let err = refusal(c.validate());
        assert!(
            err.contains("`server.internal_listen`") && err.contains("0.0.0.0"),
            "{err}"
        );
        c.server.internal_allow_plaintext_non_loopback = true;
        c.validate().expect("explicit opt-in");
        assert!(c.internal_plaintext_exposed(), "the start logs a warning");
        c.server.internal_allow_plaintext_non_loopback = false;
        c.server.internal_listen = "127.0.0.1:8081".parse().expect("addr");
        c.validate().expect("loopback");
        assert!(!c.internal_plaintext_exposed());
        c.server.internal_listen = "10.1.2.3:8081".parse().expect("addr");
        c.server.internal_tls = Some(InternalTlsConfig {
            cert_file: "tls.crt".into(),
            key_file: "".into(),
            client_ca_file: None,
        });
        assert!(refusal(c.validate()).contains("server.internal_tls.key_file"));

        let text = EXAMPLES[0].1.replace(
            "[server.internal_tls]\ncert_file",
            "[server.internal_tls]\nkey_fil = \"x\"\ncert_file",
        );
        let err = Config::from_toml_str(&text)
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("key_fil"), "{err}");
        let text = EXAMPLES[0].1.replace(
            "workers = 2\n",
            "workers = 2\ninternal_allow_plaintext_non_loopback = true\n",
        );
        let c = Config::from_toml_str(&text).expect("parses");
        assert!(c.server.internal_allow_plaintext_non_loopback);
        let c = Config::from_toml_str(crate::config::DEV_TOML).expect("parses");
        assert!(
            !c.server.internal_allow_plaintext_non_loopback,
            "secure default"
        );
    }

    fn key_file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn private_key_files_readable_by_others_are_refused() {
        let dir = std::env::temp_dir().join(format!("pdndgw-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut c = example(EXAMPLES[0].1);
        c.fruizioni[0].client_id = Some("8e9f24ca-78f5-4c69-9e4f-0efbeac7bb2b".into());
        let keys = [
            "client.key_file",
            "pdnd.api_key_file",
            "modi.signing_key_file",
            "server.internal_tls.key_file",
            "fruizioni.key_file",
        ];
        let point = |c: &mut Config, key: &str, path: PathBuf| match key {
            "client.key_file" => c.client.as_mut().expect("client").key_file = path,
            "pdnd.api_key_file" => c.pdnd.api_key_file = Some(path),
            "modi.signing_key_file" => c.modi.signing_key_file = Some(path),
            "server.internal_tls.key_file" => {
                c.server.internal_tls.as_mut().expect("tls").key_file = path
            }
            _ => c.fruizioni[0].key_file = Some(path),
        };
        for (i, key) in keys.iter().enumerate() {
            point(&mut c, key, key_file(&dir, &format!("ok-{i}.pem"), 0o600));
        }
        assert_eq!(c.private_key_files().len(), keys.len());
        c.check_key_files().expect("all 0600");
        for (i, key) in keys.iter().enumerate() {
            for mode in [0o644, 0o640, 0o604, 0o660] {
                let mut broken = c.clone();
                let path = key_file(&dir, &format!("open-{i}-{mode:o}.pem"), mode);
                point(&mut broken, key, path.clone());
                let err = refusal(broken.check_key_files());
                assert!(err.contains(key), "{key}: {err}");
                assert!(err.contains(&path.display().to_string()), "{err}");
                assert!(
                    err.contains(&format!("chmod 600 {}", path.display())),
                    "{err}"
                );
                assert!(err.contains(&format!("{mode:04o}")), "{err}");
            }
            let mut strict = c.clone();
            point(
                &mut strict,
                key,
                key_file(&dir, &format!("ro-{i}.pem"), 0o400),
            );
            strict.check_key_files().expect("0400 is fine");
            let mut missing = c.clone();
            let path = dir.join("missing.pem");
            point(&mut missing, key, path.clone());
            let err = refusal(missing.check_key_files());
            assert!(
                err.contains(key) && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn group_readable_keys_pass_only_with_the_opt_in_and_never_world_readable_or_group_writable() {
        let dir = std::env::temp_dir().join(format!("pdndgw-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut c = example(EXAMPLES[0].1);
        c.fruizioni.clear();
        c.client = None;
        c.pdnd.api_key_file = None;
        c.server.internal_tls = None;
        for (mode, strict_ok, opt_in_ok) in [
            (0o400, true, true),
            (0o600, true, true),
            (0o440, false, true),
            (0o640, false, true),
            (0o460, false, false),
            (0o444, false, false),
            (0o404, false, false),
            (0o644, false, false),
            (0o604, false, false),
        ] {
            let path = key_file(&dir, &format!("k-{mode:o}.pem"), mode);
            c.modi.signing_key_file = Some(path.clone());
            c.server.allow_group_readable_keys = false;
            assert_eq!(c.check_key_files().is_ok(), strict_ok, "strict {mode:04o}");
            c.server.allow_group_readable_keys = true;
            let result = c.check_key_files();
            assert_eq!(result.is_ok(), opt_in_ok, "opt-in {mode:04o}");
            if !opt_in_ok {
                let err = refusal(result);
                assert!(err.contains("modi.signing_key_file"), "{err}");
                assert!(err.contains(&format!("{mode:04o}")), "{err}");
                assert!(
                    err.contains(&format!("chmod 640 {}", path.display())),
                    "{err}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
