//! The in-memory store passes the store conformance suite.
#![cfg(feature = "test-util")]

use std::sync::Arc;

use hookgate::store::{DynStore, MemoryStore, conformance};

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_on_several_threads_have_one_winner() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    conformance::concurrent_saves(&store, |task| {
        Box::pin(async { tokio::spawn(task).await.expect("the save task panicked") })
    })
    .await;
}

/// Leases and change notices included: a wrapper that fell back to the trait's defaults
/// (`Unsupported`) for them would fail the replica checks.
#[tokio::test]
async fn boxed_and_shared_stores_forward_every_method() {
    let boxed: Box<DynStore> = Box::new(MemoryStore::new());
    let boxed = Arc::new(boxed) as Arc<DynStore>;
    conformance::run_all(&boxed).await;
    conformance::run_replica_checks(&boxed).await;
    let shared: Arc<DynStore> = Arc::new(Arc::new(MemoryStore::new()));
    let shared = Arc::new(shared) as Arc<DynStore>;
    conformance::run_all(&shared).await;
    conformance::run_replica_checks(&shared).await;
}

#[tokio::test]
async fn memory_store_passes_the_replica_checks() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
    conformance::run_replica_checks(&store).await;
    let shared: Arc<DynStore> = Arc::new(Arc::new(MemoryStore::new()));
    conformance::run_replica_checks(&(Arc::new(shared) as Arc<DynStore>)).await;
}
