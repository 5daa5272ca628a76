//! The fixed identities of the development environment.
//!
//! PDND identifiers are UUIDs handed out by the platform; in development the comune plays
//! every part, so they are fixed here (documented in the README) and only the keys and the
//! client id are generated per data directory.

use eservices::Eservice;

/// The PDND consumerId of the sample consumer (another administration).
pub const CONSUMER_ID: &str = "0c5a8f3e-2d41-4b6e-9f70-5e2a1c3b4d01";

/// A purpose the sample client is registered for.
#[derive(Debug, Clone, Copy)]
pub struct SamplePurpose {
    pub purpose_id: &'static str,
    pub eservice: Eservice,
    /// What it is for, printed at start-up.
    pub description: &'static str,
    /// The operation ids it may call; empty means every operation of the e-service.
    pub operations: &'static [&'static str],
}

/// Full access to anagrafe: the default of `pdnd-gateway voucher`.
pub const ANAGRAFE_FULL: SamplePurpose = SamplePurpose {
    purpose_id: "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c01",
    eservice: Eservice::Anagrafe,
    description: "anagrafe, every operation",
    operations: &[],
};

/// Only the minimal residence check.
pub const ANAGRAFE_VERIFICA: SamplePurpose = SamplePurpose {
    purpose_id: "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c02",
    eservice: Eservice::Anagrafe,
    description: "anagrafe, verifica-residenza only",
    operations: &["verifica-residenza"],
};

/// Full access to tributi.
pub const TRIBUTI_FULL: SamplePurpose = SamplePurpose {
    purpose_id: "2f4b7c1d-0a6e-4f3b-8c2d-7e5f9a1b3c03",
    eservice: Eservice::Tributi,
    description: "tributi, every operation",
    operations: &[],
};

/// Every sample purpose.
pub const PURPOSES: [SamplePurpose; 3] = [ANAGRAFE_FULL, ANAGRAFE_VERIFICA, TRIBUTI_FULL];

/// The default purpose for an e-service.
pub fn default_purpose(eservice: Eservice) -> SamplePurpose {
    match eservice {
        Eservice::Anagrafe => ANAGRAFE_FULL,
        Eservice::Tributi => TRIBUTI_FULL,
    }
}
