//! The anagrafe e-service (`/anagrafe/v1`): residence, personal details, family, life status.
//!
//! Each operation is its own authorisable unit, so a purpose receives exactly the data category
//! it was granted. [`routes`] registers the operations relative to the e-service base; the
//! gateway mounts them under `web::scope("/anagrafe/v1")` behind its voucher check.

mod handlers;
pub mod model;

pub use handlers::*;

use crate::problem::Problem;
use actix_web::web;
use utoipa::OpenApi;

/// Registers the anagrafe operations (relative paths), each at its own resource with its routing
/// decision recorded first (see [`crate::route`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::route::routes(crate::Eservice::Anagrafe)(cfg)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Anagrafe",
        version = "1.0.0",
        description = "Registry of residents of the comune: residence, personal details, family and life status, one operation per data category."
    ),
    paths(residenza, generalita, stato_famiglia, esistenza_in_vita, verifica_residenza),
    components(schemas(
        model::CodiceFiscaleRequest,
        model::VerificaResidenzaRequest,
        model::ResidenzaResponse,
        model::GeneralitaResponse,
        model::LuogoNascita,
        model::StatoFamigliaResponse,
        model::ComponenteFamiglia,
        model::EsistenzaInVitaResponse,
        model::VerificaResidenzaResponse,
        crate::wire::Indirizzo,
        crate::wire::IndirizzoRichiesta,
        crate::store::Relazione,
        crate::codice_fiscale::Sesso,
        crate::codice_fiscale::CodiceFiscale,
        Problem
    )),
    tags((name = "anagrafe", description = "Registry of residents"))
)]
struct AnagrafeApi;

/// The OpenAPI document of the anagrafe e-service (paths relative to its base).
pub fn openapi() -> utoipa::openapi::OpenApi {
    AnagrafeApi::openapi()
}
