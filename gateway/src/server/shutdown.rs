//! Graceful shutdown at SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
//!
//! The order is what makes it graceful:
//! 1. `/readyz` turns 503 (`shutting_down`), so whatever still routes by readiness stops
//!    sending new work here; at SIGTERM the listeners keep accepting for
//!    `server.shutdown_delay_secs` (default 0) so that it has the time to notice;
//! 2. every listener stops accepting (a new connection is refused) and the requests in flight
//!    run to their end, their audit commits included (a served answer awaits its record), for
//!    at most `server.shutdown_timeout_secs`;
//! 3. the audit writer's queue is flushed (the best-effort records of refused requests);
//! 4. the process exits 0 (1 when the bound cut requests still in flight).
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

/// SIGTERM and SIGINT, caught from the moment this exists: create it before the listeners
/// start, so a signal that arrives while they do is not lost (nor kills the process the
/// default way, without the graceful steps). Only the binary creates it: once caught, a
/// signal stays caught for the whole process.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts catching SIGTERM and SIGINT (needs the tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
        }
    }
}

/// Serves until a signal, then shuts down in the order above; or returns as soon as one of the
/// servers ends on its own (stopping the others).
pub(super) async fn serve_until_signal(
    running: Running,
    mut signals: Signals,
) -> Result<(), ShutdownError> {
    let Running {
        handles,
        tasks,
        readiness,
        audit,
        shutdown_timeout,
        shutdown_delay,
        ..
    } = running;
    if tasks.is_empty() {
        return Ok(());
    }
    let ended = select_all(tasks);
    tokio::pin!(ended);
    let signal = tokio::select! {
        sig = signals.next() => sig,
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
        "stopping: /readyz says 503; then no new connections, requests in flight may finish"
    );
    if let Some(readiness) = &readiness {
        readiness.begin_shutdown();
    }
    if matches!(signal, Signal::Term) && !shutdown_delay.is_zero() {
        tracing::info!(
            delay_secs = shutdown_delay.as_secs(),
            "not ready; still accepting until the delay ends"
        );
        tokio::select! {
            _ = tokio::time::sleep(shutdown_delay) => {}
            _ = signals.next() => {}
        }
    }
    let graceful = async {
        // Each server stops accepting at once and waits for its own workers (bounded by the
        // same timeout inside actix); stopping them together keeps the total to one timeout.
        let stopping = std::time::Instant::now();
        join_all(handles.iter().map(|h| h.stop(true))).await;
        // actix ends a graceful stop early when its connections are done, and at the bound by
        // dropping the ones still open: reaching the bound means requests were cut.
        let cut = stopping.elapsed() >= shutdown_timeout;
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
        if cut {
            return Err(ShutdownError::Timeout(shutdown_timeout));
        }
        Ok::<(), ShutdownError>(())
    };
    // A little beyond actix's own bound, so that its forced stop wins and reports first.
    let bound = shutdown_timeout + Duration::from_secs(2);
    let result = tokio::select! {
        r = tokio::time::timeout(bound, graceful) => r.unwrap_or(Err(ShutdownError::Timeout(shutdown_timeout))),
        _ = signals.next() => Err(ShutdownError::Forced),
    };
    match &result {
        Ok(()) => tracing::info!("stopped: every request in flight finished, audit trail flushed"),
        Err(e) => tracing::error!(error = %e, "stopped uncleanly"),
    }
    result
}
