//! Value types shared by the two e-services' requests and answers.
//!
//! Request fields validate themselves while they deserialise (a bounded string over its bound,
//! a year out of range, a CAP that is not five digits never reach a handler), so the 400 detail
//! can name the field. Amounts travel as JSON numbers in euro with two decimals, computed from
//! integer cents, so no rounding happens in the product.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use utoipa::ToSchema;

/// A string of at most `N` characters, trimmed, not empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text<const N: usize>(String);

impl<const N: usize> Text<N> {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let found = t.chars().count();
        if found == 0 {
            return Err("must not be empty".to_owned());
        }
        if found > N {
            return Err(format!("must be at most {N} characters, found {found}"));
        }
        if t.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(Text(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Serialize for Text<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Text<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Text::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Exactly `N` decimal digits (CAP, codice ISTAT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digits<const N: usize>(String);

impl<const N: usize> Digits<N> {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.len() != N || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("must be exactly {N} digits"));
        }
        Ok(Digits(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> Serialize for Digits<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Digits<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Digits::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// First and last tax year the tributi e-service answers for (IMU exists since 2012, ICI from
/// 1993 onwards is accepted for historical archives).
pub const ANNO_MIN: u16 = 1993;
pub const ANNO_MAX: u16 = 2100;

/// A tax year within [`ANNO_MIN`]..=[`ANNO_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Anno(u16);

impl Anno {
    pub fn new(anno: i64) -> Result<Self, String> {
        u16::try_from(anno)
            .ok()
            .filter(|a| (ANNO_MIN..=ANNO_MAX).contains(a))
            .map(Anno)
            .ok_or_else(|| format!("must be a year between {ANNO_MIN} and {ANNO_MAX}"))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Anno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Anno::new(n).map_err(serde::de::Error::custom)
    }
}

/// An amount in euro, held as integer cents, serialised as a number with at most two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Importo(pub i64);

impl Importo {
    pub fn cents(self) -> i64 {
        self.0
    }
}

fn hundredths_to_f64(v: i64) -> f64 {
    // Exact for every amount below 2^53 cents; the shortest representation then prints at
    // most two decimals.
    v as f64 / 100.0
}

impl Serialize for Importo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(hundredths_to_f64(self.0))
    }
}

impl fmt::Display for Importo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, (self.0 % 100).abs())
    }
}

/// A share of ownership in percent, held as hundredths of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Percentuale(pub i64);

impl Serialize for Percentuale {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(hundredths_to_f64(self.0))
    }
}

/// A street address in the comune, as the anagrafe records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Indirizzo {
    /// Denominazione urbanistica generica (VIA, PIAZZA, VIALE, ...).
    #[schema(max_length = 32, example = "VIA")]
    pub dug: String,
    /// The street name without its DUG.
    #[schema(max_length = 100, example = "DI CISANELLO")]
    pub toponimo: String,
    /// House number with its optional suffix (`12`, `12/B`).
    #[schema(max_length = 16, example = "147")]
    pub civico: String,
    #[schema(
        min_length = 5,
        max_length = 5,
        pattern = "^[0-9]{5}$",
        example = "56121"
    )]
    pub cap: String,
    /// Six-digit ISTAT code of the comune.
    #[schema(
        min_length = 6,
        max_length = 6,
        pattern = "^[0-9]{6}$",
        example = "050026"
    )]
    pub codice_istat_comune: String,
}

/// An address given by a caller to be checked against the anagrafe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndirizzoRichiesta {
    /// The DUG (VIA, PIAZZA...). Compared after trimming; control characters are refused (the
    /// pattern says as much of it as a pattern can).
    #[schema(value_type = String, min_length = 1, max_length = 32, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$", example = "VIA")]
    pub dug: Text<32>,
    /// The street name without its DUG. Compared after trimming; control characters are
    /// refused.
    #[schema(value_type = String, min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$", example = "DI CISANELLO")]
    pub toponimo: Text<100>,
    /// The house number. Compared after trimming; control characters are refused.
    #[schema(value_type = String, min_length = 1, max_length = 16, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$", example = "147")]
    pub civico: Text<16>,
    #[schema(value_type = String, min_length = 5, max_length = 5, pattern = "^[0-9]{5}$", example = "56121")]
    pub cap: Digits<5>,
    #[schema(value_type = String, min_length = 6, max_length = 6, pattern = "^[0-9]{6}$", example = "050026")]
    pub codice_istat_comune: Digits<6>,
}

/// Upper case, single spaces: how two spellings of the same address compare equal.
pub fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

impl IndirizzoRichiesta {
    /// Whether this is the same address as `stored`, ignoring case and spacing.
    pub fn matches(&self, stored: &Indirizzo) -> bool {
        normalise(self.dug.as_str()) == normalise(&stored.dug)
            && normalise(self.toponimo.as_str()) == normalise(&stored.toponimo)
            && normalise(self.civico.as_str()) == normalise(&stored.civico)
            && self.cap.as_str() == stored.cap
            && self.codice_istat_comune.as_str() == stored.codice_istat_comune
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_serialise_as_euro_numbers() {
        assert_eq!(serde_json::to_string(&Importo(12345)).unwrap(), "123.45");
        assert_eq!(serde_json::to_string(&Importo(100)).unwrap(), "1.0");
        assert_eq!(serde_json::to_string(&Importo(-5)).unwrap(), "-0.05");
        assert_eq!(
            serde_json::to_string(&Importo(99_999_999_999)).unwrap(),
            "999999999.99"
        );
        assert_eq!(Importo(12305).to_string(), "123.05");
        assert_eq!(serde_json::to_string(&Percentuale(3333)).unwrap(), "33.33");
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(serde_json::from_str::<Text<3>>("\"abc\"").is_ok());
        assert!(serde_json::from_str::<Text<3>>("\"abcd\"").is_err());
        assert!(serde_json::from_str::<Text<3>>("\"  \"").is_err());
        assert!(serde_json::from_str::<Digits<5>>("\"56125\"").is_ok());
        assert!(serde_json::from_str::<Digits<5>>("\"5612A\"").is_err());
        assert!(serde_json::from_str::<Anno>("2024").is_ok());
        assert!(serde_json::from_str::<Anno>("1992").is_err());
        assert!(serde_json::from_str::<Anno>("2101").is_err());
        assert!(serde_json::from_str::<Anno>("-1").is_err());
        assert!(serde_json::from_str::<Anno>("\"2024\"").is_err());
    }

    #[test]
    fn address_matching_ignores_case_and_spacing() {
        let stored = Indirizzo {
            dug: "VIA".into(),
            toponimo: "GIUSEPPE GARIBALDI".into(),
            civico: "12".into(),
            cap: "56125".into(),
            codice_istat_comune: "050026".into(),
        };
        let mut req: IndirizzoRichiesta = serde_json::from_value(serde_json::json!({
            "dug": "via", "toponimo": "Giuseppe  Garibaldi", "civico": "12",
            "cap": "56125", "codiceIstatComune": "050026"
        }))
        .unwrap();
        assert!(req.matches(&stored));
        req.civico = Text::parse("13").unwrap();
        assert!(!req.matches(&stored));
    }
}
