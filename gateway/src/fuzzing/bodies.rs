//! Targets of the e-services: codice fiscale / partita IVA and every request body, through the
//! deserialisation the `ValidJson` extractor uses.

use serde::de::DeserializeOwned;
use serde::Serialize;

use eservices::anagrafe::model::{CodiceFiscaleRequest, VerificaResidenzaRequest};
use eservices::body::{parse_body, RequestBody};
use eservices::codice_fiscale::{compute_check_char, compute_check_digit};
use eservices::tributi::model::{SoggettoAnnoRequest, SoggettoRequest};
use eservices::{CodiceFiscale, PartitaIva, Soggetto};

use super::Outcome;

/// `CodiceFiscale`, `PartitaIva` and `Soggetto` on the same text, bare and as a JSON string.
pub fn codice_fiscale(data: &[u8]) -> Outcome {
    let Ok(input) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let trimmed = input.trim();
    let cf = CodiceFiscale::parse(input);
    let piva = PartitaIva::parse(input);
    let soggetto = Soggetto::parse(input);

    if let Ok(cf) = &cf {
        // The normal form: trimmed, upper case; parsing it again changes nothing.
        assert_eq!(cf.as_str(), trimmed.to_ascii_uppercase());
        assert_eq!(CodiceFiscale::parse(cf.as_str()).as_ref(), Ok(cf));
        let s = cf.as_str();
        if cf.is_personal() {
            assert_eq!(s.len(), 16);
            assert_eq!(compute_check_char(&s[..15]), s.chars().nth(15));
        } else {
            assert_eq!(s.len(), 11);
            assert_eq!(compute_check_digit(&s[..10]), s.chars().nth(10));
        }
    }
    if let Ok(piva) = &piva {
        assert_eq!(piva.as_str(), trimmed);
        assert_eq!(PartitaIva::parse(piva.as_str()).as_ref(), Ok(piva));
        // An 11-digit codice fiscale and a partita IVA are the same check.
        assert_eq!(
            cf.as_ref().map(CodiceFiscale::as_str),
            Ok(piva.as_str()),
            "partita IVA {piva:?} is not a numeric codice fiscale"
        );
    } else if let Ok(cf) = &cf {
        assert!(
            cf.is_personal(),
            "numeric codice fiscale {cf:?} is not a partita IVA"
        );
    }
    // A subject is whichever of the two its length selects.
    match &soggetto {
        Ok(Soggetto::CodiceFiscale(s)) => assert_eq!(cf.as_ref(), Ok(s)),
        Ok(Soggetto::PartitaIva(s)) => assert_eq!(piva.as_ref(), Ok(s)),
        Err(_) => assert!(
            cf.is_err() || (cf.as_ref().is_ok_and(|c| !c.is_personal()) && piva.is_err()),
            "{input:?}: a codice fiscale that is not a subject"
        ),
    }

    // On the wire: a JSON string deserialises to what parsing gives and re-serialises to the
    // normal form. The wire also bounds the raw length (16) before trimming, so only an
    // untrimmed input may parse bare and be refused as JSON.
    let json = serde_json::to_string(input).expect("a string serialises");
    let from_json = serde_json::from_str::<CodiceFiscale>(&json);
    match (&from_json, &cf) {
        (Ok(parsed), Ok(cf)) => {
            assert_eq!(parsed, cf);
            assert_eq!(
                serde_json::to_string(parsed).expect("serialises"),
                serde_json::to_string(cf.as_str()).expect("serialises")
            );
        }
        (Ok(parsed), Err(e)) => panic!("{input:?}: JSON gave {parsed:?}, parse said {e}"),
        (Err(_), Ok(_)) => assert_ne!(input, trimmed, "{input:?}: parses but not as JSON"),
        (Err(_), Err(_)) => {}
    }
    match (serde_json::from_str::<Soggetto>(&json), &soggetto) {
        (Ok(parsed), Ok(soggetto)) => assert_eq!(&parsed, soggetto),
        (Ok(parsed), Err(e)) => panic!("{input:?}: JSON gave {parsed:?}, parse said {e}"),
        (Err(_), Ok(_)) => assert_ne!(input, trimmed, "{input:?}: parses but not as JSON"),
        (Err(_), Err(_)) => {}
    }
    (cf.is_ok() || soggetto.is_ok()).into()
}

/// Every request body of both e-services, as `ValidJson` parses it.
pub fn eservice_bodies(data: &[u8]) -> Outcome {
    let accepted = [
        check_body::<CodiceFiscaleRequest>(data),
        check_body::<VerificaResidenzaRequest>(data),
        check_body::<SoggettoAnnoRequest>(data),
        check_body::<SoggettoRequest>(data),
    ];
    accepted.contains(&true).into()
}

/// A body either parses into a request with a valid data subject, whose serialisation is a
/// fixed point of parsing, or is refused with a 400 whose detail says why.
fn check_body<T: DeserializeOwned + Serialize + RequestBody>(data: &[u8]) -> bool {
    match parse_body::<T>(data) {
        Ok(request) => {
            let subject = request.data_subject();
            assert!(
                Soggetto::parse(subject).is_ok(),
                "data subject {subject:?} is not valid"
            );
            let normal = serde_json::to_vec(&request).expect("a request serialises");
            let again = parse_body::<T>(&normal).expect("a request's own serialisation parses");
            assert_eq!(again.data_subject(), subject);
            let normal_again = serde_json::to_vec(&again).expect("a request serialises");
            assert_eq!(normal, normal_again, "serialisation is not a fixed point");
            true
        }
        Err(problem) => {
            assert_eq!(problem.status, 400);
            assert!(problem.detail.as_deref().is_some_and(|d| !d.is_empty()));
            false
        }
    }
}
