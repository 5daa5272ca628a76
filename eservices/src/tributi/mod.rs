//! The tributi e-service (`/tributi/v1`): IMU and TARI positions, tax regularity, payments.
//!
//! The subject is a codice fiscale or a partita IVA (`soggetto`). [`crate::route`] mounts each
//! operation as its own resource under `/tributi/v1`; the gateway puts its pipeline around each.

mod handlers;
pub mod model;

pub use handlers::*;

use crate::problem::Problem;
use utoipa::OpenApi;

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
