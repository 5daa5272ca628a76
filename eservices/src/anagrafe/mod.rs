//! The anagrafe e-service (`/anagrafe/v1`): residence, personal details, family, life status.
//!
//! Each operation is its own authorisable unit, so a purpose receives exactly the data category
//! it was granted. [`crate::route`] mounts each operation as its own resource under
//! `/anagrafe/v1`; the gateway puts its pipeline around each.

mod handlers;
pub mod model;

pub use handlers::*;

use crate::problem::Problem;
use utoipa::OpenApi;

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
