//! A development PKI so the ModI patterns run end to end without a real certificate.
//!
//! [`generate_dev_pki`] writes a dev CA and two signing identities issued by it (RSA-2048 for
//! RS256/PS256, P-256 for ES256) into a directory, reusing whatever is already there, so running
//! it twice changes nothing and a CA that peers already trust is never replaced. A comune in
//! production does not use this: it names its real key and certificate chain in the
//! configuration (see `certs/README.md`).
//!
//! Certificate validity is a fixed window by default ([`Validity::DEV_DEFAULT`]) so that this
//! module stays free of the system clock and its output does not depend on when it ran.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SubjectPublicKeyInfo, PKCS_ECDSA_P256_SHA256,
};

use super::keys::{SigningAlgorithm, SigningMaterial, TrustStore};
use super::ModiError;

/// File names inside the PKI directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const RSA_KEY: &str = "signing-rsa-key.pem";
pub const RSA_CHAIN: &str = "signing-rsa-chain.pem";
pub const EC_KEY: &str = "signing-ec-key.pem";
pub const EC_CHAIN: &str = "signing-ec-chain.pem";

/// Validity window of generated certificates, unix seconds (day precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// 2025-01-01T00:00:00Z to 2040-01-01T00:00:00Z: long enough that a dev setup never
    /// rotates, fixed so that generation needs no clock.
    pub const DEV_DEFAULT: Validity = Validity {
        not_before: 1_735_689_600,
        not_after: 2_208_988_800,
    };
}

/// Paths of a dev PKI on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub rsa_key: PathBuf,
    pub rsa_chain: PathBuf,
    pub ec_key: PathBuf,
    pub ec_chain: PathBuf,
    /// Files written by this call (empty when everything was reused).
    pub created: Vec<PathBuf>,
}

impl DevPki {
    /// The dev CA as a trust store, for the receiving side.
    pub fn trust_store(&self) -> Result<TrustStore, ModiError> {
        TrustStore::from_pem(&read(&self.ca_cert)?)
    }

    /// Signing material for `algorithm` (RSA files for RS256/PS256, EC files for ES256).
    pub fn signing_material(
        &self,
        algorithm: SigningAlgorithm,
    ) -> Result<SigningMaterial, ModiError> {
        let (key, chain) = match algorithm {
            SigningAlgorithm::RS256 | SigningAlgorithm::PS256 => (&self.rsa_key, &self.rsa_chain),
            SigningAlgorithm::ES256 => (&self.ec_key, &self.ec_chain),
        };
        SigningMaterial::from_pem(&read(key)?, &read(chain)?, algorithm)
    }
}

/// Creates (or completes) a dev PKI in `dir` with [`Validity::DEV_DEFAULT`].
///
/// `common_name` names the signing identity (e.g. the comune's e-service host); the CA is
/// called `<common_name> dev CA`. Existing files are kept: a missing leaf is issued by the
/// existing CA; a CA certificate without its key (or the reverse), or a chain without its key,
/// is an error rather than a silent replacement.
pub fn generate_dev_pki(dir: &Path, common_name: &str) -> Result<DevPki, ModiError> {
    generate_dev_pki_with_validity(dir, common_name, Validity::DEV_DEFAULT)
}

/// [`generate_dev_pki`] with an explicit validity window for newly issued certificates.
pub fn generate_dev_pki_with_validity(
    dir: &Path,
    common_name: &str,
    validity: Validity,
) -> Result<DevPki, ModiError> {
    if common_name.trim().is_empty() {
        return Err(ModiError::Pki("empty common name".into()));
    }
    fs::create_dir_all(dir).map_err(|e| ModiError::Pki(format!("{}: {e}", dir.display())))?;
    let path = |name: &str| dir.join(name);
    let mut pki = DevPki {
        dir: dir.to_path_buf(),
        ca_cert: path(CA_CERT),
        ca_key: path(CA_KEY),
        rsa_key: path(RSA_KEY),
        rsa_chain: path(RSA_CHAIN),
        ec_key: path(EC_KEY),
        ec_chain: path(EC_CHAIN),
        created: Vec::new(),
    };

    let (ca_cert_pem, ca_key_pem) = match (pki.ca_cert.exists(), pki.ca_key.exists()) {
        (true, true) => (read_string(&pki.ca_cert)?, read_string(&pki.ca_key)?),
        (false, false) => {
            if let Some(stale) = [&pki.rsa_chain, &pki.ec_chain]
                .into_iter()
                .find(|p| p.exists())
            {
                return Err(ModiError::Pki(format!(
                    "{} was issued by a CA that is no longer here; remove it to re-issue",
                    stale.display()
                )));
            }
            let (cert, key) = issue_ca(&format!("{common_name} dev CA"), validity)?;
            write_new(&pki.ca_key, &key, true)?;
            write_new(&pki.ca_cert, &cert, false)?;
            pki.created
                .extend([pki.ca_key.clone(), pki.ca_cert.clone()]);
            (cert, key)
        }
        _ => {
            return Err(ModiError::Pki(format!(
                "{} and {} must both exist or both be absent",
                pki.ca_cert.display(),
                pki.ca_key.display()
            )))
        }
    };

    for (key_path, chain_path, make_key) in [
        (
            pki.rsa_key.clone(),
            pki.rsa_chain.clone(),
            new_rsa_key as fn() -> Result<String, ModiError>,
        ),
        (pki.ec_key.clone(), pki.ec_chain.clone(), new_ec_key),
    ] {
        let key_pem = if key_path.exists() {
            read_string(&key_path)?
        } else if chain_path.exists() {
            return Err(ModiError::Pki(format!(
                "{} exists without {}",
                chain_path.display(),
                key_path.display()
            )));
        } else {
            let key = make_key()?;
            write_new(&key_path, &key, true)?;
            pki.created.push(key_path.clone());
            key
        };
        if !chain_path.exists() {
            let leaf = issue_leaf(&ca_cert_pem, &ca_key_pem, &key_pem, common_name, validity)?;
            write_new(&chain_path, &format!("{leaf}{ca_cert_pem}"), false)?;
            pki.created.push(chain_path.clone());
        }
    }
    Ok(pki)
}

/// A self-signed CA: P-256 key, `CA:true, pathlen:0`, keyCertSign + cRLSign.
/// Returns (certificate PEM, PKCS#8 key PEM).
pub(crate) fn issue_ca(
    common_name: &str,
    validity: Validity,
) -> Result<(String, String), ModiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(pki_err)?;
    let mut params = base_params(common_name, validity)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).map_err(pki_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A signing certificate for `leaf_key_pem` issued by the CA: digitalSignature only, not a CA.
pub(crate) fn issue_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    leaf_key_pem: &str,
    common_name: &str,
    validity: Validity,
) -> Result<String, ModiError> {
    issue_leaf_with_usages(
        ca_cert_pem,
        ca_key_pem,
        leaf_key_pem,
        common_name,
        validity,
        vec![KeyUsagePurpose::DigitalSignature],
    )
}

/// [`issue_leaf`] with the given keyUsage bits (none: no keyUsage extension), for tests of
/// what a verifier accepts.
pub(crate) fn issue_leaf_with_usages(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    leaf_key_pem: &str,
    common_name: &str,
    validity: Validity,
    key_usages: Vec<KeyUsagePurpose>,
) -> Result<String, ModiError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(pki_err)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(pki_err)?;
    let public_pem = openssl::pkey::PKey::private_key_from_pem(leaf_key_pem.as_bytes())
        .and_then(|k| k.public_key_to_pem())
        .map_err(|e| ModiError::Pki(format!("signing key: {e}")))?;
    let public_pem = String::from_utf8(public_pem).map_err(|e| ModiError::Pki(e.to_string()))?;
    let spki = SubjectPublicKeyInfo::from_pem(&public_pem).map_err(pki_err)?;
    let mut params = base_params(common_name, validity)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = key_usages;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&spki, &issuer).map_err(pki_err)?;
    Ok(cert.pem())
}

/// RSA-2048 key as PKCS#8 PEM (rcgen's default backend cannot generate RSA keys).
pub(crate) fn new_rsa_key() -> Result<String, ModiError> {
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(|e| ModiError::Pki(e.to_string()))?;
    let key = openssl::pkey::PKey::from_rsa(rsa).map_err(|e| ModiError::Pki(e.to_string()))?;
    let pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| ModiError::Pki(e.to_string()))?;
    String::from_utf8(pem).map_err(|e| ModiError::Pki(e.to_string()))
}

/// P-256 key as PKCS#8 PEM.
pub(crate) fn new_ec_key() -> Result<String, ModiError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(pki_err)?
        .serialize_pem())
}

fn base_params(common_name: &str, validity: Validity) -> Result<CertificateParams, ModiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "pdnd-gateway development");
    params.distinguished_name = dn;
    let (y, m, d) = to_date(validity.not_before)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = to_date(validity.not_after)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    // Random serial: two PKIs generated from the same names must not share serials.
    let mut serial = [0u8; 16];
    openssl::rand::rand_bytes(&mut serial).map_err(|e| ModiError::Pki(e.to_string()))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    Ok(params)
}

/// Unix seconds to a date at midnight UTC (days-from-civil inverse, H. Hinnant).
fn to_date(unix: i64) -> Result<(i32, u8, u8), ModiError> {
    let days = unix.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year =
        i32::try_from(year).map_err(|_| ModiError::Pki(format!("year of {unix} out of range")))?;
    if !(1950..=9999).contains(&year) {
        return Err(ModiError::Pki(format!("validity year {year} out of range")));
    }
    // Ranges hold by construction: month in 1..=12, day in 1..=31.
    Ok((year, month as u8, day as u8))
}

fn pki_err(e: rcgen::Error) -> ModiError {
    ModiError::Pki(e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, ModiError> {
    fs::read(path).map_err(|e| ModiError::Pki(format!("{}: {e}", path.display())))
}

fn read_string(path: &Path) -> Result<String, ModiError> {
    fs::read_to_string(path).map_err(|e| ModiError::Pki(format!("{}: {e}", path.display())))
}

/// Writes a file that must not exist yet; private keys get mode 0600.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), ModiError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| ModiError::Pki(format!("{}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| ModiError::Pki(format!("{}: {e}", path.display())))
}
