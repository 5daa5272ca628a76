//! Traces: OpenTelemetry spans through `tracing`, exported over OTLP/HTTP (protobuf) when an
//! endpoint is configured, and nothing at all otherwise.
//!
//! Spans: one per request on either listener (`request`, continuing the caller's W3C
//! `traceparent`), one per pipeline stage inside it (`audit`, `voucher`, `signing`,
//! `purpose`, `quota`, `modi`, then `handler` for cache and store), and one per fruizione call
//! (`fruizione`, whose `traceparent` goes to the remote). The stage spans nest as the stages
//! do: each encloses the ones after it.
//!
//! Why a switch: the subscriber is built once, before any configuration is read, so its
//! OpenTelemetry layer is always there, with a [`SwitchTracer`] that [`install`] points at an
//! exporter when `[telemetry]` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) names an endpoint. Until then
//! the layer's filter says no to every span, so the span macros return disabled spans and no
//! future is wrapped: no exporter, no cost. (`tracing_subscriber::reload` would be the obvious
//! slot, but the span extension that sets a parent cannot find a layer through it.)
//!
//! Only the spans of [`TARGET`] reach the exporter, never the log events (which name jtis):
//! the attributes are method, status, e-service, operation and fruizione names, never a
//! codice fiscale, a voucher, a jti or a key. The request span records no path, since a
//! fruizione's path is whatever the caller put in it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanBuilder, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::{Layer, Registry};

/// The `tracing` target of every exported span (and of nothing else).
pub const TARGET: &str = "pdnd_gateway_spans";

/// The layer [`crate::telemetry::init`] puts into the subscriber.
pub type TraceLayer =
    Filtered<tracing_opentelemetry::OpenTelemetryLayer<Registry, SwitchTracer>, FilterFn, Registry>;

static ON: AtomicBool = AtomicBool::new(false);
static TRACER: RwLock<Option<Tracer>> = RwLock::new(None);
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);
/// Where spans go while no exporter is installed (none are made then; the type needs one).
static NOWHERE: OnceLock<Tracer> = OnceLock::new();

/// The tracer of the installed exporter, or one without any.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwitchTracer;

impl SwitchTracer {
    fn current(&self) -> Tracer {
        if let Some(tracer) = TRACER.read().ok().and_then(|t| t.clone()) {
            return tracer;
        }
        NOWHERE
            .get_or_init(|| SdkTracerProvider::builder().build().tracer("pdnd-gateway"))
            .clone()
    }
}

impl opentelemetry::trace::Tracer for SwitchTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        self.current().build_with_context(builder, parent_cx)
    }
}

/// Why traces could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("OTLP span exporter: {0}")]
    Exporter(String),
    #[error("the log subscriber was not set up by this crate; traces cannot be attached")]
    NoSubscriber,
}

/// The switched-off layer the subscriber starts with.
pub fn layer() -> TraceLayer {
    SUBSCRIBED.store(true, Ordering::Relaxed);
    tracing_opentelemetry::layer()
        .with_tracer(SwitchTracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() == TARGET && ON.load(Ordering::Relaxed)
        }))
}

/// Whether [`layer`] was built (the subscriber of this process is ours).
static SUBSCRIBED: AtomicBool = AtomicBool::new(false);

/// Starts exporting spans to `endpoint` (OTLP/HTTP base URL; `/v1/traces` is appended) as
/// `service_name`; the sampler follows `OTEL_TRACES_SAMPLER` (default: every trace, or as
/// the caller's `traceparent` says). A second call replaces the first exporter.
pub fn install(endpoint: &str, service_name: &str) -> Result<(), TracesError> {
    use opentelemetry_otlp::WithExportConfig as _;
    if !SUBSCRIBED.load(Ordering::Relaxed) {
        return Err(TracesError::NoSubscriber);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    if let Ok(mut current) = TRACER.write() {
        *current = Some(provider.tracer("pdnd-gateway"));
    }
    let old = PROVIDER.lock().ok().and_then(|mut p| p.replace(provider));
    ON.store(true, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    if let Some(old) = old {
        let _ = old.shutdown();
    }
    Ok(())
}

/// Whether spans are exported now. The listeners read it when their apps are built (after
/// [`install`] in `server::start`): without an exporter the request span's middleware is not
/// even in the chain, so an untraced request pays no layer (two boxed futures) for it.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Sends every finished span now (tests, and before the process ends).
pub fn flush() {
    if let Some(provider) = PROVIDER.lock().ok().and_then(|p| p.clone()) {
        let _ = provider.force_flush();
    }
}

/// Stops exporting: spans are off again and the exporter is flushed and shut down.
pub fn uninstall() {
    ON.store(false, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
    if let Ok(mut current) = TRACER.write() {
        *current = None;
    }
    if let Some(provider) = PROVIDER.lock().ok().and_then(|mut p| p.take()) {
        let _ = provider.shutdown();
    }
}

struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Outermost wrapper of both listeners: the request's span, child of the caller's
/// `traceparent` when it sent a valid one.
pub async fn request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = "request",
        otel.kind = "server",
        http.request.method = req.method().as_str(),
        http.response.status_code = tracing::field::Empty,
        pdnd.operation = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.call(req).await;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let _ = span.set_parent(parent);
    let result = next.call(req).instrument(span.clone()).await;
    if let Ok(res) = &result {
        span.record("http.response.status_code", res.status().as_u16());
        if let Some(op) = eservices::route::Resolved::of(res.request()) {
            span.record("pdnd.operation", op.operation().id());
        }
    }
    result
}

/// `future` inside a span named `name` (a pipeline stage), or as it is when spans are off.
pub fn in_stage<T: 'static>(
    name: &'static str,
    future: Pin<Box<dyn Future<Output = T>>>,
) -> Pin<Box<dyn Future<Output = T>>> {
    let span = tracing::info_span!(target: TARGET, "stage", otel.name = name);
    if span.is_disabled() {
        future
    } else {
        Box::pin(future.instrument(span))
    }
}

/// The span of one outbound fruizione call (`name` is the configured fruizione's).
pub fn fruizione_span(name: &str) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "fruizione",
        otel.name = "fruizione",
        otel.kind = "client",
        pdnd.fruizione = name,
    )
}

/// The W3C trace context headers (`traceparent`, `tracestate`) naming `span` as the parent
/// of what the remote does; none when spans are off.
pub fn context_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if !span.is_disabled() {
        TraceContextPropagator::new()
            .inject_context(&span.context(), &mut HeaderInjector(&mut headers));
    }
    headers
}
