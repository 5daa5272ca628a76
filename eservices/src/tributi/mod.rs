//! The tributi e-service (`/tributi/v1`): IMU and TARI positions, tax regularity, payments.
//!
//! The subject is a codice fiscale or a partita IVA (`soggetto`). [`routes`] registers the
//! operations relative to the e-service base; the gateway mounts them under
//! `web::scope("/tributi/v1")` behind its voucher check.

mod handlers;
pub mod model;

pub use handlers::*;

use crate::problem::Problem;
use actix_web::web;
use utoipa::OpenApi;

/// Registers the tributi operations (relative paths), each at its own resource with its routing
/// decision recorded first (see [`crate::route`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::route::routes(crate::Eservice::Tributi)(cfg)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributi",
        version = "1.0.0",
        description = "Local taxes of the comune (IMU, TARI): positions by year, regularity, pagoPA payments."
    ),
    paths(imu_posizione, tari_posizione, regolarita, pagamenti),
    components(schemas(
        model::SoggettoAnnoRequest,
        model::SoggettoRequest,
        model::ImuPosizioneResponse,
        model::ImmobileImu,
        model::TariPosizioneResponse,
        model::UtenzaTari,
        model::ScadenzaTari,
        model::RegolaritaResponse,
        model::PagamentiResponse,
        model::PagamentoPagoPa,
        crate::wire::Indirizzo,
        crate::store::Tributo,
        crate::codice_fiscale::Soggetto,
        Problem
    )),
    tags((name = "tributi", description = "Local taxes"))
)]
struct TributiApi;

/// The OpenAPI document of the tributi e-service (paths relative to its base).
pub fn openapi() -> utoipa::openapi::OpenApi {
    TributiApi::openapi()
}
