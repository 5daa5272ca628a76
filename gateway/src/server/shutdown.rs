//! Graceful shutdown at SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
//!
//! The order is what makes it graceful:
//! 1. `/readyz` turns 503 (`shutting_down`), so whatever still routes by readiness stops
//!    sending new work here;
//! 2. every listener stops accepting (a new connection is refused) and the requests in flight
//!    run to their end, their audit commits included (a served answer awaits its record), for
//!    at most `server.shutdown_timeout_secs`;
//! 3. the audit writer's queue is flushed (the best-effort records of refused requests);
//! 4. the process exits 0.
//!
//! A second signal during the wait ends it at once, with an error (exit 1), for an operator who
//! does not want to wait. actix's own signal handling is disabled on every listener
//! ([`super::bind_public`]) so that this is the one place deciding.

use super::Running;
use futures_util::future::{join_all, select_all};
use std::time::Duration;

/// Why the gateway did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("a listener failed: {0}")]
    Listener(#[from] std::io::Error),
    #[error("shutdown did not finish within {0:?} (server.shutdown_timeout_secs): requests in flight were cut")]
    Timeout(Duration),
    #[error("a second signal arrived during the graceful shutdown: stopped at once")]
    Forced,
    #[error("the audit queue could not be flushed: {0}")]
    AuditFlush(String),
}

/// Which signal asked for the stop.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Int,
}

/// The next SIGTERM or SIGINT.
async fn next_signal() -> std::io::Result<Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => Signal::Term,
        _ = int.recv() => Signal::Int,
    })
}

/// Serves until a signal, then shuts down in the order above; or returns as soon as one of the
/// servers ends on its own (stopping the others).
pub(super) async fn serve_until_signal(running: Running) -> Result<(), ShutdownError> {
    let Running {
        handles,
        tasks,
        readiness,
        audit,
        shutdown_timeout,
        ..
    } = running;
    if tasks.is_empty() {
        return Ok(());
    }
    // Installed before anything else can happen, so an early SIGTERM is not lost.
    let signal = next_signal();
    tokio::pin!(signal);
    let ended = select_all(tasks);
    tokio::pin!(ended);
    let signal = tokio::select! {
        sig = &mut signal => sig?,
        (result, _, _rest) = &mut ended => {
            // A listener ended without being asked: stop the others and report it.
            for handle in &handles {
                handle.stop(false).await;
            }
            result.map_err(std::io::Error::other)??;
            return Ok(());
        }
    };
    tracing::info!(
        ?signal,
        timeout_secs = shutdown_timeout.as_secs(),
        "stopping: no new connections; requests in flight may finish"
    );
    if let Some(readiness) = &readiness {
        readiness.begin_shutdown();
    }
    let graceful = async {
        // Each server stops accepting at once and waits for its own workers (bounded by the
        // same timeout inside actix); stopping them together keeps the total to one timeout.
        join_all(handles.iter().map(|h| h.stop(true))).await;
        let (result, _, rest) = (&mut ended).await;
        result.map_err(std::io::Error::other)??;
        for task in rest {
            task.await.map_err(std::io::Error::other)??;
        }
        if let Some(audit) = &audit {
            audit
                .flush()
                .await
                .map_err(|e| ShutdownError::AuditFlush(e.to_string()))?;
        }
        Ok::<(), ShutdownError>(())
    };
    // A little beyond actix's own bound, so that its forced stop wins and reports first.
    let bound = shutdown_timeout + Duration::from_secs(2);
    let second_signal = next_signal();
    let result = tokio::select! {
        r = tokio::time::timeout(bound, graceful) => r.unwrap_or(Err(ShutdownError::Timeout(shutdown_timeout))),
        _ = second_signal => Err(ShutdownError::Forced),
    };
    match &result {
        Ok(()) => tracing::info!("stopped: every request in flight finished, audit trail flushed"),
        Err(e) => tracing::error!(error = %e, "stopped uncleanly"),
    }
    result
}
