//! `pdnd-gateway audit`: who looked at what, from the audit trail.
//!
//! Filters by time range, consumer, purpose, or codice fiscale. A codice fiscale is never
//! stored: it is hashed here with the same keyed hash the gateway uses, and the hash is
//! searched, which answers a citizen's GDPR art. 15 request without a readable log of subjects.

use crate::provider::audit::{AuditError, AuditQuery, AuditRecord, AuditStore, SubjectHasher};
use std::io::Write;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

/// The filters of the command.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub from: Option<String>,
    pub to: Option<String>,
    pub consumer_id: Option<String>,
    pub purpose_id: Option<String>,
    pub codice_fiscale: Option<String>,
    pub limit: Option<u32>,
}

/// Failures of the command.
#[derive(Debug, thiserror::Error)]
pub enum AuditCliError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("--{flag}: `{value}` is not an RFC 3339 time or a date (e.g. 2026-11-24 or 2026-11-24T10:00:00Z)")]
    BadTime { flag: &'static str, value: String },
    #[error("output: {0}")]
    Output(String),
}

/// Normalises a time filter to the stored format (UTC, milliseconds).
pub fn normalise_time(flag: &'static str, value: &str) -> Result<String, AuditCliError> {
    let bad = || AuditCliError::BadTime {
        flag,
        value: value.to_owned(),
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(crate::provider::audit::format_time(
            t.with_timezone(&chrono::Utc),
        ));
    }
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
    let t = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
    Ok(crate::provider::audit::format_time(t))
}

/// Runs the query.
pub async fn query(
    store: &AuditStore,
    hasher: &SubjectHasher,
    filters: &Filters,
) -> Result<Vec<AuditRecord>, AuditCliError> {
    let q = AuditQuery {
        from: filters
            .from
            .as_deref()
            .map(|v| normalise_time("from", v))
            .transpose()?,
        to: filters
            .to
            .as_deref()
            .map(|v| normalise_time("to", v))
            .transpose()?,
        consumer_id: filters.consumer_id.clone(),
        purpose_id: filters.purpose_id.clone(),
        subject_hash: filters.codice_fiscale.as_deref().map(|cf| hasher.hash(cf)),
        request_id: None,
        limit: filters.limit,
    };
    Ok(store.query(&q).await?)
}

const COLUMNS: [&str; 11] = [
    "time",
    "request_id",
    "consumer_id",
    "client_id",
    "purpose_id",
    "voucher_jti",
    "eservice",
    "operation",
    "status",
    "latency_ms",
    "user_id",
];

fn row(r: &AuditRecord) -> [String; 11] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        r.time.clone(),
        r.request_id.clone(),
        o(&r.consumer_id),
        o(&r.client_id),
        o(&r.purpose_id),
        o(&r.voucher_jti),
        r.eservice.clone(),
        o(&r.operation),
        r.status.to_string(),
        r.latency_ms.to_string(),
        o(&r.user_id),
    ]
}

/// Writes records in a format.
pub fn write(
    out: &mut impl Write,
    records: &[AuditRecord],
    format: Format,
) -> Result<(), AuditCliError> {
    let err = |e: std::io::Error| AuditCliError::Output(e.to_string());
    match format {
        Format::Jsonl => {
            for r in records {
                let line =
                    serde_json::to_string(r).map_err(|e| AuditCliError::Output(e.to_string()))?;
                writeln!(out, "{line}").map_err(err)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS)
                .map_err(|e| AuditCliError::Output(e.to_string()))?;
            for r in records {
                w.write_record(row(r))
                    .map_err(|e| AuditCliError::Output(e.to_string()))?;
            }
            w.flush().map_err(err)?;
        }
        Format::Table => {
            let rows: Vec<[String; 11]> = records.iter().map(row).collect();
            let mut widths = COLUMNS.map(str::len);
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r.iter()) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(widths.iter())
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
            writeln!(out, "{}", line(&header).trim_end()).map_err(err)?;
            for r in &rows {
                writeln!(out, "{}", line(r).trim_end()).map_err(err)?;
            }
            writeln!(out, "({} records)", rows.len()).map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> AuditRecord {
        AuditRecord {
            record_id: "r1".into(),
            time: "2026-11-24T10:00:00.000Z".into(),
            request_id: "req,with,commas".into(),
            consumer_id: Some("c".into()),
            client_id: None,
            purpose_id: Some("p".into()),
            voucher_jti: Some("j".into()),
            eservice: "anagrafe".into(),
            operation: Some("residenza".into()),
            status: 200,
            latency_ms: 4,
            subject_hash: Some("h".into()),
            user_id: None,
            user_location: None,
            loa: None,
        }
    }

    #[test]
    fn time_filters_normalise() {
        assert_eq!(
            normalise_time("from", "2026-11-24").unwrap(),
            "2026-11-24T00:00:00.000Z"
        );
        assert_eq!(
            normalise_time("from", "2026-11-24T12:00:00+01:00").unwrap(),
            "2026-11-24T11:00:00.000Z"
        );
        assert!(normalise_time("to", "yesterday").is_err());
    }

    #[test]
    fn formats_escape_and_carry_every_record() {
        let records = vec![rec(), rec()];
        let mut csv_out = Vec::new();
        write(&mut csv_out, &records, Format::Csv).unwrap();
        let text = String::from_utf8(csv_out).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.contains("\"req,with,commas\""));
        let mut jsonl = Vec::new();
        write(&mut jsonl, &records, Format::Jsonl).unwrap();
        let text = String::from_utf8(jsonl).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["purposeId"], "p");
        }
        let mut table = Vec::new();
        write(&mut table, &records, Format::Table).unwrap();
        assert!(String::from_utf8(table).unwrap().ends_with("(2 records)\n"));
    }
}
