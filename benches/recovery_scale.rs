//! Load harness: how long an engine takes to resume many unfinished deployments from SQLite.
//!
//! `cargo bench --bench recovery_scale --features runtime,sqlite,test-util -- [COUNT]`
//! (default 100000) starts COUNT deployments of a three-environment plan on a SQLite store in a
//! temporary directory, each left waiting on a callback, drops that engine, then times
//! `Engine::recover` on a fresh engine over the same file. The same-run baseline is reading the
//! same rows back with `Store::list_unfinished` alone, timed before and after the recovery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::store::{SqliteStore, Store};
use hookgate::test_util::SequentialIds;

mod support;

use support::{THREE_ENVIRONMENTS as PLAN, accepting_dispatcher, count_arg, two_workers};

fn engine(store: Arc<SqliteStore>) -> Engine {
    Engine::builder(accepting_dispatcher(), SimulatedHost)
        .shared_store(store)
        .ids(SequentialIds::default())
        .allow_concurrent_deployments(true)
        .build()
}

fn main() {
    let count = count_arg(100_000);
    let runtime = two_workers();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("recovery.db");
        let first_store = Arc::new(SqliteStore::open(&path).await.expect("the store opens"));
        let first = engine(Arc::clone(&first_store));
        let started = Instant::now();
        let mut pending = tokio::task::JoinSet::new();
        for _ in 0..count {
            let first = first.clone();
            pending.spawn(async move { first.start(PLAN, Default::default()).await.map(|_| ()) });
            if pending.len() >= 256 {
                pending.join_next().await.expect("a task").expect("no panic").expect("started");
            }
        }
        while let Some(done) = pending.join_next().await {
            done.expect("no panic").expect("started");
        }
        while first.armed_deadlines() < count {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        first.shutdown().await;
        println!("{count} deployments waiting on a callback stored in {:.2?}", started.elapsed());
        drop(first);
        // Closed, its last checkpoint done, before anything is timed on the file.
        first_store.close().await;

        let store = Arc::new(SqliteStore::open(&path).await.expect("the store reopens"));
        // The baseline is timed on both sides of the recovery, which reads the same rows: the
        // first read finds the file colder than the recovery does, the second warmer.
        let read_before = read_all(&store, count).await;
        let second = engine(Arc::clone(&store));
        let recover = Instant::now();
        let recovered = second.recover().await.expect("recovery");
        let recover_time = recover.elapsed();
        assert_eq!(recovered.resumed, count);
        let read_after = read_all(&store, count).await;
        let read_time = read_before.min(read_after);
        println!(
            "recovered {} deployments in {recover_time:.2?} ({} changed); reading the rows alone: {read_before:.2?} before, {read_after:.2?} after (ratio {:.1} to the faster)",
            recovered.resumed,
            recovered.changed,
            recover_time.as_secs_f64() / read_time.as_secs_f64()
        );
    });
}

/// How long `Store::list_unfinished` takes to read the `count` rows back.
async fn read_all(store: &SqliteStore, count: usize) -> Duration {
    let read = Instant::now();
    let rows = store.list_unfinished().await.expect("the rows read back");
    let read_time = read.elapsed();
    assert_eq!(rows.deployments.len(), count);
    read_time
}
