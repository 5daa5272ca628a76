use super::*;

fn record(i: usize, subject: Option<String>) -> AuditRecord {
    AuditRecord {
        record_id: uuid::Uuid::new_v4().to_string(),
        time: format_time(Utc::now()),
        request_id: format!("req-{i}"),
        consumer_id: Some("consumer".into()),
        client_id: Some("client".into()),
        purpose_id: Some(
            if i.is_multiple_of(2) {
                "p-even"
            } else {
                "p-odd"
            }
            .into(),
        ),
        voucher_jti: Some(format!("jti-{i}")),
        eservice: "anagrafe".into(),
        operation: Some("residenza".into()),
        status: 200,
        latency_ms: 3,
        subject_hash: subject,
        user_id: None,
        user_location: None,
        loa: None,
    }
}

#[test]
fn subject_hash_is_keyed_and_normalised() {
    let a = SubjectHasher::new(&[7u8; 32]).unwrap();
    let b = SubjectHasher::new(&[8u8; 32]).unwrap();
    assert_eq!(a.hash("rssmra80a01h501u"), a.hash(" RSSMRA80A01H501U "));
    assert_ne!(a.hash("RSSMRA80A01H501U"), b.hash("RSSMRA80A01H501U"));
    assert_eq!(a.hash("X").len(), 64);
    assert!(SubjectHasher::new(b"short").is_err());
    // HMAC-SHA-256 with the key 32 x 0x07 (Python's hmac module gives the same).
    assert_eq!(
        a.hash("rssmra80a01h501u"),
        "8e6116e8e7e84315b234213a329f63b222396ea5145d9bc77ab7b4cb54d99859"
    );
    // Longer than one 64-byte piece, with a non-ASCII character left as it is (Python:
    // hmac.new(b"\x07" * 32, ("RSSMRA80A01H501U" * 9 + "é").encode(), "sha256")).
    assert_eq!(
        a.hash(&format!(" {}é\n", "rssmra80a01h501u".repeat(9))),
        "3d158e4fcd1f571867423034616bc6296c99b693c5d1b281cf21abb3ee7318ac"
    );
}

#[tokio::test]
async fn concurrent_records_are_all_committed_and_queryable() {
    let db = test_support::TestDb::sqlite("pdndgw-audit");
    let store = AuditStore::connect(&db).await.unwrap();
    let log = AuditLog::start(store.clone(), 64);
    let hasher = SubjectHasher::new(&[1u8; 32]).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let log = log.clone();
        let subject = Some(hasher.hash(if i.is_multiple_of(10) { "AAA" } else { "BBB" }));
        tasks.push(tokio::spawn(
            async move { log.record(record(i, subject)).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 200);
    let about_a = store
        .query(&AuditQuery {
            subject_hash: Some(hasher.hash("aaa")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(about_a.len(), 20);
    let even = store
        .query(&AuditQuery {
            purpose_id: Some("p-even".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(even.len(), 100);
    let none = store
        .query(&AuditQuery {
            to: Some("2000-01-01T00:00:00.000Z".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn closed_store_fails_the_waiting_request_and_turns_unhealthy() {
    let db = test_support::TestDb::sqlite("pdndgw-audit");
    let store = AuditStore::connect(&db).await.unwrap();
    let log = AuditLog::start(store.clone(), 8);
    log.record(record(0, None)).await.unwrap();
    assert!(log.is_healthy());
    store.close().await;
    assert!(log.record(record(1, None)).await.is_err());
    assert!(!log.is_healthy());
}

/// A store on a SQLite file of its own, removed (with its WAL) when the `TestDb` drops.
async fn temp_store() -> (AuditStore, test_support::TestDb) {
    let db = test_support::TestDb::sqlite("pdndgw-audit");
    let store = AuditStore::connect(&db).await.unwrap();
    (store, db)
}

#[tokio::test]
async fn a_hung_database_fails_the_waiting_request_within_the_timeout() {
    use sqlx::Connection;
    let (store, db) = temp_store().await;
    let log = AuditLog::start_with(
        store.clone(),
        AuditSettings {
            batch_max: 8,
            commit_timeout: Duration::from_millis(300),
            best_effort_per_sec: 10,
            commit_delay: Duration::ZERO,
        },
    );
    log.record(record(0, None)).await.unwrap();
    // Another connection holds the write lock: the commit cannot finish (SQLite's own busy
    // timeout is longer than ours).
    let mut blocker = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let err = log.record(record(1, None)).await.unwrap_err();
    assert!(
        matches!(err, AuditError::Timeout(_) | AuditError::Commit(_)),
        "{err}"
    );
    assert!(!log.is_healthy());
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(blocker);
    // The writer is not stuck: the next record commits.
    let mut committed = false;
    for i in 2..40 {
        if log.record(record(i, None)).await.is_ok() {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        committed,
        "the trail did not recover after the lock was released"
    );
}

#[tokio::test]
async fn best_effort_records_are_rate_limited_and_written_without_waiting() {
    let (store, _db) = temp_store().await;
    let log = AuditLog::start_with(
        store.clone(),
        AuditSettings {
            batch_max: 8,
            commit_timeout: Duration::from_secs(5),
            best_effort_per_sec: 5,
            commit_delay: Duration::ZERO,
        },
    );
    let queued = (0..50)
        .filter(|&i| log.record_best_effort(record(i, None)))
        .count();
    // A burst of the per-second rate, perhaps one more as time passes; never the flood.
    assert!((5..=7).contains(&queued), "queued {queued}");
    assert_eq!(log.best_effort_dropped(), (50 - queued) as u64);
    // Queued ones are written by the writer on its own.
    let mut written = 0;
    for _ in 0..50 {
        written = store.count().await.unwrap();
        if written == queued as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(written, queued as i64);
}

#[tokio::test]
async fn a_batch_is_stored_exactly_and_all_or_nothing() {
    let (store, _db) = temp_store().await;
    batch_round_trip(&store).await;
}

/// The same on PostgreSQL, whose statements number their parameters (`$n`) where SQLite's are
/// anonymous (`?`).
#[tokio::test]
async fn a_batch_is_stored_exactly_and_all_or_nothing_on_postgresql() {
    let Some(db) = test_support::TestDb::postgres().await else {
        return;
    };
    let store = AuditStore::connect(&db).await.unwrap();
    batch_round_trip(&store).await;
}

async fn batch_round_trip(store: &AuditStore) {
    // 101 = 64 + 32 + 4 + 1 rows: every statement size but the middle ones, and the seams;
    // text with quotes, backslashes, a control character and non-ASCII comes back unchanged.
    let mut batch: Vec<AuditRecord> = (0..101).map(|i| record(i, None)).collect();
    batch[7].user_id = Some("operatore \"ufficio\" \\ caffè 😀 \u{0007}".into());
    batch[70].loa = Some("LoA3".into());
    batch[100].subject_hash = Some("h".into());
    store.insert_batch(&batch).await.unwrap();
    let mut stored = store.query(&AuditQuery::default()).await.unwrap();
    stored.sort_by_key(|r| r.request_id[4..].parse::<usize>().unwrap());
    assert_eq!(stored, batch);

    // A duplicate record id in the last statement fails the whole batch: nothing of it stays.
    let mut again: Vec<AuditRecord> = (200..300).map(|i| record(i, None)).collect();
    again[99].record_id = batch[0].record_id.clone();
    assert!(store.insert_batch(&again).await.is_err());
    assert_eq!(store.count().await.unwrap(), 101);

    // A batch of one of the sizes kept prepared (SQLite), twice on the same statement.
    for start in [400, 500] {
        let batch: Vec<AuditRecord> = (start..start + 32).map(|i| record(i, None)).collect();
        store.insert_batch(&batch).await.unwrap();
    }
    let stored = store.query(&AuditQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 101 + 64);
    assert!(stored.iter().any(|r| r.request_id == "req-531"));
}

fn fruizione(i: usize) -> FruizioneRecord {
    FruizioneRecord {
        record_id: uuid::Uuid::now_v7().to_string(),
        time: format_time(Utc::now()),
        request_id: format!("out-{i}"),
        caller: "protocollo".into(),
        fruizione: Some("inps-isee".into()),
        method: "POST".into(),
        purpose_id: Some("p-out".into()),
        client_id: Some("client".into()),
        voucher_jti: (!i.is_multiple_of(3)).then(|| format!("jti-out-{i}")),
        status: 200,
        remote_status: (!i.is_multiple_of(5)).then_some(200),
        latency_ms: i as i64,
        user_id: None,
    }
}

fn entries(eservice: &[AuditRecord], fruizioni: &[FruizioneRecord]) -> Vec<Entry> {
    eservice
        .iter()
        .cloned()
        .map(Entry::Eservice)
        .chain(fruizioni.iter().cloned().map(Entry::Fruizione))
        .chain([Entry::Flush])
        .collect()
}

async fn all_fruizioni(store: &AuditStore) -> Vec<FruizioneRecord> {
    let mut stored = store
        .query_fruizioni(&FruizioniQuery::default())
        .await
        .unwrap();
    stored.sort_by_key(|r| r.request_id[4..].parse::<usize>().unwrap());
    stored
}

#[tokio::test]
async fn fruizioni_batches_and_mixed_batches_are_stored_exactly_and_all_or_nothing() {
    let (store, _db) = temp_store().await;
    fruizioni_round_trip(&store).await;
}

#[tokio::test]
async fn fruizioni_batches_and_mixed_batches_are_stored_exactly_and_all_or_nothing_on_postgresql() {
    let Some(db) = test_support::TestDb::postgres().await else {
        return;
    };
    let store = AuditStore::connect(&db).await.unwrap();
    fruizioni_round_trip(&store).await;
}

async fn fruizioni_round_trip(store: &AuditStore) {
    // 70 = 64 + 4 + 2 rows, in one transaction (on a SQLite file, the writer's own);
    // text with quotes, a control character and non-ASCII comes back unchanged.
    let mut batch: Vec<FruizioneRecord> = (0..70).map(fruizione).collect();
    batch[3].user_id = Some("operatore \"ufficio\" \\ caffè 😀 \u{0007}".into());
    batch[69].status = 502;
    batch[69].remote_status = None;
    store.insert_entries(&entries(&[], &batch)).await.unwrap();
    assert_eq!(all_fruizioni(store).await, batch);

    // A duplicate record id in the batch's last row: nothing of the batch stays.
    let mut again: Vec<FruizioneRecord> = (100..116).map(fruizione).collect();
    again[15].record_id = batch[0].record_id.clone();
    assert!(store.insert_entries(&entries(&[], &again)).await.is_err());
    assert_eq!(all_fruizioni(store).await.len(), 70);

    // A batch with records of both tables: a duplicate in either table fails both (5 = 4 + 1
    // rows inside the transaction of both tables).
    let eservice: Vec<AuditRecord> = (0..5).map(|i| record(i, None)).collect();
    let mut out: Vec<FruizioneRecord> = (200..203).map(fruizione).collect();
    out[2].record_id = batch[1].record_id.clone();
    assert!(store
        .insert_entries(&entries(&eservice, &out))
        .await
        .is_err());
    assert_eq!(store.count().await.unwrap(), 0);
    assert_eq!(all_fruizioni(store).await.len(), 70);
    // Without the duplicate both tables get their rows.
    out[2] = fruizione(202);
    store
        .insert_entries(&entries(&eservice, &out))
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 5);
    let stored = all_fruizioni(store).await;
    assert_eq!(stored.len(), 73);
    assert_eq!(stored[70..], out[..]);
    // Nothing but a flush writes nothing and succeeds.
    store.insert_entries(&[Entry::Flush]).await.unwrap();
}

// --- group commit ---

fn delaying(store: &AuditStore, delay: Duration) -> AuditLog {
    AuditLog::start_with(
        store.clone(),
        AuditSettings {
            batch_max: 64,
            commit_timeout: Duration::from_secs(10),
            best_effort_per_sec: 10,
            commit_delay: delay,
        },
    )
}

#[tokio::test]
async fn a_small_batch_waits_for_the_records_on_their_way_and_commits_them_together() {
    let (store, _db) = temp_store().await;
    let log = delaying(&store, Duration::from_secs(3));
    // Four requests inside the audit stage; the first one's record arrives.
    let mut coming: Vec<Coming> = (0..4).map(|_| log.expect()).collect();
    drop(coming.pop());
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.record(record(0, None)).await }
    });
    // Three more are on their way: the first record is not committed alone.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!first.is_finished());
    assert_eq!(store.count().await.unwrap(), 0);
    // They arrive: all four commit, well before the delay is over.
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    for i in 1..4 {
        drop(coming.pop());
        let log = log.clone();
        rest.push(tokio::spawn(
            async move { log.record(record(i, None)).await },
        ));
    }
    first.await.unwrap().unwrap();
    for r in rest {
        r.await.unwrap().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(store.count().await.unwrap(), 4);
}

#[tokio::test]
async fn a_lone_record_commits_without_waiting() {
    let (store, _db) = temp_store().await;
    let log = delaying(&store, Duration::from_secs(3));
    let started = std::time::Instant::now();
    {
        let _coming = log.expect();
    }
    log.record(record(0, None)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(store.count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_record_waits_at_most_the_delay_for_one_that_never_comes() {
    let (store, _db) = temp_store().await;
    let delay = Duration::from_millis(300);
    let log = delaying(&store, delay);
    // A request that entered the stage and has not finished (its record never arrives here).
    let _stuck = log.expect();
    let started = std::time::Instant::now();
    log.record(record(0, None)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= delay, "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn every_table_binds_one_value_a_column() {
    use super::rows::TableRow;
    let columns = |list: &str| list.split(',').count();
    assert_eq!(
        record(0, Some("h".into())).values().len(),
        columns(AuditRecord::COLUMNS)
    );
    assert_eq!(
        fruizione(1).values().len(),
        columns(FruizioneRecord::COLUMNS)
    );
}

#[tokio::test]
async fn a_closed_sqlite_store_refuses_direct_commits() {
    let (store, _db) = temp_store().await;
    store.insert_batch(&[record(0, None)]).await.unwrap();
    store.close().await;
    let err = store.insert_batch(&[record(1, None)]).await.unwrap_err();
    assert!(matches!(err, AuditError::Commit(_)), "{err}");
}
