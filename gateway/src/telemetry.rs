//! Logging through `tracing`, one line per event, filtered by `RUST_LOG`: JSON lines for log
//! collectors, or a compact text line for a person at a terminal.
//!
//! The format follows where the lines go unless asked (`--log-format json|text`): a terminal
//! gets text (a newcomer running `dev` reads it), anything else (a file, a pipe, a container
//! runtime) gets JSON, so a deployment never has to remember to ask for it.
//!
//! A voucher is logged by its jti and a codice fiscale never: the stages take care of what
//! they pass here; this module only decides the format.

pub mod endpoint;
pub mod metrics;
pub mod requests;
pub mod traces;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// One compact, human-readable line per event.
    Text,
}

impl LogFormat {
    /// The format asked for, else text on a terminal and JSON anywhere else.
    pub fn resolve(asked: Option<LogFormat>, to_terminal: bool) -> LogFormat {
        match asked {
            Some(format) => format,
            None if to_terminal => LogFormat::Text,
            None => LogFormat::Json,
        }
    }

    /// [`LogFormat::resolve`] for standard error, where the lines go.
    pub fn for_stderr(asked: Option<LogFormat>) -> LogFormat {
        use std::io::IsTerminal;
        LogFormat::resolve(asked, std::io::stderr().is_terminal())
    }
}

/// Installs the global subscriber. `default` is the filter when `RUST_LOG` is unset. The
/// spans exported as traces ([`traces::TARGET`]) never reach the log lines, so the log format
/// stays what it was whether traces are on or off.
pub fn init(default: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let filter = match format!("{}=off", traces::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let lines = fmt::layer().with_writer(std::io::stderr);
    let lines = if json {
        lines.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        lines.compact().with_filter(filter).boxed()
    };
    // A second init (tests start several servers in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(traces::layer())
        .with(lines)
        .try_init();
}

/// Sets up metrics and traces export from `[telemetry]` (once per process for metrics; the
/// trace exporter follows the last start). A broken exporter is logged and leaves `/metrics`
/// working: the gateway serves without its telemetry rather than not at all.
pub fn install(export: &metrics::Export) {
    if let Err(e) = metrics::install(export) {
        tracing::error!(error = %e, "telemetry: OTLP metrics export not started");
    }
    if let Some(endpoint) = &export.otlp_endpoint {
        match traces::install(endpoint, &export.service_name) {
            Ok(()) => {
                tracing::info!(endpoint = %endpoint, "telemetry: exporting traces over OTLP/HTTP")
            }
            Err(e) => tracing::error!(error = %e, "telemetry: OTLP trace export not started"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_follows_the_output_unless_asked() {
        assert_eq!(LogFormat::resolve(None, true), LogFormat::Text);
        assert_eq!(LogFormat::resolve(None, false), LogFormat::Json);
        assert_eq!(
            LogFormat::resolve(Some(LogFormat::Json), true),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::resolve(Some(LogFormat::Text), false),
            LogFormat::Text
        );
    }
}
