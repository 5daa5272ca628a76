//! Tributi requests and answers on the wire (camelCase). Amounts are euro as JSON numbers with
//! at most two decimals; each answer carries only what its operation promises, plus
//! `dataAggiornamento`.

use crate::body::RequestBody;
use crate::codice_fiscale::Soggetto;
use crate::store::Tributo;
use crate::wire::{Anno, Importo, Indirizzo, Percentuale};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A lookup for a subject and a tax year.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoggettoAnnoRequest {
    pub soggetto: Soggetto,
    #[schema(value_type = i32, minimum = 1993, maximum = 2100, example = 2024)]
    pub anno: Anno,
}

impl RequestBody for SoggettoAnnoRequest {
    fn data_subject(&self) -> &str {
        self.soggetto.as_str()
    }
}

/// A lookup for a subject.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoggettoRequest {
    pub soggetto: Soggetto,
}

impl RequestBody for SoggettoRequest {
    fn data_subject(&self) -> &str {
        self.soggetto.as_str()
    }
}

/// A property in the catasto and the share the subject possesses.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmobileImu {
    #[schema(max_length = 8, example = "12")]
    pub foglio: String,
    #[schema(max_length = 16, example = "345")]
    pub particella: String,
    /// Absent when the unit has no subalterno.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 8, example = "3")]
    pub subalterno: Option<String>,
    /// Catasto category (`A/2`, `C/6`, `D/1`, ...).
    #[schema(max_length = 8, example = "A/2")]
    pub categoria: String,
    /// Rendita catastale in euro.
    #[schema(value_type = f64, minimum = 0, multiple_of = 0.01, example = 812.34)]
    pub rendita: Importo,
    /// Share of possession in percent.
    #[schema(value_type = f64, minimum = 0, maximum = 100, multiple_of = 0.01, example = 50)]
    pub quota: Percentuale,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImuPosizioneResponse {
    #[schema(max_items = 500)]
    pub immobili: Vec<ImmobileImu>,
    /// IMU due for the year, in euro.
    #[schema(value_type = f64, multiple_of = 0.01, example = 1234.5)]
    pub dovuto: Importo,
    /// IMU paid for the year, in euro.
    #[schema(value_type = f64, multiple_of = 0.01, example = 617.25)]
    pub versato: Importo,
    /// `dovuto - versato`: positive means still owed.
    #[schema(value_type = f64, multiple_of = 0.01, example = 617.25)]
    pub saldo: Importo,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtenzaTari {
    pub indirizzo: Indirizzo,
    #[schema(minimum = 0, maximum = 1000000, example = 95)]
    pub superficie_mq: i64,
    /// Occupants (0 for non-domestic utenze).
    #[schema(minimum = 0, maximum = 1000, example = 3)]
    pub occupanti: i64,
    /// Tariff category (`DOM-n` domestic with n occupants, `ND-xx` non-domestic).
    #[schema(max_length = 64, example = "DOM-3")]
    pub categoria: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScadenzaTari {
    #[schema(minimum = 1, maximum = 24, example = 1)]
    pub rata: i64,
    #[schema(value_type = String, format = Date, example = "2024-05-31")]
    pub data_scadenza: NaiveDate,
    #[schema(value_type = f64, multiple_of = 0.01, example = 120.5)]
    pub importo: Importo,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TariPosizioneResponse {
    #[schema(max_items = 100)]
    pub utenze: Vec<UtenzaTari>,
    /// TARI due for the year, in euro.
    #[schema(value_type = f64, multiple_of = 0.01, example = 241.0)]
    pub importo: Importo,
    /// TARI paid for the year, in euro.
    #[schema(value_type = f64, multiple_of = 0.01, example = 120.5)]
    pub pagato: Importo,
    #[schema(max_items = 24)]
    pub scadenze: Vec<ScadenzaTari>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegolaritaResponse {
    /// True when no IMU or TARI year has an unpaid balance.
    pub regolare: bool,
    /// Years with an unpaid balance, ascending.
    #[schema(max_items = 108, example = json!([2023]))]
    pub anni_con_debito_aperto: Vec<u16>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagamentoPagoPa {
    /// Identificativo Univoco di Versamento of the pagoPA payment.
    #[schema(max_length = 35, example = "01100000000004255")]
    pub iuv: String,
    pub tributo: Tributo,
    #[schema(value_type = f64, multiple_of = 0.01, example = 617.25)]
    pub importo: Importo,
    #[schema(value_type = String, format = Date, example = "2024-12-16")]
    pub data: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagamentiResponse {
    #[schema(max_items = 500)]
    pub pagamenti: Vec<PagamentoPagoPa>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}
