//! PDND tracing: the daily file of the calls the comune served and made, deposited on PDND's
//! tracing e-service.
//!
//! PDND requires every administration that provides or consumes e-services to deposit, every
//! day, a CSV of the previous day's calls per purpose, HTTP status and voucher; a day without
//! a file is marked MISSING and must be recovered. The audit trail already holds every call, so
//! the file is computed from it ([`csv`]), sent by [`client`], and [`sync`] decides what to
//! submit, recover or replace and records every deposit ([`store`]). [`lock`] keeps replicas
//! that run the sync themselves (`[tracing] run_in_serve`) from doing it at the same moment.
//!
//! (Not called `tracing`: that name is the logging crate's.)

pub mod client;
pub mod csv;
pub mod lock;
pub mod store;
pub mod sync;
