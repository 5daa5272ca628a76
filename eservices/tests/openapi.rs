//! The OpenAPI documents list every operation, with bounded schemas and problem+json errors.

use eservices::{anagrafe, tributi, Eservice, Operation};
use serde_json::Value;

fn doc(e: Eservice) -> Value {
    let api = match e {
        Eservice::Anagrafe => anagrafe::openapi(),
        Eservice::Tributi => tributi::openapi(),
    };
    serde_json::to_value(api).unwrap()
}

#[test]
fn every_operation_is_documented_with_problem_errors() {
    for e in Eservice::all() {
        let d = doc(*e);
        let paths = d["paths"].as_object().unwrap();
        let expected: Vec<&str> = Operation::all()
            .iter()
            .filter(|o| o.eservice() == *e)
            .map(|o| o.path())
            .collect();
        let mut got: Vec<&str> = paths.keys().map(String::as_str).collect();
        got.sort_unstable();
        let mut want = expected.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{}", e.id());
        for path in expected {
            let op = &paths[path]["post"];
            assert!(op.is_object(), "{path} is POST");
            assert!(
                op["requestBody"]["content"]["application/json"].is_object(),
                "{path}"
            );
            assert!(
                op["responses"]["200"]["content"]["application/json"].is_object(),
                "{path}"
            );
            for status in ["400", "404", "413", "415", "500", "503"] {
                assert!(
                    op["responses"][status]["content"]["application/problem+json"]["schema"]
                        .is_object(),
                    "{path} {status} is problem+json"
                );
            }
        }
    }
}

#[test]
fn schemas_carry_bounds() {
    let a = doc(Eservice::Anagrafe);
    let schemas = &a["components"]["schemas"];
    assert_eq!(schemas["CodiceFiscale"]["maxLength"], 16);
    assert!(schemas["CodiceFiscale"]["pattern"].is_string());
    assert_eq!(
        schemas["IndirizzoRichiesta"]["properties"]["toponimo"]["maxLength"],
        100
    );
    assert_eq!(
        schemas["ResidenzaResponse"]["properties"]["dataAggiornamento"]["format"],
        "date-time"
    );
    assert_eq!(
        schemas["StatoFamigliaResponse"]["properties"]["componenti"]["maxItems"],
        50
    );
    let t = doc(Eservice::Tributi);
    let schemas = &t["components"]["schemas"];
    assert_eq!(
        schemas["SoggettoAnnoRequest"]["properties"]["anno"]["minimum"],
        1993
    );
    assert_eq!(
        schemas["SoggettoAnnoRequest"]["properties"]["anno"]["maximum"],
        2100
    );
    assert_eq!(schemas["Soggetto"]["maxLength"], 16);
    assert_eq!(
        schemas["PagamentiResponse"]["properties"]["pagamenti"]["maxItems"],
        500
    );
    assert!(schemas["Problem"].is_object());
}
