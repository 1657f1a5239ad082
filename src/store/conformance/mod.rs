//! The checks every [`Store`] backend must pass (feature `test-util`), in the manner of
//! `object_store`'s integration suite.
//!
//! Each check is a `pub async fn` taking the store, asserting with panics as tests do. Checks
//! use their own randomly tagged deployments, applications and callback ids, so they can share
//! one store, run in any order, and run against a database that outlives the run. They use
//! only the [`Store`] trait and no runtime, so a PostgreSQL store can run them unchanged.
//!
//! ```
//! use std::sync::Arc;
//! use hookgate::store::{DynStore, MemoryStore, conformance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store: Arc<DynStore> = Arc::new(MemoryStore::new());
//! conformance::run_all(&store).await;
//! # }
//! ```
//!
//! [`Store`]: super::Store

mod fixture;
mod leases;
mod lifecycle;
mod queries;
mod versions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

pub use leases::{
    change_notices, lease_claims, lease_release, lease_renewal, orphan_claims, release_by_run,
    replica_registration,
};
pub use lifecycle::{
    another_deployments_state_refused, duplicate_create_refused, large_state, round_trip,
    unknown_ids,
};
pub use queries::{
    callback_lookup, exclusive_creates, running_for_application, unfinished_listing,
};
pub use versions::{concurrent_saves, history_order_and_atomicity, stale_version_conflicts};

use super::{DynStore, StoreError};

/// One `save` of [`concurrent_saves`], handed to its `spawn` function.
pub type SaveTask = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send + 'static>>;

/// Runs every check. [`concurrent_saves`] runs its saves in the caller's task; call it again
/// with your runtime's spawn to have them run on several threads.
pub async fn run_all(store: &Arc<DynStore>) {
    round_trip(&**store).await;
    duplicate_create_refused(&**store).await;
    another_deployments_state_refused(&**store).await;
    unknown_ids(&**store).await;
    large_state(&**store).await;
    stale_version_conflicts(&**store).await;
    concurrent_saves(store, |task| task).await;
    history_order_and_atomicity(&**store).await;
    callback_lookup(&**store).await;
    unfinished_listing(&**store).await;
    running_for_application(&**store).await;
    exclusive_creates(&**store).await;
}

/// Runs every check of what several replicas need: leases, change notices and the record of
/// each replica's run. Run it on a store no engine is using, since [`orphan_claims`] takes
/// every unleased deployment.
pub async fn run_replica_checks(store: &Arc<DynStore>) {
    lease_claims(&**store).await;
    lease_renewal(&**store).await;
    orphan_claims(&**store).await;
    lease_release(&**store).await;
    change_notices(&**store).await;
    replica_registration(&**store).await;
    release_by_run(&**store).await;
}

/// Polls every task whenever one may progress, so that they all run at once without a
/// runtime: each call of a pooled store then holds its own connection, and the database, not
/// the order of the list, decides which one wins.
async fn join_all<T>(mut tasks: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) -> Vec<T> {
    let mut results: Vec<Option<T>> = tasks.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (task, result) in tasks.iter_mut().zip(&mut results) {
            if result.is_none() {
                match task.as_mut().poll(cx) {
                    Poll::Ready(done) => *result = Some(done),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results.into_iter().flatten().collect()
}
