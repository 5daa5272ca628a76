//! The gateway's metrics: one OpenTelemetry `SdkMeterProvider` per process, read by the
//! Prometheus `/metrics` of the internal listener and, when an OTLP endpoint is configured,
//! pushed over OTLP/HTTP as well.
//!
//! Why one per process and not one per server: the instruments are recorded from deep inside
//! components (the audit writer, the JWKS cache, the voucher cache) that would otherwise all
//! need a handle threaded through; a process runs one gateway in production. Tests that start
//! several gateways in one process compare counts before and after under the exclusive lock.
//!
//! The instruments are built once; recording is an atomic add on a series found by its
//! attributes, which are `&'static str` or integers (no allocation per request). No attribute
//! ever carries a codice fiscale, a voucher, a jti or a key: only e-service, operation, stage,
//! status, fruizione name and outcome words.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists
//! (`http.server.request.duration`, `http.client.request.duration`, seconds); the others are
//! under `pdnd_gateway.`. The Prometheus exporter turns dots into underscores and adds the unit
//! and `_total` suffixes: `docs/observability.md` lists the names as scraped.

use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Bucket boundaries for durations in seconds (the semantic conventions' advice for
/// `http.server.request.duration`).
const SECONDS_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket boundaries for the number of records in one audit commit.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every instrument of the gateway.
pub struct Metrics {
    /// `http.server.request.duration` (s) by `eservice`, `operation`, `http.response.status_code`.
    pub request_duration: Histogram<f64>,
    /// `pdnd_gateway.refusals` by `eservice` and `reason` (the stage that refused: `voucher`,
    /// `purpose`, `quota`, `modi`, ...).
    pub refusals: Counter<u64>,
    /// `pdnd_gateway.cache.requests` by `eservice` and `result` (`hit`, `miss`).
    pub cache: Counter<u64>,
    /// `pdnd_gateway.audit.batch.size` ({record}) per commit.
    pub audit_batch_size: Histogram<u64>,
    /// `pdnd_gateway.audit.commit.duration` (s) by `outcome` (`ok`, `error`).
    pub audit_commit_duration: Histogram<f64>,
    /// `pdnd_gateway.jwks.refreshes` by `outcome` (`ok`, `error`).
    pub jwks_refreshes: Counter<u64>,
    /// `pdnd_gateway.token.requests` (vouchers asked of PDND as fruitore) by `outcome`.
    pub token_requests: Counter<u64>,
    /// `pdnd_gateway.voucher_cache.requests` by `result` (`hit`, `miss`).
    pub voucher_cache: Counter<u64>,
    /// `http.client.request.duration` (s) of fruizioni by `fruizione` and
    /// `http.response.status_code` (0 when no answer came).
    pub fruizione_duration: Histogram<f64>,
    /// `pdnd_gateway.replay.entries`: jtis recorded by the replay guard, by `outcome`
    /// (`recorded`, `replayed`).
    pub replay_entries: Counter<u64>,
}

/// The installed provider, its Prometheus registry and the instruments.
struct Installed {
    registry: prometheus::Registry,
    metrics: Metrics,
    /// Keeps the readers (and the OTLP push thread) alive.
    _provider: SdkMeterProvider,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The certificates and keys whose expiry is published, by name, as unix seconds.
static EXPIRIES: Mutex<Vec<(&'static str, i64)>> = Mutex::new(Vec::new());

/// Why the metrics could not be set up or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("OTLP metrics exporter: {0}")]
    Otlp(String),
}

/// Where metrics are pushed besides `/metrics` (from `[telemetry]`).
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// OTLP/HTTP base URL (`/v1/metrics` is appended).
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub interval: Duration,
}

/// Sets up the meter provider once per process; later calls keep the first one (tests start
/// several gateways in one process). An OTLP exporter that cannot be built is an error only for
/// the first call, which is the one that decides.
pub fn install(export: &Export) -> Result<(), MetricsError> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let installed = build(export)?;
    let _ = INSTALLED.set(installed);
    Ok(())
}

/// The instruments (a Prometheus-only provider is installed on first use if nothing was).
pub fn get() -> &'static Metrics {
    &installed().metrics
}

fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| match build(&Export::default()) {
        Ok(installed) => installed,
        // The Prometheus exporter fails only on a duplicate registration in a fresh registry,
        // which cannot happen; a provider without readers still records safely.
        Err(e) => {
            tracing::error!(error = %e, "metrics: exporter unavailable, metrics are not published");
            let provider = SdkMeterProvider::builder().build();
            Installed {
                registry: prometheus::Registry::new(),
                metrics: instruments(&provider),
                _provider: provider,
            }
        }
    })
}

fn build(export: &Export) -> Result<Installed, MetricsError> {
    let registry = prometheus::Registry::new();
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()
        .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
    let service_name = if export.service_name.is_empty() {
        "pdnd-gateway".to_owned()
    } else {
        export.service_name.clone()
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    let mut builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(prometheus);
    if let Some(endpoint) = &export.otlp_endpoint {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig as _};
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/metrics", endpoint.trim_end_matches('/')))
            .with_headers(Default::default())
            .build()
            .map_err(|e| MetricsError::Otlp(e.to_string()))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(export.interval.max(Duration::from_secs(1)))
            .build();
        builder = builder.with_reader(reader);
    }
    let provider = builder.build();
    Ok(Installed {
        registry,
        metrics: instruments(&provider),
        _provider: provider,
    })
}

fn instruments(provider: &SdkMeterProvider) -> Metrics {
    let meter = provider.meter("pdnd-gateway");
    meter
        .i64_observable_gauge("pdnd_gateway.certificate.expiry")
        .with_unit("s")
        .with_description(
            "Seconds until a certificate or key the gateway signs with expires \
             (negative: expired), by certificate",
        )
        .with_callback(|gauge| {
            let now = chrono::Utc::now().timestamp();
            let expiries = EXPIRIES.lock().map(|e| e.clone()).unwrap_or_default();
            for (name, not_after) in expiries {
                gauge.observe(
                    not_after.saturating_sub(now),
                    &[KeyValue::new("certificate", name)],
                );
            }
        })
        .build();
    Metrics {
        request_duration: meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of e-service requests on the public listener")
            .with_boundaries(SECONDS_BUCKETS.to_vec())
            .build(),
        refusals: meter
            .u64_counter("pdnd_gateway.refusals")
            .with_description("Requests refused by a pipeline stage, by the stage (reason)")
            .build(),
        cache: meter
            .u64_counter("pdnd_gateway.cache.requests")
            .with_description("Answers served from the answer cache (hit) or looked up (miss)")
            .build(),
        audit_batch_size: meter
            .u64_histogram("pdnd_gateway.audit.batch.size")
            .with_unit("{record}")
            .with_description("Records committed in one audit transaction")
            .with_boundaries(BATCH_BUCKETS.to_vec())
            .build(),
        audit_commit_duration: meter
            .f64_histogram("pdnd_gateway.audit.commit.duration")
            .with_unit("s")
            .with_description("Duration of one audit commit, by outcome")
            .with_boundaries(SECONDS_BUCKETS.to_vec())
            .build(),
        jwks_refreshes: meter
            .u64_counter("pdnd_gateway.jwks.refreshes")
            .with_description("Fetches of PDND's key set, by outcome")
            .build(),
        token_requests: meter
            .u64_counter("pdnd_gateway.token.requests")
            .with_description("Vouchers asked of PDND as fruitore, by outcome")
            .build(),
        voucher_cache: meter
            .u64_counter("pdnd_gateway.voucher_cache.requests")
            .with_description("Fruitore vouchers served from the cache (hit) or obtained (miss)")
            .build(),
        fruizione_duration: meter
            .f64_histogram("http.client.request.duration")
            .with_unit("s")
            .with_description("Duration of fruizioni calls to other administrations")
            .with_boundaries(SECONDS_BUCKETS.to_vec())
            .build(),
        replay_entries: meter
            .u64_counter("pdnd_gateway.replay.entries")
            .with_description("jtis seen by the replay guard, recorded or refused as replayed")
            .build(),
    }
}

/// Publishes the expiry (unix seconds) of a certificate or key under `name`
/// (`pdnd_gateway_certificate_expiry_seconds{certificate="<name>"}`); a second call for the
/// same name replaces the first.
pub fn watch_expiry(name: &'static str, not_after: i64) {
    let _ = installed();
    if let Ok(mut expiries) = EXPIRIES.lock() {
        expiries.retain(|(n, _)| *n != name);
        expiries.push((name, not_after));
    }
}

/// Records one audit commit: how many records, whether it held, how long it took.
pub fn audit_commit(records: usize, ok: bool, elapsed: Duration) {
    let m = get();
    m.audit_batch_size
        .record(u64::try_from(records).unwrap_or(u64::MAX), &[]);
    m.audit_commit_duration
        .record(elapsed.as_secs_f64(), &[outcome(ok)]);
}

/// Counts a fruitore voucher served from the cache (`hit`) or asked for (`miss`).
pub fn voucher_cache(hit: bool) {
    get().voucher_cache.add(
        1,
        &[KeyValue::new("result", if hit { "hit" } else { "miss" })],
    );
}

/// Counts a jti presented to the replay guard (of kind `scope`) by `outcome`: `recorded`,
/// `replayed` (refused), or `error` (the shared store failed).
pub fn replay_entry(scope: &'static str, outcome: &'static str) {
    get().replay_entries.add(
        1,
        &[
            KeyValue::new("scope", scope),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// Records the duration of one fruizione call (`name` is a configured fruizione, never what a
/// caller typed; `status` 0 when no answer came).
pub fn fruizione(name: &str, status: u16, elapsed: Duration) {
    get().fruizione_duration.record(
        elapsed.as_secs_f64(),
        &[
            KeyValue::new("fruizione", name.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ],
    );
}

/// The `notAfter` (unix seconds) of a DER certificate.
pub fn certificate_not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// The Prometheus text exposition of every metric.
pub fn render() -> Result<String, MetricsError> {
    use prometheus::Encoder as _;
    let families = installed().registry.gather();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
    String::from_utf8(out).map_err(|e| MetricsError::Prometheus(e.to_string()))
}

/// A label value for an outcome.
pub fn outcome(ok: bool) -> KeyValue {
    KeyValue::new("outcome", if ok { "ok" } else { "error" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_reach_the_exposition_under_prometheus_names() {
        let m = get();
        m.refusals.add(
            1,
            &[
                KeyValue::new("eservice", "unit-test"),
                KeyValue::new("reason", "voucher"),
            ],
        );
        m.request_duration.record(
            0.02,
            &[
                KeyValue::new("eservice", "unit-test"),
                KeyValue::new("operation", "op"),
                KeyValue::new("http.response.status_code", 200),
            ],
        );
        watch_expiry("unit_test_cert", chrono::Utc::now().timestamp() + 1000);
        let text = render().expect("renders");
        assert!(
            text.contains(r#"pdnd_gateway_refusals_total{eservice="unit-test""#),
            "{text}"
        );
        assert!(
            text.contains("http_server_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains(r#"http_response_status_code="200""#),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains(r#"certificate="unit_test_cert""#))
            .expect("expiry published");
        let value: i64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!((990..=1000).contains(&value), "{line}");
    }

    #[test]
    fn not_after_is_read_from_a_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(certificate_not_after(cert.der()), Some(1_925_078_400));
        assert_eq!(certificate_not_after(b"not a certificate"), None);
    }
}
