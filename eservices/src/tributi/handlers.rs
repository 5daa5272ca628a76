//! Tributi handlers: each takes a validated body, asks the store one question and shapes the
//! answer. Caching, status codes and error bodies are `crate::handler`'s job.

use super::model::*;
use crate::body::ValidJson;
use crate::handler::{answer, key, LookupErrors};
use crate::problem::Problem;
use crate::route::Resolved;
use crate::store::Dated;
use crate::wire::Importo;
use crate::{EserviceState, Operation};
use actix_web::{web, HttpResponse};

#[utoipa::path(
    post,
    path = "/imu/posizione",
    tag = "tributi",
    operation_id = "imuPosizione",
    summary = "IMU position of a subject in a year",
    description = "Properties possessed in the year, IMU due, paid and the balance.",
    request_body(content = SoggettoAnnoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The IMU position", body = ImuPosizioneResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn imu_posizione(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<SoggettoAnnoRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::ImuPosizione,
        key(&req),
        || async move {
            let Some(Dated {
                value: p,
                data_aggiornamento,
            }) = store.posizione_imu(&req.soggetto, req.anno).await?
            else {
                return Ok(None);
            };
            Ok(Some(ImuPosizioneResponse {
                immobili: p
                    .immobili
                    .into_iter()
                    .map(|i| ImmobileImu {
                        foglio: i.foglio,
                        particella: i.particella,
                        subalterno: i.subalterno,
                        categoria: i.categoria,
                        rendita: i.rendita,
                        quota: i.quota,
                    })
                    .collect(),
                dovuto: p.dovuto,
                versato: p.versato,
                saldo: Importo(p.dovuto.cents() - p.versato.cents()),
                data_aggiornamento,
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/tari/posizione",
    tag = "tributi",
    operation_id = "tariPosizione",
    summary = "TARI position of a subject in a year",
    description = "Utenze in the year, amount due, amount paid and the instalments.",
    request_body(content = SoggettoAnnoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The TARI position", body = TariPosizioneResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn tari_posizione(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<SoggettoAnnoRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::TariPosizione,
        key(&req),
        || async move {
            let Some(Dated {
                value: p,
                data_aggiornamento,
            }) = store.posizione_tari(&req.soggetto, req.anno).await?
            else {
                return Ok(None);
            };
            Ok(Some(TariPosizioneResponse {
                utenze: p
                    .utenze
                    .into_iter()
                    .map(|u| UtenzaTari {
                        indirizzo: u.indirizzo,
                        superficie_mq: u.superficie_mq,
                        occupanti: u.occupanti,
                        categoria: u.categoria,
                    })
                    .collect(),
                importo: p.importo,
                pagato: p.pagato,
                scadenze: p
                    .scadenze
                    .into_iter()
                    .map(|s| ScadenzaTari {
                        rata: s.rata,
                        data_scadenza: s.data_scadenza,
                        importo: s.importo,
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
    path = "/regolarita",
    tag = "tributi",
    operation_id = "regolarita",
    summary = "Tax regularity of a subject",
    description = "Whether every IMU and TARI year is paid, and which years are not.",
    request_body(content = SoggettoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The regularity", body = RegolaritaResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn regolarita(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<SoggettoRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::Regolarita,
        key(&req),
        || async move {
            let Some(Dated {
                value: anni,
                data_aggiornamento,
            }) = store.anni_con_debito(&req.soggetto).await?
            else {
                return Ok(None);
            };
            Ok(Some(RegolaritaResponse {
                regolare: anni.is_empty(),
                anni_con_debito_aperto: anni,
                data_aggiornamento,
            }))
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/pagamenti",
    tag = "tributi",
    operation_id = "pagamenti",
    summary = "pagoPA payments of a subject for a tax year",
    description = "IUV, tax, amount and date of each payment received.",
    request_body(content = SoggettoAnnoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The payments", body = PagamentiResponse, content_type = "application/json",
            headers(
                ("Cache-Status" = String, description = "RFC 9211: `pdnd-gateway; hit` when the answer came from the gateway's cache, `pdnd-gateway; fwd=miss` when it was looked up now"),
                ("Cache-Control" = String, description = "Always `no-store`: the answer carries personal data, no cache may keep it"),
            )),
        (status = 404, description = "Unknown subject", body = Problem, content_type = "application/problem+json"),
        LookupErrors,
    )
)]
pub async fn pagamenti(
    resolved: Resolved,
    state: web::Data<EserviceState>,
    body: ValidJson<SoggettoAnnoRequest>,
) -> HttpResponse {
    let req = body.into_inner();
    let store = state.store().clone();
    answer(
        &state,
        resolved,
        Operation::Pagamenti,
        key(&req),
        || async move {
            let Some(Dated {
                value: list,
                data_aggiornamento,
            }) = store.pagamenti(&req.soggetto, req.anno).await?
            else {
                return Ok(None);
            };
            Ok(Some(PagamentiResponse {
                pagamenti: list
                    .into_iter()
                    .map(|p| PagamentoPagoPa {
                        iuv: p.iuv,
                        tributo: p.tributo,
                        importo: p.importo,
                        data: p.data,
                    })
                    .collect(),
                data_aggiornamento,
            }))
        },
    )
    .await
}
