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

#[tokio::test]
async fn boxed_and_shared_stores_forward_every_method() {
    let boxed: Box<DynStore> = Box::new(MemoryStore::new());
    conformance::run_all(&(Arc::new(boxed) as Arc<DynStore>)).await;
    let shared: Arc<DynStore> = Arc::new(Arc::new(MemoryStore::new()));
    conformance::run_all(&(Arc::new(shared) as Arc<DynStore>)).await;
}

#[tokio::test]
async fn memory_store_passes_the_replica_checks() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
    conformance::run_replica_checks(&store).await;
    let shared: Arc<DynStore> = Arc::new(Arc::new(MemoryStore::new()));
    conformance::run_replica_checks(&(Arc::new(shared) as Arc<DynStore>)).await;
}
