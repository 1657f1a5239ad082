//! The SQLite store's write-ahead log: checkpointed beside the writer, it stays bounded under a
//! steady stream of batches, and closing the store checkpoints it.
#![cfg(all(feature = "sqlite", feature = "test-util"))]

mod store_support;

use std::path::Path;
use std::sync::Arc;

use hookgate::store::{SqliteOptions, SqliteStore, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use store_support::{created, progress};

/// The log's size in bytes; 0 when there is none.
fn wal_size(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

/// Batches that write far more than the log may hold (about 100 MB of pages, against a limit
/// of 4000 pages of 4 KiB) leave it well under that: checkpoints keep up, or the writer runs
/// one itself. After `close` the log is empty.
#[tokio::test]
async fn the_log_stays_bounded_and_close_checkpoints_it() {
    const DEPLOYMENTS: usize = 32;
    const BATCHES: usize = 200;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("hookgate.db");
    let store = Arc::new(SqliteStore::open(&db).await.expect("open"));
    let mut deployments = created(&*store, DEPLOYMENTS).await;

    // Each event note spans several pages, so every batch writes a few hundred of them.
    let note = "x".repeat(12_000);
    let mut largest = 0;
    for batch in 0..BATCHES {
        let mut saves = Vec::new();
        for d in &mut deployments {
            let events = progress(d, note.clone());
            let store = Arc::clone(&store);
            let (id, state, status) = (d.id().clone(), d.state().clone(), d.status());
            let expected = 1 + batch as u64;
            saves.push(tokio::spawn(async move {
                store.save(&id, expected, &state, status, &events).await
            }));
        }
        for saved in saves {
            saved.await.expect("save task").expect("saved");
        }
        largest = largest.max(wal_size(&db));
    }
    assert!(
        largest < 48 << 20,
        "the log reached {largest} bytes after about 100 MB of writes"
    );

    store.close().await;
    assert_eq!(wal_size(&db), 0, "closing checkpoints the log");
}

/// A `close` whose caller stops waiting (a timeout around shutdown) is carried to its end: the
/// log is still checkpointed and the store closed.
#[tokio::test]
async fn a_close_whose_caller_goes_away_still_checkpoints_the_log() {
    use std::pin::pin;
    use std::task::{Context, Waker};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("hookgate.db");
    let store = SqliteStore::open(&db).await.expect("open");
    let mut deployments = created(&store, 4).await;
    assert!(wal_size(&db) > 0, "the writes are in the log");

    {
        let mut closing = pin!(store.close());
        assert!(
            closing
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
        );
    }
    // Up to 30 s for a loaded machine; done as soon as the log is empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while wal_size(&db) != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(wal_size(&db), 0, "the log was checkpointed all the same");
    let d = &mut deployments[0];
    let events = progress(d, "after close".to_owned());
    let refused = store.save(d.id(), 1, d.state(), d.status(), &events).await;
    assert!(
        matches!(&refused, Err(StoreError::Closed { store: "SQLite" })),
        "the store is closed: {refused:?}"
    );
}

/// A reader elsewhere (another process, a backup) holding a snapshot older than the last write
/// keeps part of the log in use: `close` copies what it can and returns, rather than waiting
/// under the store's busy timeout (here the longest SQLite takes, about 25 days) for that
/// reader to finish. What it left is taken up by the next opening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_does_not_wait_for_a_reader_elsewhere() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("hookgate.db");
    let options = SqliteOptions::default().with_busy_timeout(SqliteOptions::MAX_BUSY_TIMEOUT);
    let store = SqliteStore::open_with(&db, options).await.expect("open");
    let mut deployments = created(&store, 1).await;
    let elsewhere = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&db))
        .await
        .expect("another connection");
    let mut reader = elsewhere.acquire().await.expect("a connection");
    sqlx::query("BEGIN")
        .execute(&mut *reader)
        .await
        .expect("BEGIN");
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
        .fetch_one(&mut *reader)
        .await
        .expect("a read holding its snapshot");
    let d = &mut deployments[0];
    let events = progress(d, "after the reader's snapshot");
    store
        .save(d.id(), 1, d.state(), d.status(), &events)
        .await
        .expect("saved");

    tokio::time::timeout(std::time::Duration::from_secs(60), store.close())
        .await
        .expect("close returns while the reader holds its snapshot");

    sqlx::query("ROLLBACK")
        .execute(&mut *reader)
        .await
        .expect("ROLLBACK");
    drop(reader);
    elsewhere.close().await;
    let reopened = SqliteStore::open(&db).await.expect("reopened");
    let stored = reopened.load(d.id()).await.expect("read").expect("stored");
    assert_eq!(stored.version, 2, "the save is kept");
    reopened.close().await;
    assert_eq!(wal_size(&db), 0, "closing again checkpoints the rest");
}
