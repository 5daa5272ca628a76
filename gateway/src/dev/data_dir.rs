//! The development data directory: keys, the sample client and the database, made on first run.
//!
//! A second run finds everything in place and reuses it, so a voucher obtained yesterday still
//! names a client the authority knows. Private keys are written with mode 0600. Nothing here is
//! ever used outside `dev`.

use crate::pdnd::jwk::{KeyError, RsaPrivateKey};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Failures preparing the data directory.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("{path} is not a valid client file: {reason}")]
    ClientFile { path: PathBuf, reason: String },
    #[error("ModI dev PKI: {0}")]
    Pki(#[from] crate::modi::ModiError),
}

/// The ModI PKI's directory inside the data directory.
pub const MODI_DIR: &str = "modi";
/// The common name of the dev signing certificates.
pub const MODI_COMMON_NAME: &str = "localhost";

/// A dev PDND client, as stored in `client.json` (the sample consumer client) or
/// `api-client.json` (the comune's API Interop client).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevClient {
    pub client_id: String,
    pub kid: String,
    /// The private key file, relative to the data directory.
    pub key_file: String,
}

/// What a prepared data directory holds.
pub struct DataDir {
    pub root: PathBuf,
    pub authority_key: RsaPrivateKey,
    pub client: DevClient,
    pub client_key: RsaPrivateKey,
    /// The comune's API Interop (M2M) client: its voucher opens the authority's `/keys/{kid}`.
    pub api_client: DevClient,
    pub api_client_key: RsaPrivateKey,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a secret file readable by the owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), DataDirError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))
}

fn load_or_create_key(path: &Path) -> Result<RsaPrivateKey, DataDirError> {
    let key_err = |source| DataDirError::Key {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        let pem = fs::read_to_string(path).map_err(io(path))?;
        return RsaPrivateKey::from_pem(&pem).map_err(key_err);
    }
    let key = RsaPrivateKey::generate().map_err(key_err)?;
    write_private(path, &key.to_pem())?;
    Ok(key)
}

/// The client described by `root/json_name`, created (new clientId, key in `root/key_name`)
/// when the file is missing.
fn load_or_create_client(
    root: &Path,
    json_name: &str,
    key_name: &str,
) -> Result<(DevClient, RsaPrivateKey), DataDirError> {
    let client_path = root.join(json_name);
    if client_path.exists() {
        let text = fs::read_to_string(&client_path).map_err(io(&client_path))?;
        let client: DevClient =
            serde_json::from_str(&text).map_err(|e| DataDirError::ClientFile {
                path: client_path.clone(),
                reason: e.to_string(),
            })?;
        let key = load_or_create_key(&root.join(&client.key_file))?;
        if key.kid() != client.kid {
            return Err(DataDirError::ClientFile {
                path: client_path,
                reason: "its kid does not match the key file".into(),
            });
        }
        return Ok((client, key));
    }
    let key_file = key_name.to_owned();
    let key = load_or_create_key(&root.join(&key_file))?;
    let client = DevClient {
        client_id: uuid::Uuid::new_v4().to_string(),
        kid: key.kid(),
        key_file,
    };
    let text = serde_json::to_string_pretty(&client).map_err(|e| DataDirError::ClientFile {
        path: client_path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&client_path, text).map_err(io(&client_path))?;
    Ok((client, key))
}

impl DataDir {
    /// Opens the directory, creating what is missing.
    pub fn prepare(root: &Path) -> Result<DataDir, DataDirError> {
        fs::create_dir_all(root).map_err(io(root))?;
        let authority_key = load_or_create_key(&root.join("authority-key.pem"))?;
        let (client, client_key) = load_or_create_client(root, "client.json", "client-key.pem")?;
        let (api_client, api_client_key) =
            load_or_create_client(root, "api-client.json", "api-client-key.pem")?;
        Ok(DataDir {
            root: root.to_owned(),
            authority_key,
            client,
            client_key,
            api_client,
            api_client_key,
        })
    }

    /// Opens an existing directory without creating anything (for `voucher`).
    pub fn open_existing(root: &Path) -> Result<DataDir, DataDirError> {
        let client_path = root.join("client.json");
        if !client_path.exists() {
            return Err(DataDirError::Io {
                path: client_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not found: start `pdnd-gateway dev` first (it creates the data directory), or pass --data-dir",
                ),
            });
        }
        Self::prepare(root)
    }

    /// The SQLite database URL inside the directory.
    pub fn database_url(&self) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            self.root.join("comune.db").display()
        )
    }

    /// The SQLite audit database URL inside the directory.
    pub fn audit_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.root.join("audit.db").display())
    }

    /// The audit HMAC secret, generated on first use (64 hex characters, mode 0600).
    pub fn audit_secret(&self) -> Result<String, DataDirError> {
        let path = self.root.join("audit-secret");
        if path.exists() {
            return Ok(fs::read_to_string(&path)
                .map_err(io(&path))?
                .trim()
                .to_owned());
        }
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&path, &secret)?;
        Ok(secret)
    }

    /// The API key of the internal listener's fruizioni, generated on first use (64 hex
    /// characters, mode 0600, file `internal-api-key`).
    pub fn internal_api_key(&self) -> Result<String, DataDirError> {
        let path = self.internal_api_key_path();
        if path.exists() {
            return Ok(fs::read_to_string(&path)
                .map_err(io(&path))?
                .trim()
                .to_owned());
        }
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&path, &key)?;
        Ok(key)
    }

    /// Where [`DataDir::internal_api_key`] keeps the key.
    pub fn internal_api_key_path(&self) -> PathBuf {
        self.root.join("internal-api-key")
    }

    /// The purposes file; written from `contents` when missing, left alone when present (an
    /// operator may have edited it to try suspensions).
    pub fn purposes_file(&self, contents: &str) -> Result<PathBuf, DataDirError> {
        let path = self.root.join("purposes.toml");
        if !path.exists() {
            fs::write(&path, contents).map_err(io(&path))?;
        }
        Ok(path)
    }

    /// The ModI dev PKI in `<root>/modi/` (dev CA, RSA and EC signing identities), generated on
    /// first use and reused afterwards, so the CA a peer was told to trust stays the same.
    pub fn modi_pki(&self) -> Result<crate::modi::DevPki, DataDirError> {
        Ok(crate::modi::generate_dev_pki(
            &self.root.join(MODI_DIR),
            MODI_COMMON_NAME,
        )?)
    }

    /// Where the seed's sample subjects are remembered for the start-up message.
    pub fn samples_path(&self) -> PathBuf {
        self.root.join("samples.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_prepare_reuses_keys_and_client() {
        let dir = std::env::temp_dir().join(format!("pdndgw-datadir-{}", uuid::Uuid::new_v4()));
        let first = DataDir::prepare(&dir).unwrap();
        let second = DataDir::prepare(&dir).unwrap();
        assert_eq!(first.client.client_id, second.client.client_id);
        assert_eq!(first.client_key.kid(), second.client_key.kid());
        assert_eq!(first.authority_key.kid(), second.authority_key.kid());
        assert_ne!(first.authority_key.kid(), first.client_key.kid());
        assert_eq!(first.api_client.client_id, second.api_client.client_id);
        assert_eq!(first.api_client_key.kid(), second.api_client_key.kid());
        assert_eq!(first.api_client.kid, first.api_client_key.kid());
        assert_ne!(first.api_client.client_id, first.client.client_id);
        assert_ne!(first.api_client_key.kid(), first.client_key.kid());
        let key = first.internal_api_key().unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(second.internal_api_key().unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("client-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_existing_refuses_a_missing_directory() {
        let dir = std::env::temp_dir().join(format!("pdndgw-missing-{}", uuid::Uuid::new_v4()));
        let err = DataDir::open_existing(&dir).err().expect("must fail");
        assert!(err.to_string().contains("pdnd-gateway dev"));
    }
}
