//! Domain models the store returns: what the comune knows, independent of wire formats.

use crate::codice_fiscale::Sesso;
use crate::wire::{Importo, Indirizzo, Percentuale};
use chrono::{DateTime, NaiveDate, Utc};

/// A lookup's answer with the time of the data it came from (`dataAggiornamento`).
///
/// The store reads the time in the same statement as the answer's first row, so one lookup is
/// one round trip to the database, and the time cannot come from a refresh other than the one
/// the answer was read from (a separate read could straddle a nightly import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated<T> {
    pub value: T,
    pub data_aggiornamento: DateTime<Utc>,
}

/// A person in the anagrafe (alive, deceased or moved away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persona {
    pub codice_fiscale: String,
    pub cognome: String,
    pub nome: String,
    pub sesso: Sesso,
    pub data_nascita: NaiveDate,
    /// Name of the comune (or foreign state) of birth.
    pub comune_nascita: String,
    /// Its codice catastale (Belfiore), `Z...` for a foreign state.
    pub codice_catastale_nascita: String,
    pub data_decesso: Option<NaiveDate>,
}

/// The address a resident lives at and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residenza {
    pub indirizzo: Indirizzo,
    pub data_decorrenza: NaiveDate,
}

/// A known person's residence status: `None` if not (or no longer) resident in the comune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatoResidenza {
    pub residenza: Option<Residenza>,
}

/// How a family member relates to the head of the family (intestatario scheda).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Relazione {
    Intestatario,
    Coniuge,
    UnitoCivilmente,
    Figlio,
    Genitore,
    Fratello,
    AltroParente,
    Convivente,
}

impl Relazione {
    pub const ALL: [Relazione; 8] = [
        Relazione::Intestatario,
        Relazione::Coniuge,
        Relazione::UnitoCivilmente,
        Relazione::Figlio,
        Relazione::Genitore,
        Relazione::Fratello,
        Relazione::AltroParente,
        Relazione::Convivente,
    ];

    /// The code stored in `persone.relazione_intestatario` (and sent on the wire).
    pub fn code(&self) -> &'static str {
        match self {
            Relazione::Intestatario => "intestatario",
            Relazione::Coniuge => "coniuge",
            Relazione::UnitoCivilmente => "unito-civilmente",
            Relazione::Figlio => "figlio",
            Relazione::Genitore => "genitore",
            Relazione::Fratello => "fratello",
            Relazione::AltroParente => "altro-parente",
            Relazione::Convivente => "convivente",
        }
    }

    pub fn from_code(code: &str) -> Option<Relazione> {
        Relazione::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// A member of a family, as listed in the stato di famiglia.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Componente {
    pub codice_fiscale: String,
    pub cognome: String,
    pub nome: String,
    pub relazione: Relazione,
}

/// A family (famiglia anagrafica): the head first, then the others in registry order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Famiglia {
    pub id_famiglia: String,
    pub componenti: Vec<Componente>,
}

/// A property in the catasto that the contribuente possesses (share `quota`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Immobile {
    pub foglio: String,
    pub particella: String,
    pub subalterno: Option<String>,
    pub categoria: String,
    pub rendita: Importo,
    pub quota: Percentuale,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosizioneImu {
    pub immobili: Vec<Immobile>,
    pub dovuto: Importo,
    pub versato: Importo,
}

/// A TARI utenza (waste tax unit): where, how big, how many occupants, which tariff category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utenza {
    pub indirizzo: Indirizzo,
    pub superficie_mq: i64,
    pub occupanti: i64,
    pub categoria: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scadenza {
    pub rata: i64,
    pub data_scadenza: NaiveDate,
    pub importo: Importo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosizioneTari {
    pub utenze: Vec<Utenza>,
    pub importo: Importo,
    pub pagato: Importo,
    pub scadenze: Vec<Scadenza>,
}

/// Which tax a payment settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum Tributo {
    #[serde(rename = "IMU")]
    Imu,
    #[serde(rename = "TARI")]
    Tari,
}

impl Tributo {
    pub fn code(&self) -> &'static str {
        match self {
            Tributo::Imu => "IMU",
            Tributo::Tari => "TARI",
        }
    }

    pub fn from_code(code: &str) -> Option<Tributo> {
        match code {
            "IMU" => Some(Tributo::Imu),
            "TARI" => Some(Tributo::Tari),
            _ => None,
        }
    }
}

/// A pagoPA payment received for a tax year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pagamento {
    pub iuv: String,
    pub tributo: Tributo,
    pub importo: Importo,
    pub data: NaiveDate,
}
