//! The in-memory store passes the store conformance suite.
#![cfg(feature = "test-util")]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, DeploymentStatus, StartOptions};
use hookgate::store::{DynStore, Lease, MemoryStore, NewDeployment, Store, conformance};
use hookgate::test_util::SequentialIds;

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

/// The memory store keeps the state a save is given, not a copy of it: the deployment shares
/// it with the row until its next input copies it, and a load hands out the same state.
#[tokio::test]
async fn a_save_keeps_the_deployments_state_itself() {
    let source = "application: shop\ntargets:\n  prod: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n";
    let plan = Arc::new(Plan::from_yaml(source).unwrap());
    let mut d = Deployment::start(
        plan,
        DeploymentId::from("d1"),
        StartOptions::default(),
        &mut SequentialIds::default(),
        Utc::now(),
    );
    let events: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
    while d.poll_action().is_some() {}
    let store = MemoryStore::new();
    let v1 = store
        .create(NewDeployment::new(&d, source), &events)
        .await
        .unwrap();
    let stored = store.load(d.id()).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&stored.state, d.state()), "created");

    d.handle_cancel(Utc::now(), "ops").unwrap();
    let events: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
    assert!(
        !Arc::ptr_eq(&stored.state, d.state()),
        "the cancel copied the state the row shares"
    );
    let v2 = store
        .save(d.id(), v1, d.state(), d.status(), &events)
        .await
        .unwrap();
    let saved = store.load(d.id()).await.unwrap().unwrap();
    assert_eq!(saved.version, v2);
    assert!(Arc::ptr_eq(&saved.state, d.state()), "saved");
    let first = Deployment::restore(Arc::clone(d.plan()), stored.state).unwrap();
    assert_eq!(
        (first.status(), d.status()),
        (DeploymentStatus::Running, DeploymentStatus::Canceled),
        "what the first load handed out is as it was"
    );
}

/// Two replicas taking orphans from one memory store at the same moment: each answer short of
/// its limit means no orphan was left, as the trait promises (and PostgreSQL's `SKIP LOCKED`
/// gives), so an engine's recovery that stops at such an answer leaves none waiting for its
/// next round. The two pick the same oldest candidates; the one that finds them taken takes
/// the next ones instead. Enough orphans that the two claims overlap in time.
#[test]
fn orphans_claimed_at_once_by_two_replicas_are_all_taken() {
    let source = "application: shop\ntargets: {prod: {}}\n";
    let plan = Arc::new(Plan::from_yaml(source).unwrap());
    const ORPHANS: usize = 1000;
    for round in 0..10 {
        let store = Arc::new(MemoryStore::new());
        for i in 0..ORPHANS {
            let d = Deployment::start(
                Arc::clone(&plan),
                DeploymentId::from(format!("d{round}-{i}").as_str()),
                StartOptions::default(),
                &mut SequentialIds::default(),
                Utc::now(),
            );
            block_on(store.create(NewDeployment::new(&d, source), &[])).unwrap();
        }
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let claims: Vec<_> = ["x", "y"]
            .map(|owner| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let lease = Lease::new(owner, Utc::now(), Duration::from_secs(30));
                    let runtime = runtime();
                    barrier.wait();
                    runtime
                        .block_on(store.claim_orphans(&lease, ORPHANS / 2))
                        .unwrap()
                        .deployments
                        .len()
                })
            })
            .into_iter()
            .map(|claim| claim.join().unwrap())
            .collect();
        assert_eq!(
            claims,
            [ORPHANS / 2; 2],
            "round {round}: each took its limit, half of them"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn block_on<F: Future>(work: F) -> F::Output {
    runtime().block_on(work)
}
