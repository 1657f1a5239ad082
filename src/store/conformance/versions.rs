use std::sync::Arc;

use super::fixture::{Fixture, Started};
use super::{SaveTask, join_all};
use crate::core::Event;
use crate::store::{DynStore, StoreError};

/// A save with a stale version is [`StoreError::Conflict`] carrying the stored version, and
/// the write that came first stands, events included.
pub async fn stale_version_conflicts(store: &DynStore) {
    let mut fx = Fixture::new("stale");
    let mut first = fx.start("d", &fx.name("app"));
    first.create_in(store).await;
    let mut second = first.clone();

    let first_events = first.sent(1);
    first
        .save(store, 1, &first_events)
        .await
        .expect("save succeeds");
    let second_events = second.sent(2);
    for expected in [1, 0, 3, i64::MAX as u64, u64::MAX] {
        let refused = second.save(store, expected, &second_events).await;
        assert!(
            matches!(
                &refused,
                Err(StoreError::Conflict { id, expected: e, actual: 2 })
                    if id == first.id() && *e == expected
            ),
            "expected version {expected} is refused with the stored version: {refused:?}"
        );
    }

    let stored = store.load(first.id()).await.expect("load succeeds");
    let stored = stored.expect("stored");
    assert_eq!(stored.version, 2);
    assert_eq!(stored.state, *first.state(), "the first write stands");
    assert_history(store, &first, &[(1, &first.events), (2, &first_events)]).await;
}

/// Many saves expecting the same version at once: exactly one wins, every other one is a
/// conflict, and the winner's state and events are what is stored.
///
/// `spawn` runs each save: `|task| task` runs them all in the caller's task (as
/// [`run_all`](super::run_all) does); a runtime's spawn runs them on several threads:
///
/// ```
/// # use std::sync::Arc;
/// # use hookgate::store::{DynStore, MemoryStore, conformance};
/// # #[tokio::main]
/// # async fn main() {
/// let store: Arc<DynStore> = Arc::new(MemoryStore::new());
/// conformance::concurrent_saves(&store, |task| {
///     Box::pin(async { tokio::spawn(task).await.expect("the save task panicked") })
/// })
/// .await;
/// # }
/// ```
pub async fn concurrent_saves(store: &Arc<DynStore>, spawn: impl Fn(SaveTask) -> SaveTask) {
    const WRITERS: i64 = 16;
    let mut fx = Fixture::new("concurrent");
    let created = fx.start("d", &fx.name("app"));
    created.create_in(store).await;
    // Each writer applies its own input to the same version, so its state and events are its
    // own and the stored row shows who won.
    let writers: Vec<(Started, Vec<Event>)> = (0..WRITERS)
        .map(|i| {
            let mut writer = created.clone();
            let events = writer.sent(i);
            (writer, events)
        })
        .collect();
    let tasks = writers
        .iter()
        .map(|(writer, events)| {
            let store = Arc::clone(store);
            let (id, state) = (writer.id().clone(), writer.state().clone());
            let (status, events) = (writer.deployment.status(), events.clone());
            spawn(Box::pin(async move {
                store.save(&id, 1, &state, status, &events).await
            }))
        })
        .collect();
    let results = join_all(tasks).await;

    let winners: Vec<_> = (0..).zip(&results).filter(|(_, r)| r.is_ok()).collect();
    let [(winner, won)] = winners[..] else {
        panic!("exactly one of {WRITERS} saves of version 1 wins: {results:?}");
    };
    assert!(matches!(won, Ok(2)), "the winner stores version 2: {won:?}");
    for refused in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                refused,
                Err(StoreError::Conflict {
                    expected: 1,
                    actual: 2,
                    ..
                })
            ),
            "the others conflict: {refused:?}"
        );
    }
    let (winner, winner_events) = &writers[winner];
    let stored = store.load(created.id()).await.expect("load succeeds");
    let stored = stored.expect("stored");
    assert_eq!(stored.version, 2);
    assert_eq!(
        stored.state,
        *winner.state(),
        "the winner's state is stored"
    );
    let expected = [(1, &created.events), (2, winner_events)];
    assert_history(&**store, &created, &expected).await;
}

/// The history lists every event once, in the order appended, each with the version it was
/// written with, and never runs ahead of or behind the stored state.
pub async fn history_order_and_atomicity(store: &DynStore) {
    let mut fx = Fixture::new("history");
    let mut d = fx.start("d", &fx.name("app"));
    d.create_in(store).await;
    let created = d.events.clone();
    let sent = d.sent(1);
    let notes: Vec<Event> = ["one", "two", "three"]
        .iter()
        .flat_map(|m| d.progress(m))
        .collect();
    let cancel = d.cancel();
    let batches = [&sent, &notes, &Vec::new(), &cancel];
    let mut expected = vec![(1, &created)];
    for (version, events) in (2..).zip(batches) {
        assert_eq!(
            d.save(store, version - 1, events)
                .await
                .expect("save succeeds"),
            version
        );
        expected.push((version, events));
        assert_history(store, &d, &expected).await;
        let stored = store.load(d.id()).await.expect("load succeeds");
        assert_eq!(stored.expect("stored").version, version);
    }
    let refused = d.save(store, 1, &sent).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_history(store, &d, &expected).await;
}

/// Asserts that the history of `d` is exactly the `(version, events)` batches, in order.
async fn assert_history(store: &DynStore, d: &Started, batches: &[(u64, &Vec<Event>)]) {
    let history = store.history(d.id()).await.expect("history succeeds");
    let got: Vec<_> = history
        .iter()
        .map(|e| (e.seq, e.version, &e.event))
        .collect();
    let want: Vec<_> = batches
        .iter()
        .flat_map(|(version, events)| events.iter().map(move |e| (*version, e)))
        .zip(1..)
        .map(|((version, event), seq)| (seq, version, event))
        .collect();
    assert_eq!(got, want, "history of {}", d.id());
}
