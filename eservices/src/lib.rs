//! The comune's e-services: anagrafe (registry of residents) and tributi (IMU, TARI).
//!
//! This crate knows the domain (codici fiscali, residents, tax positions), how to read it from a
//! store, and how to answer each operation over HTTP. It knows nothing of PDND: by the time a
//! request reaches a handler here, the gateway's pipeline has already validated the voucher and
//! authorised the purpose.

pub mod problem;
