//! Anagrafe requests and answers on the wire (camelCase). Each answer carries only the fields
//! its operation promises, plus `dataAggiornamento`.

use crate::body::RequestBody;
use crate::codice_fiscale::{CodiceFiscale, Sesso};
use crate::store::Relazione;
use crate::wire::{Indirizzo, IndirizzoRichiesta};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A lookup by codice fiscale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"codiceFiscale": "MRNSFN44C26G702G"}))]
pub struct CodiceFiscaleRequest {
    pub codice_fiscale: CodiceFiscale,
}

impl RequestBody for CodiceFiscaleRequest {
    fn data_subject(&self) -> &str {
        self.codice_fiscale.as_str()
    }
}

/// Whether a person resides at the given address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "codiceFiscale": "MRNSFN44C26G702G",
    "indirizzo": {
        "dug": "VIA",
        "toponimo": "DI CISANELLO",
        "civico": "147",
        "cap": "56121",
        "codiceIstatComune": "050026"
    }
}))]
pub struct VerificaResidenzaRequest {
    pub codice_fiscale: CodiceFiscale,
    pub indirizzo: IndirizzoRichiesta,
}

impl RequestBody for VerificaResidenzaRequest {
    fn data_subject(&self) -> &str {
        self.codice_fiscale.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidenzaResponse {
    /// Whether the person currently resides in the comune.
    pub residente: bool,
    /// The residence address; absent when `residente` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub indirizzo: Option<Indirizzo>,
    /// Since when the person resides at that address; absent when `residente` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false, format = Date, example = "1991-11-24")]
    pub data_decorrenza: Option<NaiveDate>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

/// Place of birth: an Italian comune or a foreign state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LuogoNascita {
    /// Name of the comune, or of the foreign state.
    #[schema(max_length = 100, example = "PISA")]
    pub comune: String,
    /// Codice catastale (Belfiore) of the comune, `Z` + 3 digits for a foreign state.
    #[schema(
        min_length = 4,
        max_length = 4,
        pattern = "^[A-Z][0-9]{3}$",
        example = "G702"
    )]
    pub codice_catastale: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneralitaResponse {
    #[schema(max_length = 100, example = "MARIANI")]
    pub cognome: String,
    #[schema(max_length = 100, example = "STEFANO")]
    pub nome: String,
    pub sesso: Sesso,
    #[schema(value_type = String, format = Date, example = "1944-03-26")]
    pub data_nascita: NaiveDate,
    pub luogo_nascita: LuogoNascita,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponenteFamiglia {
    #[schema(value_type = String, min_length = 11, max_length = 16, example = "MRNSFN44C26G702G")]
    pub codice_fiscale: String,
    #[schema(max_length = 100, example = "MARIANI")]
    pub cognome: String,
    #[schema(max_length = 100, example = "STEFANO")]
    pub nome: String,
    pub relazione_intestatario: Relazione,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatoFamigliaResponse {
    /// The registry's identifier of the family.
    #[schema(max_length = 32, example = "F000000001")]
    pub id_famiglia: String,
    /// The head of the family first.
    #[schema(max_items = 50)]
    pub componenti: Vec<ComponenteFamiglia>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EsistenzaInVitaResponse {
    pub in_vita: bool,
    /// Date of death; absent when `inVita` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false, format = Date, example = "2023-03-08")]
    pub data_decesso: Option<NaiveDate>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificaResidenzaResponse {
    /// True only if the person resides at exactly that address (case and spacing ignored).
    pub corrisponde: bool,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}
