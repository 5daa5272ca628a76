//! Anagrafe handlers: each takes a validated body, asks the store one question and shapes the
//! answer. Caching, status codes and error bodies are `crate::handler`'s job.

use super::model::*;
use crate::body::ValidJson;
use crate::handler::{answer, key, LookupErrors};
use crate::problem::Problem;
use crate::route::Resolved;
use crate::store::{Dated, Persona};
use crate::{EserviceState, Operation};
use actix_web::{web, HttpResponse};

#[utoipa::path(
    post,
    path = "/residenza",
    tag = "anagrafe",
    operation_id = "residenza",
    summary = "Residence of a person",
    description = "Whether the person resides in the comune and, if so, at which address since when.",
    request_body(content = CodiceFiscaleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The residence", body = ResidenzaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn residenza(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<CodiceFiscaleRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::Residenza,
        key(&req),
        || async move {
            let Some(Dated {
                value: stato,
                data_aggiornamento,
            }) = store.residenza(&req.codice_fiscale).await?
            else {
                return Ok(None);
            };
            Ok(Some(match stato.residenza {
                Some(r) => ResidenzaResponse {
                    residente: true,
                    indirizzo: Some(r.indirizzo),
                    data_decorrenza: Some(r.data_decorrenza),
                    data_aggiornamento,
                },
                None => ResidenzaResponse {
                    residente: false,
                    indirizzo: None,
                    data_decorrenza: None,
                    data_aggiornamento,
                },
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/generalita",
    tag = "anagrafe",
    operation_id = "generalita",
    summary = "Personal details of a person",
    description = "Surname, name, sex, date and place of birth.",
    request_body(content = CodiceFiscaleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The personal details", body = GeneralitaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn generalita(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<CodiceFiscaleRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::Generalita,
        key(&req),
        || async move {
            let Some(Dated {
                value: p,
                data_aggiornamento,
            }) = store.persona(&req.codice_fiscale).await?
            else {
                return Ok(None);
            };
            let Persona {
                cognome,
                nome,
                sesso,
                data_nascita,
                comune_nascita,
                codice_catastale_nascita,
                ..
            } = p;
            Ok(Some(GeneralitaResponse {
                cognome,
                nome,
                sesso,
                data_nascita,
                luogo_nascita: LuogoNascita {
                    comune: comune_nascita,
                    codice_catastale: codice_catastale_nascita,
                },
                data_aggiornamento,
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/stato-famiglia",
    tag = "anagrafe",
    operation_id = "statoFamiglia",
    summary = "Family of a person",
    description = "The members of the person's family (famiglia anagrafica) and their relation to its head.",
    request_body(content = CodiceFiscaleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The family", body = StatoFamigliaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject, or not in a family of the comune", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn stato_famiglia(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<CodiceFiscaleRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::StatoFamiglia,
        key(&req),
        || async move {
            let Some(Dated {
                value: f,
                data_aggiornamento,
            }) = store.famiglia(&req.codice_fiscale).await?
            else {
                return Ok(None);
            };
            Ok(Some(StatoFamigliaResponse {
                id_famiglia: f.id_famiglia,
                componenti: f
                    .componenti
                    .into_iter()
                    .map(|c| ComponenteFamiglia {
                        codice_fiscale: c.codice_fiscale,
                        cognome: c.cognome,
                        nome: c.nome,
                        relazione_intestatario: c.relazione,
                    })
                    .collect(),
                data_aggiornamento,
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/esistenza-in-vita",
    tag = "anagrafe",
    operation_id = "esistenzaInVita",
    summary = "Whether a person is alive",
    description = "Life status and, for a deceased person, the date of death.",
    request_body(content = CodiceFiscaleRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The life status", body = EsistenzaInVitaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn esistenza_in_vita(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<CodiceFiscaleRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::EsistenzaInVita,
        key(&req),
        || async move {
            let Some(Dated {
                value: p,
                data_aggiornamento,
            }) = store.persona(&req.codice_fiscale).await?
            else {
                return Ok(None);
            };
            Ok(Some(EsistenzaInVitaResponse {
                in_vita: p.data_decesso.is_none(),
                data_decesso: p.data_decesso,
                data_aggiornamento,
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/verifica-residenza",
    tag = "anagrafe",
    operation_id = "verificaResidenza",
    summary = "Check a declared residence",
    description = "Yes or no: does the person reside at this address? Nothing else is disclosed.",
    request_body(content = VerificaResidenzaRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Whether the address matches", body = VerificaResidenzaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn verifica_residenza(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<VerificaResidenzaRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::VerificaResidenza,
        key(&req),
        || async move {
            let Some(Dated {
                value: stato,
                data_aggiornamento,
            }) = store.residenza(&req.codice_fiscale).await?
            else {
                return Ok(None);
            };
            let corrisponde = stato
                .residenza
                .is_some_and(|r| req.indirizzo.matches(&r.indirizzo));
            Ok(Some(VerificaResidenzaResponse {
                corrisponde,
                data_aggiornamento,
            }))
        },
    )
    .await
}
