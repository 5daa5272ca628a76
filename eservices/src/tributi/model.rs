//! Tributi requests and answers on the wire (camelCase). Amounts are euro as JSON numbers with
//! at most two decimals; each answer carries only what its operation promises, plus
//! `dataAggiornamento`.
//!
//! The schemas state the two decimals in words, not as `multipleOf: 0.01`: a binary double
//! such as 0.29 is not an exact multiple of 0.01, so validators would reject correct amounts.
//! The examples are a real subject of the development sample (the company 10000070507 in 2024).

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
#[schema(example = json!({"soggetto": "10000070507", "anno": 2024}))]
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
#[schema(example = json!({"soggetto": "10000070507"}))]
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
    #[schema(max_length = 8, example = "57")]
    pub foglio: String,
    #[schema(max_length = 16, example = "438")]
    pub particella: String,
    /// Absent when the unit has no subalterno.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 8, example = "53")]
    pub subalterno: Option<String>,
    /// Catasto category (`A/2`, `C/6`, `D/1`, ...).
    #[schema(max_length = 8, example = "D/1")]
    pub categoria: String,
    /// Rendita catastale in euro (at most two decimals).
    #[schema(value_type = f64, minimum = 0, example = 8826.68)]
    pub rendita: Importo,
    /// Share of possession in percent (at most two decimals).
    #[schema(value_type = f64, minimum = 0, maximum = 100, example = 100)]
    pub quota: Percentuale,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImuPosizioneResponse {
    #[schema(max_items = 500)]
    pub immobili: Vec<ImmobileImu>,
    /// IMU due for the year, in euro (at most two decimals).
    #[schema(value_type = f64, example = 6973.84)]
    pub dovuto: Importo,
    /// IMU paid for the year, in euro (at most two decimals).
    #[schema(value_type = f64, example = 6973.84)]
    pub versato: Importo,
    /// `dovuto - versato` in euro: positive means still owed, negative paid in excess.
    #[schema(value_type = f64, example = 0)]
    pub saldo: Importo,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtenzaTari {
    pub indirizzo: Indirizzo,
    #[schema(minimum = 0, maximum = 1000000, example = 1011)]
    pub superficie_mq: i64,
    /// Occupants (0 for non-domestic utenze).
    #[schema(minimum = 0, maximum = 1000, example = 0)]
    pub occupanti: i64,
    /// Tariff category (`DOM-n` domestic with n occupants, `ND-xx` non-domestic).
    #[schema(max_length = 64, example = "ND-16 BANCHI DI MERCATO")]
    pub categoria: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScadenzaTari {
    #[schema(minimum = 1, maximum = 24, example = 1)]
    pub rata: i64,
    #[schema(value_type = String, format = Date, example = "2024-05-31")]
    pub data_scadenza: NaiveDate,
    /// The instalment in euro (at most two decimals).
    #[schema(value_type = f64, example = 677.15)]
    pub importo: Importo,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TariPosizioneResponse {
    #[schema(max_items = 100)]
    pub utenze: Vec<UtenzaTari>,
    /// TARI due for the year, in euro (at most two decimals).
    #[schema(value_type = f64, example = 1354.3)]
    pub importo: Importo,
    /// TARI paid for the year, in euro (at most two decimals).
    #[schema(value_type = f64, example = 1354.3)]
    pub pagato: Importo,
    #[schema(max_items = 24)]
    pub scadenze: Vec<ScadenzaTari>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

/// Tax years as a bounded array of bounded integers (every year the e-service answers for).
fn anni_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(crate::wire::ANNO_MIN))
                .maximum(Some(crate::wire::ANNO_MAX)),
        )
        .min_items(Some(0))
        .max_items(Some(
            usize::from(crate::wire::ANNO_MAX - crate::wire::ANNO_MIN) + 1,
        ))
        .description(Some("Years with an unpaid balance, ascending."))
        .build()
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegolaritaResponse {
    /// True when no IMU or TARI year has an unpaid balance.
    pub regolare: bool,
    /// Years with an unpaid balance, ascending.
    #[schema(schema_with = anni_schema, example = json!([2025]))]
    pub anni_con_debito_aperto: Vec<u16>,
    #[schema(value_type = String, format = DateTime, example = "2025-06-01T02:00:00Z")]
    pub data_aggiornamento: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagamentoPagoPa {
    /// Identificativo Univoco di Versamento of the pagoPA payment.
    #[schema(max_length = 35, example = "01100000000001360")]
    pub iuv: String,
    pub tributo: Tributo,
    /// The amount paid in euro (at most two decimals).
    #[schema(value_type = f64, example = 6973.84)]
    pub importo: Importo,
    #[schema(value_type = String, format = Date, example = "2024-12-11")]
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
