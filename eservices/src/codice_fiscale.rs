//! Italian personal and fiscal identifiers: codice fiscale and partita IVA.
//!
//! Every lookup of the catalogue is keyed by one of these, so they are validated once, at the
//! edge (deserialisation), and a value of these types exists only when its structure and check
//! character are right. Handlers and stores never re-check them. The module also holds the
//! generator the synthetic sample uses, so seeded identifiers follow the same rules the
//! validator enforces (including omocodia).
//!
//! Rules implemented (Agenzia delle Entrate, DM 23/12/1976):
//! - personal codice fiscale, 16 characters: 3 letters cognome, 3 letters nome, 2 digits year,
//!   1 letter month (`ABCDEHLMPRST`), 2 digits day (+40 for women), 4 characters Belfiore code of
//!   the place of birth (letter + 3 digits), 1 check letter. In omocodia the digits at positions
//!   7, 8, 10, 11, 13, 14, 15 (1-based) may be replaced, right to left, by `LMNPQRSTUV`.
//! - numeric codice fiscale / partita IVA, 11 digits, last one a Luhn-like check digit.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::{schema, ObjectBuilder, RefOr, Schema, Type};

/// Why a string is not a valid identifier. Positions are 1-based, as a person reads them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("must be {expected} characters long, found {found}")]
    Length {
        expected: &'static str,
        found: usize,
    },
    #[error("character at position {position} must be {expected}")]
    Character {
        position: usize,
        expected: &'static str,
    },
    #[error("the day of birth at positions 10-11 is out of range")]
    DayOfBirth,
    #[error("wrong check character at position {position}")]
    CheckCharacter { position: usize },
    #[error("a partita IVA cannot be all zeros")]
    AllZeros,
    #[error("invalid personal data for a codice fiscale: {0}")]
    PersonalData(&'static str),
}

/// Month letters, January to December.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
/// Omocodia substitutes for the digits 0..=9.
const OMOCODES: &[u8; 10] = b"LMNPQRSTUV";
/// The digit positions (0-based) of a personal codice fiscale, in the order omocodia replaces
/// them (right to left).
const OMOCODE_POSITIONS: [usize; 7] = [14, 13, 12, 10, 9, 7, 6];
/// Values of characters in odd (1-based) positions, indexed by digit 0-9 then letter A-Z.
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// The two kinds of the personal/numeric distinction, decided by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Personal,
    Numeric,
}

/// A valid codice fiscale: the 16-character personal form (upper case) or the 11-digit numeric
/// form that companies and bodies have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodiceFiscale(String);

/// A valid partita IVA: 11 digits with the check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitaIva(String);

/// The subject of a tributi lookup: a person or body by codice fiscale, or a business by
/// partita IVA. On the wire it is one string; 16 characters make a codice fiscale, 11 digits a
/// partita IVA (which, for a body, is also its numeric codice fiscale).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Soggetto {
    CodiceFiscale(CodiceFiscale),
    PartitaIva(PartitaIva),
}

/// Sex as recorded in the anagrafe, which the codice fiscale encodes in the day of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Sesso {
    M,
    F,
}

impl Sesso {
    pub fn as_str(&self) -> &'static str {
        match self {
            Sesso::M => "M",
            Sesso::F => "F",
        }
    }
}

impl FromStr for Sesso {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "M" => Ok(Sesso::M),
            "F" => Ok(Sesso::F),
            _ => Err(IdentifierError::PersonalData("sesso must be M or F")),
        }
    }
}

fn char_value_odd(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => ODD_VALUES[usize::from(c - b'0')],
        b'A'..=b'Z' => ODD_VALUES[usize::from(c - b'A')],
        _ => 0,
    }
}

fn char_value_even(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A'..=b'Z' => u32::from(c - b'A'),
        _ => 0,
    }
}

/// The check character of a personal codice fiscale from its first 15 characters (upper case
/// letters and digits); `None` if `first15` is not 15 such characters.
pub fn compute_check_char(first15: &str) -> Option<char> {
    let bytes = first15.as_bytes();
    if bytes.len() != 15
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return None;
    }
    let sum: u32 = bytes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            // Positions are counted from 1: index 0 is an odd position.
            if i % 2 == 0 {
                char_value_odd(c)
            } else {
                char_value_even(c)
            }
        })
        .sum();
    let offset = u8::try_from(sum % 26).expect("a value modulo 26 fits in a byte");
    Some(char::from(b'A' + offset))
}

/// The check digit of an 11-digit partita IVA / numeric codice fiscale from its first 10
/// digits; `None` if `first10` is not 10 digits.
pub fn compute_check_digit(first10: &str) -> Option<char> {
    let bytes = first10.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = bytes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 {
                d
            } else {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            }
        })
        .sum();
    let check = u8::try_from((10 - sum % 10) % 10).expect("a digit fits in a byte");
    Some(char::from(b'0' + check))
}

fn is_digit_or_omocode(c: u8) -> bool {
    c.is_ascii_digit() || OMOCODES.contains(&c)
}

/// The digit an omocodia position stands for.
fn decode_digit(c: u8) -> u8 {
    if c.is_ascii_digit() {
        c - b'0'
    } else {
        OMOCODES
            .iter()
            .position(|&o| o == c)
            .and_then(|p| u8::try_from(p).ok())
            .unwrap_or(0)
    }
}

fn validate_personal(s: &str) -> Result<(), IdentifierError> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let position = i + 1;
        let ok = match i {
            0..=5 | 11 | 15 => c.is_ascii_uppercase(),
            8 => MONTHS.contains(&c),
            _ => is_digit_or_omocode(c),
        };
        if !ok {
            let expected = match i {
                0..=5 | 11 | 15 => "a letter",
                8 => "a month letter (ABCDEHLMPRST)",
                _ => "a digit or an omocodia letter (LMNPQRSTUV)",
            };
            return Err(IdentifierError::Character { position, expected });
        }
    }
    let day = decode_digit(b[9]) * 10 + decode_digit(b[10]);
    if !(1..=31).contains(&day) && !(41..=71).contains(&day) {
        return Err(IdentifierError::DayOfBirth);
    }
    let expected =
        compute_check_char(&s[..15]).ok_or(IdentifierError::CheckCharacter { position: 16 })?;
    if char::from(b[15]) != expected {
        return Err(IdentifierError::CheckCharacter { position: 16 });
    }
    Ok(())
}

fn validate_numeric(s: &str) -> Result<(), IdentifierError> {
    if let Some(i) = s.bytes().position(|c| !c.is_ascii_digit()) {
        return Err(IdentifierError::Character {
            position: i + 1,
            expected: "a digit",
        });
    }
    if s.bytes().all(|c| c == b'0') {
        return Err(IdentifierError::AllZeros);
    }
    let expected =
        compute_check_digit(&s[..10]).ok_or(IdentifierError::CheckCharacter { position: 11 })?;
    if s.as_bytes()[10] != expected as u8 {
        return Err(IdentifierError::CheckCharacter { position: 11 });
    }
    Ok(())
}

fn kind_of(len: usize) -> Result<Kind, IdentifierError> {
    match len {
        16 => Ok(Kind::Personal),
        11 => Ok(Kind::Numeric),
        found => Err(IdentifierError::Length {
            expected: "16 (personal) or 11 (numeric)",
            found,
        }),
    }
}

impl CodiceFiscale {
    /// Validates and normalises (upper case) a codice fiscale.
    pub fn parse(input: &str) -> Result<Self, IdentifierError> {
        let trimmed = input.trim();
        let kind = kind_of(trimmed.chars().count())?;
        match kind {
            Kind::Personal => {
                let upper = trimmed.to_ascii_uppercase();
                if !upper.is_ascii() {
                    let position = upper
                        .chars()
                        .position(|c| !c.is_ascii())
                        .map_or(1, |p| p + 1);
                    return Err(IdentifierError::Character {
                        position,
                        expected: "an ASCII letter or digit",
                    });
                }
                validate_personal(&upper)?;
                Ok(CodiceFiscale(upper))
            }
            Kind::Numeric => {
                validate_numeric(trimmed)?;
                Ok(CodiceFiscale(trimmed.to_owned()))
            }
        }
    }

    /// The codice fiscale as its canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the 16-character personal form.
    pub fn is_personal(&self) -> bool {
        self.0.len() == 16
    }

    /// Computes the codice fiscale of a person from the data it encodes.
    ///
    /// `codice_belfiore` is the cadastral code of the comune (or `Z...` for the foreign state) of
    /// birth. Homonyms get the same code: the issuer then applies [`CodiceFiscale::omocode`].
    pub fn from_personal_data(
        cognome: &str,
        nome: &str,
        sesso: Sesso,
        data_nascita: NaiveDate,
        codice_belfiore: &str,
    ) -> Result<Self, IdentifierError> {
        let belfiore = codice_belfiore.trim().to_ascii_uppercase();
        let bb = belfiore.as_bytes();
        if bb.len() != 4 || !bb[0].is_ascii_uppercase() || !bb[1..].iter().all(u8::is_ascii_digit) {
            return Err(IdentifierError::PersonalData(
                "codice Belfiore must be a letter and three digits",
            ));
        }
        let mut code = String::with_capacity(16);
        code.push_str(&surname_code(cognome));
        code.push_str(&name_code(nome));
        let year = data_nascita.year().rem_euclid(100);
        code.push_str(&format!("{year:02}"));
        let month = usize::try_from(data_nascita.month0()).expect("month0 is 0..=11");
        code.push(char::from(MONTHS[month]));
        let day = data_nascita.day()
            + match sesso {
                Sesso::M => 0,
                Sesso::F => 40,
            };
        code.push_str(&format!("{day:02}"));
        code.push_str(&belfiore);
        let check = compute_check_char(&code)
            .ok_or(IdentifierError::PersonalData("names must contain letters"))?;
        code.push(check);
        CodiceFiscale::parse(&code)
    }

    /// The omocodia variant of level `level` (1..=7): the last `level` digit positions replaced
    /// by their letters, and the check character recomputed. `None` for the numeric form or a
    /// level out of range.
    pub fn omocode(&self, level: usize) -> Option<CodiceFiscale> {
        if !self.is_personal() || !(1..=OMOCODE_POSITIONS.len()).contains(&level) {
            return None;
        }
        let mut bytes = self.0.as_bytes().to_vec();
        for &pos in &OMOCODE_POSITIONS[..level] {
            let digit = decode_digit(bytes[pos]);
            bytes[pos] = OMOCODES[usize::from(digit)];
        }
        let first15 = std::str::from_utf8(&bytes[..15]).ok()?.to_owned();
        let check = compute_check_char(&first15)?;
        CodiceFiscale::parse(&format!("{first15}{check}")).ok()
    }
}

/// Consonants of a name, upper case, ASCII letters only (accents folded to their base letter).
fn letters(s: &str) -> (Vec<char>, Vec<char>) {
    let mut consonants = Vec::new();
    let mut vowels = Vec::new();
    for c in s.chars().map(fold_accent) {
        let c = c.to_ascii_uppercase();
        if !c.is_ascii_uppercase() {
            continue;
        }
        if "AEIOU".contains(c) {
            vowels.push(c);
        } else {
            consonants.push(c);
        }
    }
    (consonants, vowels)
}

fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'À' | 'Á' => 'A',
        'è' | 'é' | 'È' | 'É' => 'E',
        'ì' | 'í' | 'Ì' | 'Í' => 'I',
        'ò' | 'ó' | 'Ò' | 'Ó' => 'O',
        'ù' | 'ú' | 'Ù' | 'Ú' => 'U',
        other => other,
    }
}

fn pad3(mut chars: Vec<char>) -> String {
    chars.truncate(3);
    while chars.len() < 3 {
        chars.push('X');
    }
    chars.into_iter().collect()
}

fn surname_code(cognome: &str) -> String {
    let (mut consonants, vowels) = letters(cognome);
    consonants.extend(vowels);
    pad3(consonants)
}

fn name_code(nome: &str) -> String {
    let (consonants, vowels) = letters(nome);
    if consonants.len() >= 4 {
        return [consonants[0], consonants[2], consonants[3]]
            .iter()
            .collect();
    }
    let mut all = consonants;
    all.extend(vowels);
    pad3(all)
}

/// Computes the codice fiscale of a person (see [`CodiceFiscale::from_personal_data`]).
pub fn from_personal_data(
    cognome: &str,
    nome: &str,
    sesso: Sesso,
    data_nascita: NaiveDate,
    codice_belfiore: &str,
) -> Result<CodiceFiscale, IdentifierError> {
    CodiceFiscale::from_personal_data(cognome, nome, sesso, data_nascita, codice_belfiore)
}

impl PartitaIva {
    /// Validates a partita IVA (11 digits, check digit, not all zeros).
    pub fn parse(input: &str) -> Result<Self, IdentifierError> {
        let trimmed = input.trim();
        let found = trimmed.chars().count();
        if found != 11 {
            return Err(IdentifierError::Length {
                expected: "11",
                found,
            });
        }
        validate_numeric(trimmed)?;
        Ok(PartitaIva(trimmed.to_owned()))
    }

    /// Builds the partita IVA whose first 10 digits are `first10` (appending the check digit).
    pub fn from_first10(first10: &str) -> Result<Self, IdentifierError> {
        let check = compute_check_digit(first10).ok_or(IdentifierError::Length {
            expected: "10 digits before the check digit",
            found: first10.chars().count(),
        })?;
        PartitaIva::parse(&format!("{first10}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Soggetto {
    /// Validates a subject: 16 characters are a codice fiscale, 11 a partita IVA.
    pub fn parse(input: &str) -> Result<Self, IdentifierError> {
        match kind_of(input.trim().chars().count())? {
            Kind::Personal => CodiceFiscale::parse(input).map(Soggetto::CodiceFiscale),
            Kind::Numeric => PartitaIva::parse(input).map(Soggetto::PartitaIva),
        }
    }

    /// The identifier as stored (the key of the tributi tables).
    pub fn as_str(&self) -> &str {
        match self {
            Soggetto::CodiceFiscale(cf) => cf.as_str(),
            Soggetto::PartitaIva(piva) => piva.as_str(),
        }
    }
}

macro_rules! string_identifier {
    ($ty:ident, $max:expr, $pattern:expr, $example:expr, $desc:expr) => {
        impl FromStr for $ty {
            type Err = IdentifierError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = IdentifierError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $ty::parse(&s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = IdentifierError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                $ty::parse(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw: Cow<'de, str> = Deserialize::deserialize(d)?;
                let found = raw.chars().count();
                if found > $max {
                    return Err(serde::de::Error::custom(format!(
                        "must be at most {} characters, found {found}",
                        $max
                    )));
                }
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(schema::SchemaType::Type(Type::String))
                    .min_length(Some(11))
                    .max_length(Some($max))
                    .pattern(Some($pattern))
                    .description(Some($desc))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {}
    };
}

string_identifier!(
    CodiceFiscale,
    16,
    "^([A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst][0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]|[0-9]{11})$",
    "MRNSFN44C26G702G",
    "Codice fiscale: 16 characters (personal, omocodia allowed) or 11 digits (numeric); the check character is verified."
);
string_identifier!(
    PartitaIva,
    11,
    "^[0-9]{11}$",
    "10000070507",
    "Partita IVA: 11 digits; the check digit is verified."
);
string_identifier!(
    Soggetto,
    16,
    "^([A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst][0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z]|[0-9]{11})$",
    "MRNSFN44C26G702G",
    "The subject of a tributi lookup: a codice fiscale (16 characters) or a partita IVA (11 digits)."
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_personal_code_is_valid() {
        // The textbook example: Mario Rossi, born 10 December 1985 in A562.
        let cf: CodiceFiscale = "RSSMRA85T10A562S".parse().unwrap();
        assert_eq!(cf.as_str(), "RSSMRA85T10A562S");
        assert!(cf.is_personal());
        assert_eq!(compute_check_char("RSSMRA85T10A562"), Some('S'));
    }

    #[test]
    fn generator_reproduces_the_known_code() {
        let cf = CodiceFiscale::from_personal_data(
            "Rossi",
            "Mario",
            Sesso::M,
            NaiveDate::from_ymd_opt(1985, 12, 10).unwrap(),
            "A562",
        )
        .unwrap();
        assert_eq!(cf.as_str(), "RSSMRA85T10A562S");
    }

    #[test]
    fn name_and_surname_rules() {
        assert_eq!(surname_code("Rossi"), "RSS");
        assert_eq!(surname_code("Fo"), "FOX");
        assert_eq!(surname_code("De Luca"), "DLC");
        assert_eq!(name_code("Gianfranco"), "GFR"); // 4+ consonants: 1st, 3rd, 4th
        assert_eq!(name_code("Maria"), "MRA");
        assert_eq!(name_code("Ugo"), "GUO");
        assert_eq!(name_code("Niccolò"), "NCL");
    }

    #[test]
    fn women_have_day_plus_forty() {
        let cf = CodiceFiscale::from_personal_data(
            "Bianchi",
            "Anna",
            Sesso::F,
            NaiveDate::from_ymd_opt(1990, 3, 7).unwrap(),
            "G702",
        )
        .unwrap();
        assert_eq!(&cf.as_str()[..15], "BNCNNA90C47G702");
    }

    #[test]
    fn lower_case_is_normalised() {
        let cf: CodiceFiscale = "rssmra85t10a562s".parse().unwrap();
        assert_eq!(cf.to_string(), "RSSMRA85T10A562S");
    }

    #[test]
    fn omocodia_variants_are_valid_and_distinct() {
        let base: CodiceFiscale = "RSSMRA85T10A562S".parse().unwrap();
        // Checked by hand against the substitution and check tables.
        assert_eq!(base.omocode(1).unwrap().as_str(), "RSSMRA85T10A56NH");
        assert_eq!(base.omocode(7).unwrap().as_str(), "RSSMRAURTMLARSNL");
        let mut seen = std::collections::HashSet::new();
        seen.insert(base.clone());
        for level in 1..=7 {
            let o = base.omocode(level).unwrap();
            assert!(seen.insert(o.clone()), "level {level} repeats a code");
            assert_eq!(CodiceFiscale::parse(o.as_str()).unwrap(), o);
        }
        assert!(base.omocode(0).is_none());
        assert!(base.omocode(8).is_none());
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85T10A562").unwrap_err(),
            IdentifierError::Length {
                expected: "16 (personal) or 11 (numeric)",
                found: 15
            }
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85T10A562T").unwrap_err(),
            IdentifierError::CheckCharacter { position: 16 }
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMR485T10A562S").unwrap_err(),
            IdentifierError::Character {
                position: 6,
                expected: "a letter"
            }
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85Z10A562S").unwrap_err(),
            IdentifierError::Character {
                position: 9,
                expected: "a month letter (ABCDEHLMPRST)"
            }
        );
        assert_eq!(
            CodiceFiscale::parse("RSSMRA85T32A562S").unwrap_err(),
            IdentifierError::DayOfBirth
        );
        assert!(CodiceFiscale::parse("RSSMRA85T10A562È").is_err());
    }

    #[test]
    fn known_partita_iva() {
        // Published partite IVA of public bodies/companies (format examples).
        for ok in ["07643520567", "00488410010", "02438750586"] {
            assert!(PartitaIva::parse(ok).is_ok(), "{ok}");
            assert!(
                CodiceFiscale::parse(ok).is_ok(),
                "{ok} as numeric codice fiscale"
            );
        }
        assert_eq!(
            PartitaIva::parse("07643520568").unwrap_err(),
            IdentifierError::CheckCharacter { position: 11 }
        );
        assert_eq!(
            PartitaIva::parse("0764352056A").unwrap_err(),
            IdentifierError::Character {
                position: 11,
                expected: "a digit"
            }
        );
        assert_eq!(
            PartitaIva::parse("00000000000").unwrap_err(),
            IdentifierError::AllZeros
        );
        assert!(PartitaIva::parse("RSSMRA85T10A562S").is_err());
    }

    #[test]
    fn soggetto_picks_the_kind_by_length() {
        assert!(matches!(
            Soggetto::parse("RSSMRA85T10A562S").unwrap(),
            Soggetto::CodiceFiscale(_)
        ));
        assert!(matches!(
            Soggetto::parse("07643520567").unwrap(),
            Soggetto::PartitaIva(_)
        ));
        assert!(Soggetto::parse("123").is_err());
        let s: Soggetto = serde_json::from_str("\"07643520567\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"07643520567\"");
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<CodiceFiscale>("\"RSSMRA85T10A562S\"").is_ok());
        let err = serde_json::from_str::<CodiceFiscale>("\"RSSMRA85T10A562X\"").unwrap_err();
        assert!(err.to_string().contains("check character"), "{err}");
        assert!(serde_json::from_str::<CodiceFiscale>("16").is_err());
    }

    const SURNAMES: &[&str] = &["Rossi", "Bo", "De Luca", "Esposito", "Ai", "Zanella"];
    const NAMES: &[&str] = &["Mario", "Gianfranco", "Ugo", "Eva", "Chiara", "Io"];
    const BELFIORE: &[&str] = &["A562", "G702", "H501", "F205", "Z404", "L219"];

    fn arb_cf() -> impl Strategy<Value = CodiceFiscale> {
        (
            0..SURNAMES.len(),
            0..NAMES.len(),
            any::<bool>(),
            1900i32..2030,
            1u32..=12,
            1u32..=28,
            0..BELFIORE.len(),
            0usize..=7,
        )
            .prop_map(|(s, n, f, y, m, d, b, omo)| {
                let sesso = if f { Sesso::F } else { Sesso::M };
                let date =
                    NaiveDate::from_ymd_opt(y, m, d).expect("day <= 28 exists in every month");
                let cf = CodiceFiscale::from_personal_data(
                    SURNAMES[s],
                    NAMES[n],
                    sesso,
                    date,
                    BELFIORE[b],
                )
                .expect("generated from valid personal data");
                if omo == 0 {
                    cf
                } else {
                    cf.omocode(omo).expect("levels 1..=7 exist")
                }
            })
    }

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    proptest! {
        #[test]
        fn generated_codes_round_trip(cf in arb_cf()) {
            let parsed = CodiceFiscale::parse(cf.as_str()).unwrap();
            prop_assert_eq!(&parsed, &cf);
            let json = serde_json::to_string(&cf).unwrap();
            let back: CodiceFiscale = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, cf);
        }

        #[test]
        fn any_single_character_change_is_rejected(cf in arb_cf(), pos in 0usize..16, r in 0usize..36) {
            let mut bytes = cf.as_str().as_bytes().to_vec();
            prop_assume!(bytes[pos] != ALPHABET[r]);
            bytes[pos] = ALPHABET[r];
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(CodiceFiscale::parse(&changed).is_err(), "{} accepted", changed);
        }

        #[test]
        fn partita_iva_round_trips_and_detects_changes(first10 in "[0-9]{10}", pos in 0usize..11, d in 0u8..10) {
            prop_assume!(first10 != "0000000000");
            let piva = PartitaIva::from_first10(&first10).unwrap();
            prop_assert_eq!(PartitaIva::parse(piva.as_str()).unwrap(), piva.clone());
            let mut bytes = piva.as_str().as_bytes().to_vec();
            prop_assume!(bytes[pos] != b'0' + d);
            bytes[pos] = b'0' + d;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(PartitaIva::parse(&changed).is_err(), "{} accepted", changed);
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in "\\PC{0,40}") {
            let _ = CodiceFiscale::parse(&s);
            let _ = PartitaIva::parse(&s);
            let _ = Soggetto::parse(&s);
        }
    }
}
