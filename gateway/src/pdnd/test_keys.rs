//! RSA keys shared by the unit tests of this module tree, generated once per test binary so
//! that the many tests stay fast on small machines.

use std::sync::OnceLock;

use super::jwk::RsaPrivateKey;

fn cached(cell: &'static OnceLock<RsaPrivateKey>) -> &'static RsaPrivateKey {
    cell.get_or_init(|| RsaPrivateKey::generate().expect("RSA-2048 generation works in tests"))
}

/// The key of the registered consumer client.
pub fn client() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    cached(&KEY)
}

/// The voucher-signing key of the development authority.
pub fn authority() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    cached(&KEY)
}

/// A key nobody registered or published.
pub fn stranger() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    cached(&KEY)
}
