//! The comune's e-services: anagrafe (registry of residents) and tributi (IMU, TARI).
//!
//! This crate knows the domain (codici fiscali, residents, tax positions), how to read it from a
//! store, and how to answer each operation over HTTP. It knows nothing of PDND: by the time a
//! request reaches a handler here, the gateway's pipeline has already validated the voucher and
//! authorised the purpose. The gateway mounts each operation ([`route`]) under
//! each e-service's base path and registers an [`EserviceState`] and [`json_config`].

pub mod anagrafe;
pub mod body;
pub mod cache;
pub mod codice_fiscale;
mod handler;
pub use handler::{CACHE_HIT, CACHE_STATUS};
pub mod problem;
pub mod route;
pub mod store;
pub mod tributi;
pub mod wire;

pub use body::{json_config, BodyReadDeadline, ValidJson, MAX_BODY_BYTES};
pub use cache::{CacheConfig, EserviceState};
pub use codice_fiscale::{CodiceFiscale, IdentifierError, PartitaIva, Soggetto};

/// An e-service of the catalogue; each is published on PDND separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Eservice {
    Anagrafe,
    Tributi,
}

impl Eservice {
    /// The stable id used in configuration, purposes and metrics.
    pub fn id(&self) -> &'static str {
        match self {
            Eservice::Anagrafe => "anagrafe",
            Eservice::Tributi => "tributi",
        }
    }

    /// Where the gateway mounts the e-service (the version is part of the contract).
    pub fn base_path(&self) -> &'static str {
        match self {
            Eservice::Anagrafe => "/anagrafe/v1",
            Eservice::Tributi => "/tributi/v1",
        }
    }

    pub fn all() -> &'static [Eservice] {
        &[Eservice::Anagrafe, Eservice::Tributi]
    }
}

/// One operation of the catalogue: the unit a purpose is authorised for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Residenza,
    Generalita,
    StatoFamiglia,
    EsistenzaInVita,
    VerificaResidenza,
    ImuPosizione,
    TariPosizione,
    Regolarita,
    Pagamenti,
}

impl Operation {
    /// The stable id used in purposes, audit records and metrics.
    pub fn id(&self) -> &'static str {
        match self {
            Operation::Residenza => "residenza",
            Operation::Generalita => "generalita",
            Operation::StatoFamiglia => "stato-famiglia",
            Operation::EsistenzaInVita => "esistenza-in-vita",
            Operation::VerificaResidenza => "verifica-residenza",
            Operation::ImuPosizione => "imu-posizione",
            Operation::TariPosizione => "tari-posizione",
            Operation::Regolarita => "regolarita",
            Operation::Pagamenti => "pagamenti",
        }
    }

    pub fn eservice(&self) -> Eservice {
        match self {
            Operation::Residenza
            | Operation::Generalita
            | Operation::StatoFamiglia
            | Operation::EsistenzaInVita
            | Operation::VerificaResidenza => Eservice::Anagrafe,
            Operation::ImuPosizione
            | Operation::TariPosizione
            | Operation::Regolarita
            | Operation::Pagamenti => Eservice::Tributi,
        }
    }

    /// The path relative to the e-service base (`/anagrafe/v1`, `/tributi/v1`).
    pub fn path(&self) -> &'static str {
        match self {
            Operation::Residenza => "/residenza",
            Operation::Generalita => "/generalita",
            Operation::StatoFamiglia => "/stato-famiglia",
            Operation::EsistenzaInVita => "/esistenza-in-vita",
            Operation::VerificaResidenza => "/verifica-residenza",
            Operation::ImuPosizione => "/imu/posizione",
            Operation::TariPosizione => "/tari/posizione",
            Operation::Regolarita => "/regolarita",
            Operation::Pagamenti => "/pagamenti",
        }
    }

    pub fn all() -> &'static [Operation] {
        &[
            Operation::Residenza,
            Operation::Generalita,
            Operation::StatoFamiglia,
            Operation::EsistenzaInVita,
            Operation::VerificaResidenza,
            Operation::ImuPosizione,
            Operation::TariPosizione,
            Operation::Regolarita,
            Operation::Pagamenti,
        ]
    }

    /// The operation with this id.
    pub fn from_id(id: &str) -> Option<Operation> {
        Operation::all().iter().copied().find(|op| op.id() == id)
    }
}

/// The identifier of the person or body a request is about (codice fiscale or partita IVA).
///
/// Every handler puts it in the request extensions as soon as the body has parsed, so the
/// gateway's audit stage can record a hash of it. It is personal data: never log it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct DataSubject(pub String);

impl std::fmt::Debug for DataSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataSubject(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for op in Operation::all() {
            assert_eq!(Operation::from_id(op.id()), Some(*op));
        }
        assert_eq!(Operation::all().len(), 9);
    }

    #[test]
    fn data_subject_debug_is_redacted() {
        let s = DataSubject("RSSMRA85T10A562S".into());
        assert!(!format!("{s:?}").contains("RSS"));
    }
}
