//! `pdnd-gateway tracing csv|sync` and `pdnd-gateway audit purge`.

use crate::config::Config;
use crate::provider::audit::AuditStore;
use crate::provider::audit_retention::{self, Retention};
use crate::tracing_pdnd::{csv, lock, sync};
use chrono::NaiveDate;
use std::io::Write;

/// `pdnd-gateway tracing ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TracingCommand {
    /// Print the PDND tracing file of one day (Europe/Rome), computed from the audit trail.
    Csv {
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
    /// Deposit on PDND every day of the window it lacks; recover MISSING and ERROR days;
    /// replace days whose records changed; record every deposit. Safe to run repeatedly.
    Sync,
}

/// `pdnd-gateway audit ...` (besides the query itself).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Delete per-request records older than audit.retention_days (after adding them to the
    /// daily aggregates); days whose tracing deposit is not COMPLETED stay.
    Purge {
        /// Count what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Failures of the commands.
#[derive(Debug, thiserror::Error)]
pub enum TracingCliError {
    #[error("--date must be YYYY-MM-DD, not {0:?}")]
    BadDate(String),
    #[error(transparent)]
    Audit(#[from] crate::provider::audit::AuditError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Purge(#[from] audit_retention::PurgeError),
    #[error("the tracing sync stopped early: {0} (the next run goes on from there)")]
    Stopped(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs a `tracing` command, writing its output to `out`.
pub async fn run(
    command: &TracingCommand,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), TracingCliError> {
    let store = AuditStore::connect(&config.audit.url).await?;
    match command {
        TracingCommand::Csv { date } => {
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| TracingCliError::BadDate(date.clone()))?;
            write!(out, "{}", csv::build(store.pool(), day).await?.render())?;
        }
        TracingCommand::Sync => {
            let tracing_sync = sync::TracingSync::from_config(config, store.pool().clone())?;
            let now = chrono::Utc::now();
            let Some(held) = lock::try_acquire(store.pool(), now.timestamp(), 3600).await? else {
                writeln!(out, "another tracing sync is running; nothing done")?;
                return Ok(());
            };
            let report = tracing_sync.run(now).await;
            held.release().await?;
            let report = report?;
            write_report(out, &report)?;
            if let Some(reason) = report.stopped {
                return Err(TracingCliError::Stopped(reason));
            }
        }
    }
    Ok(())
}

fn write_report(out: &mut impl Write, report: &sync::SyncReport) -> std::io::Result<()> {
    writeln!(
        out,
        "day         action          state      rows  requests  tracingId"
    )?;
    for d in &report.days {
        writeln!(
            out,
            "{}  {:<14}  {:<9}  {:>4}  {:>8}  {}",
            d.day,
            format!("{:?}", d.action),
            d.state.as_deref().unwrap_or("-"),
            d.rows,
            d.requests,
            d.tracing_id.as_deref().unwrap_or("-"),
        )?;
        for e in &d.row_errors {
            writeln!(
                out,
                "            row {}: {} {} ({})",
                e.row_number, e.error_code, e.message, e.purpose_id
            )?;
        }
    }
    writeln!(out, "{} deposit(s)", report.deposits())
}

/// Runs an `audit` subcommand.
pub async fn run_audit(
    command: &AuditCommand,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), TracingCliError> {
    let AuditCommand::Purge { dry_run } = command;
    let retention = Retention {
        records_days: config.audit.retention_days,
        aggregate_days: config.audit.aggregate_retention_days,
        require_deposit: config.tracing.is_some(),
    };
    // Checked before connecting: an unset period is a refusal, whatever the database.
    if retention.records_days.is_none() {
        return Err(audit_retention::PurgeError::NoRetention.into());
    }
    let store = AuditStore::connect(&config.audit.url).await?;
    let r = audit_retention::purge(store.pool(), retention, chrono::Utc::now(), *dry_run).await?;
    let range = match (r.first_day, r.last_day) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "no day".to_owned(),
    };
    writeln!(
        out,
        "{}records before {}: {range}: {} e-service record(s), {} fruizione record(s), {} old daily aggregate(s)",
        if r.dry_run { "dry run, nothing deleted. " } else { "purged " },
        r.before,
        r.records,
        r.fruizioni,
        r.aggregates
    )?;
    if !r.kept_days.is_empty() {
        let kept: Vec<String> = r.kept_days.iter().map(|d| d.to_string()).collect();
        writeln!(
            out,
            "kept (tracing deposit not COMPLETED): {}",
            kept.join(", ")
        )?;
    }
    Ok(())
}

/// `serve` with `[tracing] run_in_serve = true`: starts the daily sync task.
pub async fn start_in_serve(config: &Config) -> Result<(), TracingCliError> {
    if !config.tracing.as_ref().is_some_and(|t| t.run_in_serve) {
        return Ok(());
    }
    let store = AuditStore::connect(&config.audit.url).await?;
    sync::spawn_daily(config.clone(), store.pool().clone())?;
    Ok(())
}
