//! `pdnd-gateway audit`: who looked at what, from the audit trail.
//!
//! Filters by time range, consumer, purpose, or codice fiscale. A codice fiscale is never
//! stored: it is hashed here with the same keyed hash the gateway uses, and the hash is
//! searched, which answers a citizen's GDPR art. 15 request without a readable log of subjects.
//!
//! Both sides of the trail come out of one query, merged by time: the e-services' records
//! (`erogazione`: another administration called us) and the fruizioni's (`fruizione`: one of
//! the comune's offices called another administration through the proxy). A filter that only
//! one side has (`--consumer`, `--codice-fiscale`; `--caller`, `--fruizione`) selects that side.

use crate::provider::audit::{AuditError, AuditQuery, AuditRecord, AuditStore, SubjectHasher};
use crate::provider::audit_fruizioni::{FruizioneRecord, FruizioniQuery};
use std::io::Write;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditOutputFormat {
    Table,
    Jsonl,
    Csv,
}

/// Which side of the trail to show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// Both, merged by time.
    #[default]
    All,
    /// Calls other administrations made to the comune's e-services.
    Erogazioni,
    /// Calls the comune's offices made through `/fruizioni`.
    Fruizioni,
}

/// The filters of the command.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub from: Option<String>,
    pub to: Option<String>,
    pub consumer_id: Option<String>,
    pub purpose_id: Option<String>,
    pub codice_fiscale: Option<String>,
    /// Internal caller (`[[internal.api_key]] name`); fruizioni only.
    pub caller: Option<String>,
    /// Fruizione name; fruizioni only.
    pub fruizione: Option<String>,
    pub side: Side,
    pub limit: Option<u32>,
}

/// One record of either side, as the command prints it (`side` tags the JSON lines).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "side", rename_all = "lowercase")]
pub enum Entry {
    Erogazione(AuditRecord),
    Fruizione(FruizioneRecord),
}

impl Entry {
    fn sort_key(&self) -> (&str, &str) {
        match self {
            Entry::Erogazione(r) => (&r.time, &r.record_id),
            Entry::Fruizione(r) => (&r.time, &r.record_id),
        }
    }
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
    #[error("{0} select only the e-services' records and {1} only the fruizioni's: use one side")]
    SidesConflict(&'static str, &'static str),
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

/// Runs the query over both sides; oldest first, at most `limit` in all.
pub async fn entries(
    store: &AuditStore,
    hasher: &SubjectHasher,
    filters: &Filters,
) -> Result<Vec<Entry>, AuditCliError> {
    let erogazioni_only = filters.consumer_id.is_some() || filters.codice_fiscale.is_some();
    let fruizioni_only = filters.caller.is_some() || filters.fruizione.is_some();
    let side = match (filters.side, erogazioni_only, fruizioni_only) {
        (_, true, true) => {
            return Err(AuditCliError::SidesConflict(
                "--consumer/--codice-fiscale",
                "--caller/--fruizione",
            ))
        }
        (Side::Fruizioni, true, _) => {
            return Err(AuditCliError::SidesConflict(
                "--consumer/--codice-fiscale",
                "--side fruizioni",
            ))
        }
        (Side::Erogazioni, _, true) => {
            return Err(AuditCliError::SidesConflict(
                "--side erogazioni",
                "--caller/--fruizione",
            ))
        }
        (Side::All, true, _) => Side::Erogazioni,
        (Side::All, _, true) => Side::Fruizioni,
        (side, _, _) => side,
    };
    let mut out: Vec<Entry> = Vec::new();
    if side != Side::Fruizioni {
        out.extend(
            query(store, hasher, filters)
                .await?
                .into_iter()
                .map(Entry::Erogazione),
        );
    }
    if side != Side::Erogazioni {
        let (from, to) = time_range(filters)?;
        let q = FruizioniQuery {
            from,
            to,
            caller: filters.caller.clone(),
            fruizione: filters.fruizione.clone(),
            purpose_id: filters.purpose_id.clone(),
            request_id: None,
            limit: filters.limit,
        };
        out.extend(
            store
                .query_fruizioni(&q)
                .await?
                .into_iter()
                .map(Entry::Fruizione),
        );
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    if let Some(limit) = filters.limit {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(out)
}

/// `--from` / `--to` in the trail's time format (either may be absent).
fn time_range(filters: &Filters) -> Result<(Option<String>, Option<String>), AuditCliError> {
    let bound = |name, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| normalise_time(name, v))
            .transpose()
    };
    Ok((bound("from", &filters.from)?, bound("to", &filters.to)?))
}

/// Runs the query over the e-services' records only.
pub async fn query(
    store: &AuditStore,
    hasher: &SubjectHasher,
    filters: &Filters,
) -> Result<Vec<AuditRecord>, AuditCliError> {
    let (from, to) = time_range(filters)?;
    let q = AuditQuery {
        from,
        to,
        consumer_id: filters.consumer_id.clone(),
        purpose_id: filters.purpose_id.clone(),
        subject_hash: filters.codice_fiscale.as_deref().map(|cf| hasher.hash(cf)),
        request_id: None,
        limit: filters.limit,
    };
    Ok(store.query(&q).await?)
}

const COLUMNS: [&str; 14] = [
    "time",
    "side",
    "request_id",
    "consumer_id",
    "caller",
    "client_id",
    "purpose_id",
    "voucher_jti",
    "eservice",
    "operation",
    "status",
    "remote_status",
    "latency_ms",
    "user_id",
];

/// One printed row. For a fruizione, `eservice` is the fruizione's name and `operation` the
/// HTTP method (its path is not recorded: it may carry personal data).
fn row(e: &Entry) -> [String; 14] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    match e {
        Entry::Erogazione(r) => [
            r.time.clone(),
            "erogazione".into(),
            r.request_id.clone(),
            o(&r.consumer_id),
            String::new(),
            o(&r.client_id),
            o(&r.purpose_id),
            o(&r.voucher_jti),
            r.eservice.clone(),
            o(&r.operation),
            r.status.to_string(),
            String::new(),
            r.latency_ms.to_string(),
            o(&r.user_id),
        ],
        Entry::Fruizione(r) => [
            r.time.clone(),
            "fruizione".into(),
            r.request_id.clone(),
            String::new(),
            r.caller.clone(),
            o(&r.client_id),
            o(&r.purpose_id),
            o(&r.voucher_jti),
            o(&r.fruizione),
            r.method.clone(),
            r.status.to_string(),
            r.remote_status.map(|s| s.to_string()).unwrap_or_default(),
            r.latency_ms.to_string(),
            o(&r.user_id),
        ],
    }
}

/// Writes records in a format.
pub fn write(
    out: &mut impl Write,
    records: &[Entry],
    format: AuditOutputFormat,
) -> Result<(), AuditCliError> {
    let err = |e: std::io::Error| AuditCliError::Output(e.to_string());
    match format {
        AuditOutputFormat::Jsonl => {
            for r in records {
                let line =
                    serde_json::to_string(r).map_err(|e| AuditCliError::Output(e.to_string()))?;
                writeln!(out, "{line}").map_err(err)?;
            }
        }
        AuditOutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS)
                .map_err(|e| AuditCliError::Output(e.to_string()))?;
            for r in records {
                w.write_record(row(r))
                    .map_err(|e| AuditCliError::Output(e.to_string()))?;
            }
            w.flush().map_err(err)?;
        }
        AuditOutputFormat::Table => {
            let rows: Vec<[String; 14]> = records.iter().map(row).collect();
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

    fn fruizione() -> Entry {
        Entry::Fruizione(FruizioneRecord {
            record_id: "r2".into(),
            time: "2026-11-24T09:00:00.000Z".into(),
            request_id: "req-2".into(),
            caller: "ufficio-tributi".into(),
            fruizione: Some("inps-isee".into()),
            method: "POST".into(),
            purpose_id: Some("p".into()),
            client_id: Some("c".into()),
            voucher_jti: Some("j2".into()),
            status: 502,
            remote_status: Some(200),
            latency_ms: 9,
            user_id: Some("operatore.7".into()),
        })
    }

    fn rec() -> Entry {
        Entry::Erogazione(rec_record())
    }

    fn rec_record() -> AuditRecord {
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
        let records = vec![rec(), rec(), fruizione()];
        let mut csv_out = Vec::new();
        write(&mut csv_out, &records, AuditOutputFormat::Csv).unwrap();
        let text = String::from_utf8(csv_out).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("fruizione,req-2,,ufficio-tributi,"), "{text}");
        assert!(text.contains("\"req,with,commas\""));
        let mut jsonl = Vec::new();
        write(&mut jsonl, &records, AuditOutputFormat::Jsonl).unwrap();
        let text = String::from_utf8(jsonl).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for v in &lines {
            assert_eq!(v["purposeId"], "p");
        }
        assert_eq!(lines[0]["side"], "erogazione");
        assert_eq!(lines[2]["side"], "fruizione");
        assert_eq!(lines[2]["caller"], "ufficio-tributi");
        assert_eq!(lines[2]["remoteStatus"], 200);
        let mut table = Vec::new();
        write(&mut table, &records, AuditOutputFormat::Table).unwrap();
        assert!(String::from_utf8(table).unwrap().ends_with("(3 records)\n"));
    }

    #[tokio::test]
    async fn one_query_merges_both_sides_and_filters_pick_a_side() {
        let db = test_support::TestDb::sqlite("pdndgw-cli-audit");
        let store = AuditStore::connect(&db).await.unwrap();
        let log = crate::provider::audit::AuditLog::start(store.clone(), 8);
        let hasher = SubjectHasher::new(&[3u8; 32]).unwrap();
        let mut early = rec_record();
        early.time = "2026-11-24T08:00:00.000Z".into();
        let mut late = rec_record();
        late.record_id = "r3".into();
        late.consumer_id = Some("other".into());
        log.record(early).await.unwrap();
        log.record(late).await.unwrap();
        let Entry::Fruizione(f) = fruizione() else {
            unreachable!()
        };
        log.record_fruizione(f).await.unwrap();

        let all = entries(&store, &hasher, &Filters::default()).await.unwrap();
        let sides: Vec<&str> = all
            .iter()
            .map(|e| match e {
                Entry::Erogazione(_) => "e",
                Entry::Fruizione(_) => "f",
            })
            .collect();
        assert_eq!(sides, ["e", "f", "e"], "merged by time: {all:?}");

        let by_caller = Filters {
            caller: Some("ufficio-tributi".into()),
            ..Default::default()
        };
        let got = entries(&store, &hasher, &by_caller).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Entry::Fruizione(r) if r.status == 502));
        let nobody = Filters {
            caller: Some("protocollo".into()),
            ..Default::default()
        };
        assert!(entries(&store, &hasher, &nobody).await.unwrap().is_empty());

        let by_consumer = Filters {
            consumer_id: Some("c".into()),
            ..Default::default()
        };
        let got = entries(&store, &hasher, &by_consumer).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Entry::Erogazione(_)));

        let only_fruizioni = Filters {
            side: Side::Fruizioni,
            ..Default::default()
        };
        assert_eq!(
            entries(&store, &hasher, &only_fruizioni)
                .await
                .unwrap()
                .len(),
            1
        );
        let limited = Filters {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(entries(&store, &hasher, &limited).await.unwrap().len(), 2);

        let conflicting = Filters {
            consumer_id: Some("c".into()),
            caller: Some("ufficio-tributi".into()),
            ..Default::default()
        };
        assert!(matches!(
            entries(&store, &hasher, &conflicting).await,
            Err(AuditCliError::SidesConflict(..))
        ));
    }
}
