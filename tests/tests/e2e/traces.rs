//! Traces over real sockets: the gateway exports its spans over OTLP/HTTP (protobuf) to a
//! receiver in this test, which decodes them with `opentelemetry-proto`. A fruizione is called
//! on a second gateway with a W3C `traceparent`; the spans must show the internal request as
//! the child of that parent, the outbound call as its child, the provider's request as the
//! child of the outbound call (so the call carried a `traceparent` of the same trace), and one
//! span per stage inside it. No codice fiscale and no jti may appear in any attribute.
//!
//! The trace exporter is process-wide, so the test runs alone and switches it off at the end.

use actix_web::{web, App, HttpResponse, HttpServer};
use e2e::Harness;
use gateway::dev::sample;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Received = Arc<Mutex<Vec<Span>>>;

/// A minimal OTLP/HTTP receiver: `POST /v1/traces` decoded and kept; anything else 200.
async fn receiver() -> (String, Received, actix_web::dev::ServerHandle) {
    let spans: Received = Arc::default();
    let kept = spans.clone();
    let server = HttpServer::new(move || {
        let kept = kept.clone();
        App::new()
            .route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let Ok(req) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                            return HttpResponse::BadRequest().finish();
                        };
                        let mut kept = kept.lock().expect("lock");
                        for rs in req.resource_spans {
                            for ss in rs.scope_spans {
                                kept.extend(ss.spans);
                            }
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .finish()
                    }
                }),
            )
            .default_service(web::to(HttpResponse::Ok))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("receiver binds");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), spans, handle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(span: &Span) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
        .collect()
}

/// The spans of `trace_id`, waiting for the exporter's batch.
async fn trace(spans: &Received, trace_id: &str, at_least: usize) -> Vec<Span> {
    for _ in 0..100 {
        gateway::telemetry::traces::flush();
        let found: Vec<Span> = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .cloned()
        .collect()
}

fn descendants<'a>(all: &'a [Span], root: &Span) -> Vec<&'a Span> {
    let mut out = Vec::new();
    let mut frontier = vec![root.span_id.clone()];
    while let Some(id) = frontier.pop() {
        for s in all.iter().filter(|s| s.parent_span_id == id) {
            frontier.push(s.span_id.clone());
            out.push(s);
        }
    }
    out
}

const STAGES: [&str; 6] = ["audit", "voucher", "signing", "purpose", "modi", "handler"];

#[tokio::test]
async fn spans_follow_the_traceparent_through_a_fruizione_and_every_stage() {
    let _alone = e2e::exclusive().await;
    let (endpoint, spans, receiver) = receiver().await;
    let h = Harness::start_with(|c| c.telemetry.otlp_endpoint = Some(endpoint.clone())).await;
    let consumer = h
        .start_consumer(|c| c.fruizioni = vec![h.anagrafe_fruizione("anagrafe-remota")])
        .await;
    let cf = h.sample_cf();
    assert!(
        !gateway::telemetry::traces::fruizione_span("probe").is_disabled(),
        "spans are off although an endpoint is configured"
    );

    // Through the fruizione: caller -> consumer's internal listener -> provider's public one.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let resp = consumer
        .call_with(
            "anagrafe-remota",
            "residenza",
            &[("traceparent", &format!("00-{trace_id}-{parent}-01"))],
            &json!({"codiceFiscale": cf}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Straight to the provider with a voucher whose jti the test knows.
    let direct_trace = "0af7651916cd43dd8448eb211c80319c";
    let direct_parent = "b7ad6b7169203331";
    let voucher = h.voucher(sample::ANAGRAFE_FULL.purpose_id).await;
    let resp = h
        .http
        .post(h.public("/anagrafe/v1/residenza"))
        .bearer_auth(&voucher)
        .header(
            "traceparent",
            format!("00-{direct_trace}-{direct_parent}-01"),
        )
        .json(&json!({"codiceFiscale": cf}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);

    // Hostile or sloppy traceparents: each call is answered as usual and none is continued:
    // its request span starts a trace of the gateway's own (no parent).
    let hostile_parent = "1111111111111111";
    let hostile_traces = ["ab".repeat(16), "cd".repeat(16), "ef".repeat(16)];
    let hostile = [
        format!("00-{}-{hostile_parent}-01", "0".repeat(32)), // all-zero trace id
        format!("00-{}-{hostile_parent}-01", "zz".repeat(16)), // not hex
        format!("ff-{}-{hostile_parent}-01", hostile_traces[0]), // version ff is forbidden
        format!(
            "00-{}-{hostile_parent}-01{}",
            hostile_traces[1],
            "x".repeat(1024)
        ), // oversized
        format!("00-{}-{}-01", hostile_traces[2], "0".repeat(16)), // all-zero parent id
        "%30%30-4bf9".to_owned(),                             // percent-encoded junk
    ];
    for value in &hostile {
        let resp = h
            .http
            .post(h.public("/anagrafe/v1/residenza"))
            .bearer_auth(&voucher)
            .header("traceparent", value)
            .json(&json!({"codiceFiscale": cf}))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::OK, "traceparent {value:.60}");
    }
    let mut roots = 0;
    for _ in 0..100 {
        gateway::telemetry::traces::flush();
        roots = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.name == "request" && s.parent_span_id.is_empty())
            .count();
        if roots >= hostile.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        roots >= hostile.len(),
        "{roots} request spans without a parent for {} hostile traceparents",
        hostile.len()
    );
    for span in spans.lock().expect("lock").iter() {
        let trace = hex(&span.trace_id);
        assert!(
            !hostile_traces.contains(&trace) && trace != "0".repeat(32),
            "a hostile traceparent was continued: {} in trace {trace}",
            span.name
        );
        assert_ne!(hex(&span.parent_span_id), hostile_parent, "{}", span.name);
    }

    let fz = trace(&spans, trace_id, 3 + STAGES.len()).await;
    let direct = trace(&spans, direct_trace, 1 + STAGES.len()).await;
    consumer.stop().await;
    gateway::telemetry::traces::uninstall();
    receiver.stop(false).await;

    let names: Vec<&str> = fz.iter().map(|s| s.name.as_str()).collect();
    let internal = fz
        .iter()
        .find(|s| s.name == "request" && hex(&s.parent_span_id) == parent)
        .unwrap_or_else(|| panic!("no request span child of the sent traceparent: {names:?}"));
    let outbound = fz
        .iter()
        .find(|s| s.name == "fruizione" && s.parent_span_id == internal.span_id)
        .unwrap_or_else(|| panic!("no fruizione span under the internal request: {names:?}"));
    let provider = fz
        .iter()
        .find(|s| s.name == "request" && s.parent_span_id == outbound.span_id)
        .unwrap_or_else(|| {
            panic!("the provider's request is not a child of the outbound call: {names:?}")
        });
    for root in [
        provider,
        direct
            .iter()
            .find(|s| s.name == "request" && hex(&s.parent_span_id) == direct_parent)
            .expect("direct request span"),
    ] {
        let all = if root.trace_id == provider.trace_id {
            &fz
        } else {
            &direct
        };
        let below: Vec<&str> = descendants(all, root)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        for stage in STAGES {
            assert_eq!(
                below.iter().filter(|n| **n == stage).count(),
                1,
                "stage span `{stage}` once under the request: {below:?}"
            );
        }
        let attrs = attributes(root);
        assert!(
            attrs
                .get("http.response.status_code")
                .is_some_and(|v| v.contains("200")),
            "{attrs:?}"
        );
        assert!(
            attrs
                .get("pdnd.operation")
                .is_some_and(|v| v.contains("residenza")),
            "{attrs:?}"
        );
    }

    let jti = e2e::jws::jti_of(&voucher);
    for span in fz.iter().chain(direct.iter()) {
        for (key, value) in attributes(span) {
            assert!(
                !value.contains(&cf),
                "codice fiscale in {}: {key}",
                span.name
            );
            assert!(!value.contains(&jti), "jti in {}: {key}", span.name);
            assert!(
                !key.contains("jti"),
                "a jti attribute in {}: {key}",
                span.name
            );
            assert!(!value.contains("eyJ"), "a JWS in {}: {key}", span.name);
        }
    }
}

#[tokio::test]
async fn without_an_endpoint_no_span_is_made() {
    let _alone = e2e::exclusive().await;
    let h = Harness::start().await;
    let span = gateway::telemetry::traces::fruizione_span("x");
    assert!(span.is_disabled(), "spans are made with no exporter");
    assert!(gateway::telemetry::traces::context_headers(&span).is_empty());
    drop(h);
}
