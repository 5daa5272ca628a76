//! The day's tracing file, built from the audit trail.
//!
//! One row per (purpose, HTTP status, voucher `jti`) with the number of requests, for the calls
//! of one calendar day in Europe/Rome time (PDND's days are Italian days: a call at 00:30 in
//! Rome on 1 July is a call of 1 July, though its UTC time is 30 June 22:30). Both directions
//! count: the calls the comune served (`audit_log`, erogazioni) and the calls it made through
//! the proxy (`audit_fruizioni`).
//!
//! Records without a voucher `jti` or a purpose are left out: they are requests refused before
//! the voucher was checked (no credential, a forged or expired token) or proxy calls that never
//! obtained one, so no purpose authorised them and PDND's rows require a `purpose_id`. They stay
//! in the audit trail, which answers for them.
//!
//! For a fruizione the status is the remote e-service's answer (`remote_status`); when the
//! remote never answered (timeout, connection refused) it is the proxy's own 502/504, which is
//! what the call with that voucher came to.
//!
//! Rows are sorted, so the same records always give the same bytes and the same checksum: the
//! sync compares checksums to know whether a deposited day changed afterwards.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;

pub use crate::provider::audit_lifecycle::{day_bounds, rome_day};

/// The header PDND expects, in this order.
pub const HEADER: [&str; 5] = ["date", "purpose_id", "status", "token_id", "requests_count"];

/// One row of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingRow {
    pub purpose_id: String,
    pub status: u16,
    /// The `jti` of the voucher that authorised the calls.
    pub token_id: String,
    pub requests_count: i64,
}

/// The file of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFile {
    pub date: NaiveDate,
    pub rows: Vec<TracingRow>,
}

impl DayFile {
    /// The CSV text, header first, `\n` line ends.
    pub fn render(&self) -> String {
        let mut w = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let date = self.date.format("%Y-%m-%d").to_string();
        // Writing to a Vec cannot fail; a failure would only be a bug in the csv crate.
        let _ = w.write_record(HEADER);
        for r in &self.rows {
            let _ = w.write_record([
                date.as_str(),
                r.purpose_id.as_str(),
                &r.status.to_string(),
                r.token_id.as_str(),
                &r.requests_count.to_string(),
            ]);
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// SHA-256 (hex) of [`DayFile::render`].
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.render().as_bytes()))
    }

    /// Requests counted in the file.
    pub fn requests(&self) -> i64 {
        self.rows.iter().map(|r| r.requests_count).sum()
    }
}

const EROGAZIONI: &str = "SELECT purpose_id, status, voucher_jti, COUNT(*) AS n FROM audit_log \
    WHERE at >= $1 AND at < $2 AND purpose_id IS NOT NULL AND voucher_jti IS NOT NULL \
    GROUP BY purpose_id, status, voucher_jti";

const FRUIZIONI: &str = "SELECT purpose_id, COALESCE(remote_status, status) AS status, \
    voucher_jti, COUNT(*) AS n FROM audit_fruizioni \
    WHERE at >= $1 AND at < $2 AND purpose_id IS NOT NULL AND voucher_jti IS NOT NULL \
    GROUP BY purpose_id, COALESCE(remote_status, status), voucher_jti";

/// The file of `date` from the trail in `pool`.
pub async fn build(pool: &AnyPool, date: NaiveDate) -> Result<DayFile, sqlx::Error> {
    let (from, to) = day_bounds(date);
    let mut counts: BTreeMap<(String, u16, String), i64> = BTreeMap::new();
    for sql in [EROGAZIONI, FRUIZIONI] {
        let rows = sqlx::query(sql)
            .bind(&from)
            .bind(&to)
            .fetch_all(pool)
            .await?;
        for row in rows {
            let purpose: String = row.try_get("purpose_id")?;
            let status: i64 = row.try_get("status")?;
            let jti: String = row.try_get("voucher_jti")?;
            let n: i64 = row.try_get("n")?;
            // A status outside u16 cannot be recorded by the gateway; 0 makes PDND flag it.
            let status = u16::try_from(status).unwrap_or(0);
            *counts.entry((purpose, status, jti)).or_default() += n;
        }
    }
    Ok(DayFile {
        date,
        rows: counts
            .into_iter()
            .map(
                |((purpose_id, status, token_id), requests_count)| TracingRow {
                    purpose_id,
                    status,
                    token_id,
                    requests_count,
                },
            )
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn winter_days_start_at_23_utc_and_summer_days_at_22() {
        assert_eq!(
            day_bounds(d("2026-01-15")),
            (
                "2026-01-14T23:00:00.000Z".to_owned(),
                "2026-01-15T23:00:00.000Z".to_owned()
            )
        );
        assert_eq!(
            day_bounds(d("2026-07-01")),
            (
                "2026-06-30T22:00:00.000Z".to_owned(),
                "2026-07-01T22:00:00.000Z".to_owned()
            )
        );
        // The spring change: 23 hours; the autumn one: 25.
        assert_eq!(
            day_bounds(d("2026-03-29")),
            (
                "2026-03-28T23:00:00.000Z".to_owned(),
                "2026-03-29T22:00:00.000Z".to_owned()
            )
        );
        assert_eq!(
            day_bounds(d("2026-10-25")),
            (
                "2026-10-24T22:00:00.000Z".to_owned(),
                "2026-10-25T23:00:00.000Z".to_owned()
            )
        );
    }

    #[test]
    fn renders_the_header_and_rows_in_pdnd_order() {
        let file = DayFile {
            date: d("2026-05-01"),
            rows: vec![TracingRow {
                purpose_id: "p".into(),
                status: 404,
                token_id: "j".into(),
                requests_count: 3,
            }],
        };
        assert_eq!(
            file.render(),
            "date,purpose_id,status,token_id,requests_count\n2026-05-01,p,404,j,3\n"
        );
        let empty = DayFile {
            date: d("2026-05-01"),
            rows: vec![],
        };
        assert_eq!(
            empty.render(),
            "date,purpose_id,status,token_id,requests_count\n"
        );
        assert_ne!(file.checksum(), empty.checksum());
    }
}
