//! `tracing sync`: deposit every day PDND lacks, recover what it marked MISSING or ERROR,
//! replace what changed after it was deposited, and remember every deposit.
//!
//! One run, for each day of the window (yesterday back to `[tracing] window_days`, oldest
//! first; today is never deposited, its calls are not over):
//!
//! | PDND's list says | the gateway does |
//! |---|---|
//! | nothing for the day | `submit` the day's file (an empty day is a file with the header only) |
//! | `MISSING` | `recover` with the day's file |
//! | `ERROR` | `recover` if the file changed since the deposit PDND refused; otherwise nothing (the same file would fail the same way: the row errors are reported instead) |
//! | `COMPLETED` | `replace` if the file's checksum differs from the one deposited (late records) |
//! | `PENDING` | nothing: PDND has not processed it yet |
//!
//! It then reads the list again, records each day's state, and fetches the row errors of every
//! day in ERROR once (logged with their row numbers, kept in `tracing_days.row_errors`).
//!
//! Failures: if PDND's list cannot be read the run stops before depositing anything; if PDND
//! becomes unreachable midway the run stops there. Nothing is recorded for a deposit PDND did
//! not confirm, so the next run starts from PDND's own list again: nothing is lost and nothing
//! deposited twice. A second submit of a date PDND already holds (`TRACING_ALREADY_EXISTS`, a
//! deposit this database does not know of) is reported and not retried within the run.
//!
//! Idempotent: once PDND holds every day with the current checksums, a run makes no deposit and
//! writes nothing.

use super::client::{
    Deposited, Redeposit, RemoteTracing, RowError, TracingClient, TracingClientError,
};
use super::csv::{self as tracing_csv, DayFile};
use super::store::{self, DayRecord, Deposit};
use crate::config::Config;
use crate::pdnd::client_assertion::ClientAssertionBuilder;
use crate::pdnd::jwk::RsaPrivateKey;
use crate::pdnd_client::token_client::TokenClient;
use crate::pdnd_client::voucher_cache::{
    CachePolicy, RetryPolicy, SystemClock, VoucherCache, VoucherFetchError, VoucherSpec,
};
use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a sync could not run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot obtain the voucher for the tracing e-service: {0}")]
    Voucher(#[from] VoucherFetchError),
    #[error("audit database: {0}")]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    Service(#[from] TracingClientError),
}

/// What a run did to one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Submitted,
    Recovered,
    Replaced,
    /// PDND refused a submit: it already holds the date.
    AlreadyExists,
}

/// One day of a run.
#[derive(Debug, Clone)]
pub struct DayOutcome {
    pub day: NaiveDate,
    pub action: Action,
    /// PDND's state after the run (`None`: PDND lists nothing for the day).
    pub state: Option<String>,
    pub tracing_id: Option<String>,
    pub rows: usize,
    pub requests: i64,
    /// Row errors PDND reported for the day (fetched in this run).
    pub row_errors: Vec<RowError>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub days: Vec<DayOutcome>,
    /// Set when the run stopped early (PDND unreachable midway): the days after it are
    /// untouched and the next run does them.
    pub stopped: Option<String>,
}

impl SyncReport {
    /// Deposits made (submit, recover, replace).
    pub fn deposits(&self) -> usize {
        self.days
            .iter()
            .filter(|d| {
                matches!(
                    d.action,
                    Action::Submitted | Action::Recovered | Action::Replaced
                )
            })
            .count()
    }
}

/// The sync, built once from the configuration.
pub struct TracingSync {
    pool: AnyPool,
    client: TracingClient,
    vouchers: Arc<VoucherCache>,
    spec: VoucherSpec,
    window_days: u32,
}

impl TracingSync {
    /// From `[tracing]`, `[client]` (the key the voucher is asked with) and `[pdnd]`.
    pub fn from_config(config: &Config, pool: AnyPool) -> Result<TracingSync, SyncError> {
        let tracing = config.tracing.as_ref().ok_or_else(|| {
            SyncError::Config("the [tracing] section is missing (service_url, purpose_id)".into())
        })?;
        let client = config.client.as_ref().ok_or_else(|| {
            SyncError::Config(
                "the [client] section is missing: the tracing voucher is asked with its key".into(),
            )
        })?;
        let pem = std::fs::read_to_string(&client.key_file).map_err(|e| {
            SyncError::Config(format!(
                "client.key_file {}: {e}",
                client.key_file.display()
            ))
        })?;
        let key = RsaPrivateKey::from_pem(&pem).map_err(|e| {
            SyncError::Config(format!(
                "client.key_file {}: {e}",
                client.key_file.display()
            ))
        })?;
        let http = crate::http_client::http_client()
            .map_err(|e| SyncError::Config(format!("HTTP client: {e}")))?;
        let vc = &config.voucher_client;
        let vouchers = VoucherCache::new(
            TokenClient::new(http.clone(), config.pdnd.token_endpoint.clone()),
            Arc::new(SystemClock),
            CachePolicy {
                renew_margin_fraction: vc.renew_margin_fraction,
                retry: RetryPolicy {
                    max_attempts: vc.max_attempts,
                    max_elapsed: Duration::from_millis(vc.max_retry_ms),
                    initial_backoff: Duration::from_millis(vc.initial_backoff_ms),
                    max_backoff: Duration::from_millis(vc.max_backoff_ms),
                },
            },
        );
        Ok(TracingSync {
            pool,
            client: TracingClient::new(http, &tracing.service_url),
            vouchers,
            spec: VoucherSpec {
                builder: ClientAssertionBuilder {
                    client_id: client.client_id.clone(),
                    audience: config.pdnd.client_assertion_audience.clone(),
                    purpose_id: Some(tracing.purpose_id.clone()),
                    digest: None,
                    lifetime_secs: client.assertion_lifetime_secs,
                },
                key: Arc::new(key),
                dpop: None,
            },
            window_days: tracing.window_days,
        })
    }

    /// The days a run at `now` looks at, oldest first: yesterday (Rome) and the
    /// `window_days - 1` before it.
    pub fn window(&self, now: DateTime<Utc>) -> Vec<NaiveDate> {
        let today = tracing_csv::rome_day(now);
        (1..=u64::from(self.window_days))
            .rev()
            .filter_map(|k| today.checked_sub_days(Days::new(k)))
            .collect()
    }

    async fn voucher(&self) -> Result<String, SyncError> {
        Ok(self.vouchers.get(&self.spec).await?.access_token.clone())
    }

    /// One run at `now` (see the module doc).
    pub async fn run(&self, now: DateTime<Utc>) -> Result<SyncReport, SyncError> {
        let stamp = crate::provider::audit::format_time(now);
        let voucher = self.voucher().await?;
        let remote = by_date(self.client.list(&voucher).await?);
        let mut report = SyncReport::default();
        let mut files = HashMap::new();
        for day in self.window(now) {
            let file = tracing_csv::build(&self.pool, day).await?;
            let key = day.format("%Y-%m-%d").to_string();
            let local = store::day(&self.pool, &key).await?;
            let outcome = match self
                .deposit(&voucher, &file, remote.get(&day), local.as_ref(), &stamp)
                .await
            {
                Ok(action) => action,
                Err(SyncError::Service(TracingClientError::Unavailable(reason))) => {
                    tracing::warn!(day = %day, %reason, "tracing service unavailable: the run stops here, the next one goes on");
                    report.stopped = Some(reason);
                    break;
                }
                Err(e) => return Err(e),
            };
            report.days.push(DayOutcome {
                day,
                action: outcome,
                state: None,
                tracing_id: None,
                rows: file.rows.len(),
                requests: file.requests(),
                row_errors: Vec::new(),
            });
            files.insert(day, file);
        }
        // PDND's states after the deposits.
        let remote = if report.deposits() > 0 && report.stopped.is_none() {
            by_date(self.client.list(&voucher).await?)
        } else {
            remote
        };
        for outcome in &mut report.days {
            let Some(r) = remote.get(&outcome.day) else {
                continue;
            };
            outcome.state = Some(r.state.clone());
            outcome.tracing_id = Some(r.tracing_id.clone());
            let key = outcome.day.format("%Y-%m-%d").to_string();
            let local = store::day(&self.pool, &key).await?;
            let mut record = local.clone().unwrap_or(DayRecord {
                day: key.clone(),
                tracing_id: None,
                state: r.state.clone(),
                errors: false,
                checksum: None,
                row_errors: None,
            });
            let same_deposit = local.as_ref().is_some_and(|l| {
                l.tracing_id.as_deref() == Some(&r.tracing_id) && l.state == r.state
            });
            record.tracing_id = Some(r.tracing_id.clone());
            record.state = r.state.clone();
            if record.checksum.is_none() && r.state == store::COMPLETED {
                // Deposited by something else (or before this table existed): the current
                // file is taken as the deposited one, so later records still lead to a replace.
                record.checksum = files.get(&outcome.day).map(DayFile::checksum);
                tracing::info!(day = %outcome.day, tracing_id = %r.tracing_id, "PDND holds a deposit this database did not know: its checksum is adopted");
            }
            if r.state == store::ERROR && !(same_deposit && record.row_errors.is_some()) {
                let errors = self.client.errors(&voucher, &r.tracing_id).await?;
                for e in &errors {
                    tracing::warn!(day = %outcome.day, tracing_id = %r.tracing_id, row = e.row_number, purpose_id = %e.purpose_id, code = %e.error_code, message = %e.message, "PDND refused a row of the tracing file");
                }
                record.row_errors = Some(serde_json::to_string(&errors).unwrap_or_default());
                outcome.row_errors = errors;
            } else if r.state != store::ERROR {
                record.row_errors = None;
            }
            store::save_day(&self.pool, &record, &stamp).await?;
        }
        Ok(report)
    }

    /// Decides and makes the day's deposit, recording it once PDND confirmed it.
    async fn deposit(
        &self,
        voucher: &str,
        file: &DayFile,
        remote: Option<&RemoteTracing>,
        local: Option<&DayRecord>,
        stamp: &str,
    ) -> Result<Action, SyncError> {
        let checksum = file.checksum();
        let local_checksum = local.and_then(|l| l.checksum.as_deref());
        let changed = local_checksum.is_some_and(|c| c != checksum);
        let (action, deposited) = match remote {
            None => match self.client.submit(voucher, file.date, &file.render()).await {
                Ok(d) => (Action::Submitted, d),
                Err(TracingClientError::AlreadyExists) => {
                    tracing::warn!(day = %file.date, "PDND refused the submit: it already holds this date (TRACING_ALREADY_EXISTS); not retried in this run");
                    return Ok(Action::AlreadyExists);
                }
                Err(e) => return Err(e.into()),
            },
            Some(r)
                if r.state == store::MISSING
                    || (r.state == store::ERROR && local_checksum != Some(checksum.as_str())) =>
            {
                let d = self
                    .client
                    .redeposit(voucher, &r.tracing_id, Redeposit::Recover, &file.render())
                    .await?;
                (Action::Recovered, d)
            }
            Some(r) if r.state == store::COMPLETED && changed => {
                let d = self
                    .client
                    .redeposit(voucher, &r.tracing_id, Redeposit::Replace, &file.render())
                    .await?;
                (Action::Replaced, d)
            }
            Some(_) => return Ok(Action::Nothing),
        };
        self.remember(file, &action, &deposited, &checksum, stamp)
            .await?;
        Ok(action)
    }

    async fn remember(
        &self,
        file: &DayFile,
        action: &Action,
        deposited: &Deposited,
        checksum: &str,
        stamp: &str,
    ) -> Result<(), SyncError> {
        let day = file.date.format("%Y-%m-%d").to_string();
        let name = match action {
            Action::Submitted => "submit",
            Action::Recovered => "recover",
            _ => "replace",
        };
        tracing::info!(day = %day, action = name, tracing_id = %deposited.tracing_id, rows = file.rows.len(), requests = file.requests(), checksum, "tracing file deposited");
        store::record_deposit(
            &self.pool,
            &Deposit {
                day: &day,
                action: name,
                tracing_id: Some(&deposited.tracing_id),
                state: store::PENDING,
                errors: deposited.errors,
                checksum,
                rows: file.rows.len(),
            },
            stamp,
        )
        .await?;
        store::save_day(
            &self.pool,
            &DayRecord {
                day,
                tracing_id: Some(deposited.tracing_id.clone()),
                state: store::PENDING.to_owned(),
                errors: deposited.errors,
                checksum: Some(checksum.to_owned()),
                row_errors: None,
            },
            stamp,
        )
        .await?;
        Ok(())
    }
}

/// PDND's list by date (the last entry of a date wins).
fn by_date(list: Vec<RemoteTracing>) -> HashMap<NaiveDate, RemoteTracing> {
    list.into_iter().map(|t| (t.date, t)).collect()
}

/// `[tracing] run_in_serve`: once an hour, try the lock and, if this replica gets it and no
/// run succeeded today (Rome) in this process, sync. Idempotent runs make a second replica's
/// run of the same day harmless; the lock keeps two from depositing at the same moment.
pub fn spawn_daily(
    config: Config,
    pool: AnyPool,
) -> Result<tokio::task::JoinHandle<()>, SyncError> {
    let sync = TracingSync::from_config(&config, pool.clone())?;
    Ok(tokio::spawn(async move {
        let mut done: Option<NaiveDate> = None;
        loop {
            let now = Utc::now();
            let today = tracing_csv::rome_day(now);
            if done != Some(today) {
                match super::lock::try_acquire(&pool, now.timestamp(), 3600).await {
                    Ok(Some(lock)) => {
                        match sync.run(now).await {
                            Ok(report) if report.stopped.is_none() => {
                                tracing::info!(
                                    deposits = report.deposits(),
                                    "daily tracing sync done"
                                );
                                done = Some(today);
                            }
                            Ok(report) => tracing::warn!(
                                reason = report.stopped.as_deref().unwrap_or(""),
                                "daily tracing sync stopped early; retried in an hour"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "daily tracing sync failed; retried in an hour")
                            }
                        }
                        if let Err(e) = lock.release().await {
                            tracing::warn!(error = %e, "cannot release the tracing sync lock");
                        }
                    }
                    Ok(None) => tracing::debug!("another replica holds the tracing sync lock"),
                    Err(e) => tracing::warn!(error = %e, "cannot take the tracing sync lock"),
                }
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }))
}
