//! `pdnd-gateway api-key`: a new internal caller's key and its `[[internal.api_key]]` block.
//!
//! The configuration holds only the key's SHA-256, so the key is made here, shown once to be
//! handed to the caller, and never written anywhere by the gateway.

use crate::config::ApiKeyConfig;
use rand::RngCore;

/// A fresh key (32 random bytes from the OS, 64 hex characters) and its configuration entry.
pub fn generate(name: &str, fruizioni: &[String]) -> (String, ApiKeyConfig) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = hex::encode(bytes);
    let entry = ApiKeyConfig::for_key(name, &key, fruizioni.to_vec());
    (key, entry)
}

/// The entry as a TOML block to paste into the configuration.
pub fn toml_block(entry: &ApiKeyConfig) -> String {
    let list = entry
        .fruizioni
        .iter()
        .map(|f| format!("{f:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[internal.api_key]]\nname = {:?}\nsha256 = {:?}\nfruizioni = [{list}]\n",
        entry.name, entry.sha256
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_configures_the_key_it_was_made_for() {
        let (key, entry) = generate("ufficio-tributi", &["inps-isee".into(), "anpr".into()]);
        assert_eq!(key.len(), 64);
        let (other, _) = generate("ufficio-tributi", &["inps-isee".into()]);
        assert_ne!(key, other);
        let block = toml_block(&entry);
        #[derive(serde::Deserialize)]
        struct Internal {
            internal: crate::config::InternalConfig,
        }
        let parsed: Internal = toml::from_str(&block).unwrap();
        assert_eq!(parsed.internal.api_keys, vec![entry.clone()]);
        assert!(!block.contains(&key));
        let keys = crate::consumer::internal_auth::ApiKeys::from_config(&parsed.internal.api_keys)
            .unwrap();
        let caller = keys.identify(&key).unwrap();
        assert_eq!(caller.name(), "ufficio-tributi");
        assert!(caller.may_call("anpr"));
    }
}
