//! The lookup index: a lookup by subject, purpose or consumer finds exactly the records a full
//! scan finds, before the indexer has passed them, after, and across what moves rowids (a purge
//! that empties the trail, a trail replaced under a kept index, an index file deleted).

use super::super::{format_time, AuditQuery, AuditRecord, AuditStore, SubjectHasher};
use super::*;
use crate::provider::audit_retention::{purge, Retention};
use chrono::{Duration as Days, Utc};

fn hasher() -> SubjectHasher {
    SubjectHasher::new(&[5u8; 32]).unwrap()
}

fn record(subject: Option<&str>, days_ago: i64) -> AuditRecord {
    AuditRecord {
        record_id: uuid::Uuid::new_v4().to_string(),
        time: format_time(Utc::now() - Days::days(days_ago)),
        request_id: "req".into(),
        consumer_id: Some("consumer".into()),
        client_id: None,
        purpose_id: Some("purpose".into()),
        voucher_jti: None,
        eservice: "anagrafe".into(),
        operation: Some("residenza".into()),
        status: 200,
        latency_ms: 1,
        subject_hash: subject.map(|s| hasher().hash(s)),
        user_id: None,
        user_location: None,
        loa: None,
    }
}

async fn about(store: &AuditStore, subject: &str) -> Vec<AuditRecord> {
    store
        .query(&AuditQuery {
            subject_hash: Some(hasher().hash(subject)),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The index's end and its entries by subject, read from its file.
fn index_state(db: &test_support::TestDb) -> (i64, i64) {
    let (upto, entries) = index_entries(db);
    (upto, entries[0])
}

/// The index's end and its entries of each kind (subject, purpose, consumer).
fn index_entries(db: &test_support::TestDb) -> (i64, [i64; 3]) {
    let path = index_path(&eservices::store::sqlite_file(&db.url).unwrap());
    let conn = Connection::open(path).unwrap();
    let count = |kind: i64| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM lookup_index WHERE kind = ?1",
            [kind],
            |r| r.get(0),
        )
        .unwrap()
    };
    let upto = conn
        .query_row("SELECT rowid_upto FROM indexed_upto", [], |r| r.get(0))
        .unwrap();
    (upto, [count(0), count(1), count(2)])
}

/// How many of the indexes by subject, purpose and consumer the trail itself has.
async fn trail_lookup_indexes(store: &AuditStore) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN \
         ('audit_log_subject', 'audit_log_purpose', 'audit_log_consumer')",
    )
    .fetch_one(store.pool())
    .await
    .unwrap()
}

async fn insert(store: &AuditStore, records: Vec<AuditRecord>) {
    store.insert_batch(&records).await.unwrap();
}

/// A trail at `db` with `n` records about AAA, all indexed, its store closed.
async fn indexed_and_closed(db: &test_support::TestDb, n: usize) {
    let store = AuditStore::connect(db).await.unwrap();
    insert(&store, (0..n).map(|_| record(Some("AAA"), 0)).collect()).await;
    store.index_lookups().unwrap();
    store.close().await;
}

/// Deletes a SQLite file with its WAL and shared-memory files.
fn remove_with_wal(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
}

/// Records are kept 30 days; no aggregates, no deposit needed.
fn thirty_days() -> Retention {
    Retention {
        records_days: Some(30),
        aggregate_days: None,
        require_deposit: false,
    }
}

#[tokio::test]
async fn lookups_find_the_same_records_before_and_after_the_index_passes_them() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    // The trail itself has no index by subject, purpose or consumer: that is the point.
    let inline = trail_lookup_indexes(&store).await;
    assert_eq!(inline, 0);
    let subjects = ["AAA", "BBB", "CCC"];
    let mut expected = [0usize; 3];
    let mut batch = Vec::new();
    for i in 0..300usize {
        let which = (i * 7 + i / 5) % 4;
        if which < 3 {
            expected[which] += 1;
            batch.push(record(Some(subjects[which]), 0));
        } else {
            batch.push(record(None, 0));
        }
    }
    insert(&store, batch).await;
    // Nothing indexed yet: every lookup is the tail's.
    assert_eq!(index_state(&db), (0, 0));
    for (s, n) in subjects.iter().zip(expected) {
        assert_eq!(about(&store, s).await.len(), n, "{s} before indexing");
    }
    // Part of the trail indexed (small passes), then all of it.
    let mut indexer = Indexer::open(&eservices::store::sqlite_file(&db.url).unwrap()).unwrap();
    assert_eq!(indexer.pass(100).unwrap(), 100);
    assert_eq!(index_state(&db).0, 100);
    for (s, n) in subjects.iter().zip(expected) {
        assert_eq!(about(&store, s).await.len(), n, "{s} with a third indexed");
    }
    assert_eq!(indexer.catch_up().unwrap(), 200);
    assert_eq!(indexer.pass(100).unwrap(), 0);
    let (upto, entries) = index_state(&db);
    assert_eq!(upto, 300);
    assert_eq!(
        entries,
        expected.iter().sum::<usize>() as i64,
        "records without a subject have no entry"
    );
    for (s, n) in subjects.iter().zip(expected) {
        let found = about(&store, s).await;
        assert_eq!(found.len(), n, "{s} indexed");
        assert!(found
            .iter()
            .all(|r| r.subject_hash == Some(hasher().hash(s))));
    }
    // New records after the index: found through the tail, then through the index.
    insert(&store, vec![record(Some("AAA"), 0), record(Some("DDD"), 0)]).await;
    assert_eq!(about(&store, "AAA").await.len(), expected[0] + 1);
    assert_eq!(about(&store, "DDD").await.len(), 1);
    assert_eq!(store.index_lookups().unwrap(), 2);
    assert_eq!(about(&store, "AAA").await.len(), expected[0] + 1);
    assert_eq!(about(&store, "DDD").await.len(), 1);
    assert!(about(&store, "EEE").await.is_empty());
}

#[tokio::test]
async fn a_purge_that_empties_the_trail_brings_the_index_end_down() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..5).map(|_| record(Some("AAA"), 40)).collect()).await;
    assert_eq!(store.index_lookups().unwrap(), 5);
    let report = purge(store.pool(), thirty_days(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(report.records, 5);
    // The purged records' entries are gone, and the end is the (empty) trail's.
    assert_eq!(index_state(&db), (0, 0));
    // SQLite gives the next records the rowids of the purged ones: they must be found.
    insert(&store, vec![record(Some("AAA"), 0), record(Some("BBB"), 0)]).await;
    assert_eq!(about(&store, "AAA").await.len(), 1);
    assert_eq!(about(&store, "BBB").await.len(), 1);
    store.index_lookups().unwrap();
    assert_eq!(about(&store, "AAA").await.len(), 1);
    assert_eq!(index_state(&db), (2, 2));
}

#[tokio::test]
async fn a_purge_that_keeps_records_drops_only_the_entries_below_them() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..3).map(|_| record(Some("AAA"), 40)).collect()).await;
    insert(&store, (0..2).map(|_| record(Some("AAA"), 1)).collect()).await;
    store.index_lookups().unwrap();
    purge(store.pool(), thirty_days(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(index_state(&db), (5, 2));
    assert_eq!(about(&store, "AAA").await.len(), 2);
}

#[tokio::test]
async fn a_trail_replaced_under_a_kept_index_is_indexed_afresh() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let file = eservices::store::sqlite_file(&db.url).unwrap();
    indexed_and_closed(&db, 5).await;
    // Another trail in the same place (the old one deleted), the index file kept.
    remove_with_wal(&file);
    // The new trail is longer than the old one was: its records 1 to 5 sit at or below the
    // index's end, which only the trail's id tells apart.
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..7).map(|_| record(Some("BBB"), 0)).collect()).await;
    let log = super::super::AuditLog::start(store.clone(), 8);
    // The writer's start reconciled the index: emptied, from the start of the new trail.
    assert_eq!(index_state(&db), (0, 0));
    log.record(record(Some("BBB"), 0)).await.unwrap();
    assert_eq!(about(&store, "BBB").await.len(), 8);
    assert!(about(&store, "AAA").await.is_empty());
    store.index_lookups().unwrap();
    assert_eq!(about(&store, "BBB").await.len(), 8);
    assert_eq!(index_state(&db), (8, 8));
}

#[tokio::test]
async fn a_trail_shorter_than_the_index_is_trimmed_at_the_writers_start() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..5).map(|_| record(Some("AAA"), 0)).collect()).await;
    store.index_lookups().unwrap();
    // The last records went (a restore of an older copy of the same trail).
    sqlx::query("DELETE FROM audit_log WHERE rowid > 2")
        .execute(store.pool())
        .await
        .unwrap();
    let log = super::super::AuditLog::start(store.clone(), 8);
    assert_eq!(index_state(&db), (2, 2));
    log.record(record(Some("AAA"), 0)).await.unwrap();
    assert_eq!(about(&store, "AAA").await.len(), 3);
}

#[tokio::test]
async fn a_deleted_index_file_is_rebuilt_from_the_trail() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let file = eservices::store::sqlite_file(&db.url).unwrap();
    indexed_and_closed(&db, 4).await;
    remove_with_wal(&index_path(&file));
    let store = AuditStore::connect(&db).await.unwrap();
    assert_eq!(about(&store, "AAA").await.len(), 4);
    assert_eq!(store.index_lookups().unwrap(), 4);
    assert_eq!(about(&store, "AAA").await.len(), 4);
}

#[tokio::test]
async fn the_writers_indexer_catches_up_by_itself() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    let log = super::super::AuditLog::start(store.clone(), 8);
    for _ in 0..3 {
        log.record(record(Some("AAA"), 0)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + INTERVAL * 10;
    while index_state(&db).0 < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the indexer did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(index_state(&db), (3, 3));
}

#[tokio::test]
async fn a_pass_that_a_purge_overtook_moves_nothing() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..3).map(|_| record(Some("AAA"), 0)).collect()).await;
    let file = eservices::store::sqlite_file(&db.url).unwrap();
    let mut indexer = Indexer::open(&file).unwrap();
    // A purge lowered the end after this pass read it: the pass's compare fails.
    indexer
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER lower BEFORE INSERT ON lookup_index \
             BEGIN UPDATE indexed_upto SET rowid_upto = -1; END",
        )
        .unwrap();
    assert_eq!(indexer.pass(100).unwrap(), 0);
    assert_eq!(index_state(&db), (0, 0));
}

#[test]
fn a_key_is_the_hash_prefix_as_a_number_and_any_other_text_still_has_one() {
    assert_eq!(key("0000000000000001ffff"), 1);
    assert_eq!(key("ffffffffffffffff"), -1);
    assert_eq!(key(&hasher().hash("AAA")), key(&hasher().hash("AAA")));
    assert_ne!(key(&hasher().hash("AAA")), key(&hasher().hash("BBB")));
    // Not 16 hex digits (a sign, a short text, non-ASCII): FNV-1a, the same every time.
    for odd in ["+000000000000001", "abc", "", "àèìòùàèìòùàèìòùà"] {
        assert_eq!(key(odd), key(odd), "{odd}");
    }
    assert_ne!(key("+000000000000001"), 1);
}

#[tokio::test]
async fn a_subject_hash_that_is_not_hex_is_found_too() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    let mut odd = record(None, 0);
    odd.subject_hash = Some("not a hex hash".into());
    insert(&store, vec![odd, record(Some("AAA"), 0)]).await;
    store.index_lookups().unwrap();
    let found = store
        .query(&AuditQuery {
            subject_hash: Some("not a hex hash".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(index_state(&db), (2, 2));
}

async fn by(store: &AuditStore, purpose: Option<&str>, consumer: Option<&str>) -> Vec<AuditRecord> {
    store
        .query(&AuditQuery {
            purpose_id: purpose.map(str::to_owned),
            consumer_id: consumer.map(str::to_owned),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn lookups_by_purpose_and_consumer_agree_with_the_trail_before_and_after_indexing() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    // 60 records: purposes p0..p2 and consumers c0..c3 in a pattern, some without either.
    let mut batch = Vec::new();
    for i in 0..60usize {
        let mut r = record(Some("AAA"), 0);
        r.purpose_id = (i % 5 != 4).then(|| format!("p{}", i % 3));
        r.consumer_id = (i % 7 != 6).then(|| format!("c{}", i % 4));
        batch.push(r);
    }
    let expected = |p: Option<&str>, c: Option<&str>| {
        batch
            .iter()
            .filter(|r| p.is_none_or(|p| r.purpose_id.as_deref() == Some(p)))
            .filter(|r| c.is_none_or(|c| r.consumer_id.as_deref() == Some(c)))
            .count()
    };
    let asks = [
        (Some("p0"), None),
        (Some("p2"), None),
        (None, Some("c1")),
        (None, Some("c3")),
        (Some("p1"), Some("c2")),
        (Some("p9"), None),
        (None, Some("C1")),
    ];
    store.insert_batch(&batch).await.unwrap();
    for (p, c) in asks {
        assert_eq!(
            by(&store, p, c).await.len(),
            expected(p, c),
            "{p:?} {c:?} before"
        );
    }
    let mut indexer = Indexer::open(&eservices::store::sqlite_file(&db.url).unwrap()).unwrap();
    assert_eq!(indexer.pass(25).unwrap(), 25);
    for (p, c) in asks {
        assert_eq!(
            by(&store, p, c).await.len(),
            expected(p, c),
            "{p:?} {c:?} partly"
        );
    }
    assert_eq!(indexer.catch_up().unwrap(), 35);
    let with_purpose = batch.iter().filter(|r| r.purpose_id.is_some()).count() as i64;
    let with_consumer = batch.iter().filter(|r| r.consumer_id.is_some()).count() as i64;
    assert_eq!(index_entries(&db), (60, [60, with_purpose, with_consumer]));
    for (p, c) in asks {
        let found = by(&store, p, c).await;
        assert_eq!(found.len(), expected(p, c), "{p:?} {c:?} indexed");
        assert!(found
            .iter()
            .all(|r| p.is_none_or(|p| r.purpose_id.as_deref() == Some(p))
                && c.is_none_or(|c| r.consumer_id.as_deref() == Some(c))));
    }
    store.close().await;
}

#[tokio::test]
async fn a_purge_drops_the_purpose_and_consumer_entries_of_the_records_it_removes() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, (0..3).map(|_| record(None, 40)).collect()).await;
    insert(&store, (0..2).map(|_| record(None, 1)).collect()).await;
    store.index_lookups().unwrap();
    assert_eq!(index_entries(&db), (5, [0, 5, 5]));
    purge(store.pool(), thirty_days(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(index_entries(&db), (5, [0, 2, 2]));
    assert_eq!(by(&store, Some("purpose"), None).await.len(), 2);
    assert_eq!(by(&store, None, Some("consumer")).await.len(), 2);
}

#[tokio::test]
async fn the_index_file_of_subjects_only_from_before_is_removed() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let file = eservices::store::sqlite_file(&db.url).unwrap();
    let mut former = file.as_os_str().to_owned();
    former.push(".subjects");
    std::fs::write(&former, b"an index of an earlier version").unwrap();
    let store = AuditStore::connect(&db).await.unwrap();
    assert!(!std::path::Path::new(&former).exists());
    assert!(index_path(&file).exists());
    store.close().await;
}

#[tokio::test]
async fn a_trail_whose_index_cannot_be_made_is_still_read_whole() {
    let db = test_support::TestDb::sqlite("pdndgw-lookups");
    let file = eservices::store::sqlite_file(&db.url).unwrap();
    // Something that is not a database where the index file would go (as a read-only
    // directory would refuse it).
    let blocked = index_path(&file);
    std::fs::create_dir_all(&blocked).unwrap();
    let store = AuditStore::connect(&db).await.unwrap();
    insert(&store, vec![record(Some("AAA"), 0), record(Some("BBB"), 0)]).await;
    assert_eq!(about(&store, "AAA").await.len(), 1);
    assert_eq!(by(&store, Some("purpose"), None).await.len(), 2);
    assert_eq!(by(&store, None, Some("consumer")).await.len(), 2);
    // Nothing was written into the trail for it: no index of its own either.
    let inline = trail_lookup_indexes(&store).await;
    assert_eq!(inline, 0);
    store.close().await;
    std::fs::remove_dir(&blocked).unwrap();
}
