//! Logging: JSON lines through `tracing`, one per event, filtered by `RUST_LOG`.
//!
//! A voucher is logged by its jti and a codice fiscale never: the stages take care of what
//! they pass here; this module only decides the format.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `default` is the filter when `RUST_LOG` is unset.
pub fn init(default: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests start several servers in one process) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
