//! Several engines sharing one in-memory store as replicas: exactly-once callbacks and host
//! steps whichever replica a callback reaches, and fail-over when a replica stops. The same
//! scenarios run on PostgreSQL in `tests/store_postgres_replicas.rs`.
#![cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver",
    feature = "test-util"
))]

mod replicas;
mod support;

use std::sync::Arc;

use hookgate::store::{DynStore, MemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_apply_each_callback_once_and_run_each_step_once() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    replicas::two_replica_storm(store, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_deployments_are_taken_over_after_its_leases_end() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    replicas::failover(store).await;
}
