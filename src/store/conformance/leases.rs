use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;

use super::fixture::{Fixture, oldest_first, t0};
use super::join_all;
use crate::core::DeploymentId;
use crate::store::{ChangeWatcher, DynStore, Lease, MAX_KEY_BYTES, StoreError};

const TTL: Duration = Duration::from_secs(30);

fn lease(owner: &str, secs: i64) -> Lease {
    Lease::new(owner, t0() + TimeDelta::seconds(secs), TTL)
}

/// A lease is taken when free, kept from other replicas while it lasts, taken over once it has
/// ended, never granted on a finished deployment, and an unknown deployment is
/// [`StoreError::NotFound`].
pub async fn lease_claims(store: &DynStore) {
    let mut fx = Fixture::new("claims");
    let application = fx.name("app");
    let d = fx.start("d", &application);
    let mut finished = fx.start("finished", &application);
    d.create_in(store).await;
    finished.create_in(store).await;
    let (a, b) = (fx.name("replica-a"), fx.name("replica-b"));

    let id = d.id();
    let claim = |owner: &str, secs| {
        let lease = lease(owner, secs);
        async move { store.claim(id, &lease).await.expect("claim succeeds") }
    };
    assert!(claim(&a, 0).await, "a free deployment is taken");
    assert!(claim(&a, 10).await, "the holder extends its own lease");
    assert!(!claim(&b, 20).await, "a live lease is kept from others");
    assert!(
        !claim(&b, 40).await,
        "a lease extended at 10 s lasts until 40 s"
    );
    assert!(claim(&b, 41).await, "an ended lease is taken over");
    assert!(!claim(&a, 42).await, "the old holder lost it");

    finished.cancel_created(store).await;
    let on_finished = store.claim(finished.id(), &lease(&a, 0)).await;
    assert!(
        !on_finished.expect("claim succeeds"),
        "a finished deployment has nothing to drive"
    );
    // An id from outside may hold what no stored id does (a NUL): unknown all the same.
    for unknown in [fx.name("unknown"), fx.name("a\0b")] {
        let unknown = DeploymentId(unknown);
        let refused = store.claim(&unknown, &lease(&a, 0)).await;
        assert!(
            matches!(&refused, Err(StoreError::NotFound { id }) if *id == unknown),
            "{refused:?}"
        );
    }
}

/// `renew` extends and lists exactly the unfinished deployments the owner still holds, with
/// their stored versions; one taken over by another replica, or finished, drops out.
pub async fn lease_renewal(store: &DynStore) {
    let mut fx = Fixture::new("renewal");
    let application = fx.name("app");
    let (a, b) = (fx.name("replica-a"), fx.name("replica-b"));
    let mut kept = fx.start("kept", &application);
    let taken = fx.start("taken", &application);
    let mut finished = fx.start("finished", &application);
    for d in [&kept, &taken, &finished] {
        store
            .create(d.new_deployment().leased(lease(&a, 0)), &d.events)
            .await
            .expect("create succeeds");
    }
    let events = kept.sent(1);
    kept.save(store, 1, &events).await.expect("save succeeds");
    finished.cancel_created(store).await;

    let held = store.renew(&lease(&a, 20)).await.expect("renew succeeds");
    let mut expected = vec![(kept.id().clone(), 2), (taken.id().clone(), 1)];
    expected.sort();
    assert_eq!(
        held, expected,
        "renew lists what the owner holds, with versions"
    );

    assert!(
        !store
            .claim(taken.id(), &lease(&b, 49))
            .await
            .expect("claim succeeds"),
        "renewed at 20 s, the lease lasts until 50 s"
    );
    assert!(
        store
            .claim(taken.id(), &lease(&b, 51))
            .await
            .expect("claim succeeds"),
        "after 50 s it may be taken over"
    );
    let held = store.renew(&lease(&a, 52)).await.expect("renew succeeds");
    assert_eq!(held, vec![(kept.id().clone(), 2)], "a lost lease drops out");
}

/// `claim_orphans` hands out the unfinished deployments no one holds or whose lease ended,
/// oldest first and at most `limit` of them; never a live lease of another replica, the
/// owner's own, or a finished deployment; and concurrent callers never take the same one.
pub async fn orphan_claims(store: &DynStore) {
    let mut fx = Fixture::new("orphans");
    let application = fx.name("app");
    let (a, b, c) = (fx.name("a"), fx.name("b"), fx.name("c"));
    // Whatever else the store holds is taken first, so that only this check's deployments are
    // left as orphans below.
    while !store
        .claim_orphans(&lease(&a, 0), 1000)
        .await
        .expect("claim_orphans succeeds")
        .deployments
        .is_empty()
    {}

    // Created oldest first under ids that sort newest first.
    let mut ids = Vec::new();
    for name in ["z-free", "y-expired", "x-free"] {
        let d = fx.start(name, &application);
        let new = match name {
            "y-expired" => d.new_deployment().leased(lease(&b, -60)),
            _ => d.new_deployment(),
        };
        store.create(new, &d.events).await.expect("create succeeds");
        ids.push(d.id().clone());
    }
    let ids = oldest_first(store, &ids.iter().collect::<Vec<_>>()).await;
    let live = fx.start("live", &application);
    store
        .create(live.new_deployment().leased(lease(&b, 0)), &live.events)
        .await
        .expect("create succeeds");
    let own = fx.start("own", &application);
    store
        .create(own.new_deployment().leased(lease(&c, -60)), &own.events)
        .await
        .expect("create succeeds");
    // Unleased, but finished: nothing to drive.
    let mut finished = fx.start("finished", &application);
    finished.create_in(store).await;
    finished.cancel_created(store).await;

    let first = store
        .claim_orphans(&lease(&c, 0), 2)
        .await
        .expect("claim_orphans succeeds");
    let first: Vec<_> = first.deployments.into_iter().map(|d| d.id).collect();
    assert_eq!(first, ids[..2], "the two oldest orphans, oldest first");
    let rest = store
        .claim_orphans(&lease(&c, 0), 100)
        .await
        .expect("claim_orphans succeeds");
    let rest: Vec<_> = rest.deployments.into_iter().map(|d| d.id).collect();
    assert_eq!(
        rest,
        ids[2..],
        "the live lease, the owner's own and the finished deployment are not orphans"
    );
    for id in &ids {
        assert!(
            !store
                .claim(id, &lease(&b, 1))
                .await
                .expect("claim succeeds"),
            "an orphan taken by c is c's"
        );
    }

    assert!(
        store
            .claim(own.id(), &lease(&c, 0))
            .await
            .expect("claim succeeds"),
        "the owner renews its own ended lease"
    );
    let mut many = HashSet::new();
    for i in 0..20 {
        let d = fx.start(&format!("many-{i:02}"), &application);
        d.create_in(store).await;
        many.insert(d.id().clone());
    }
    let (x, y) = (fx.name("x"), fx.name("y"));
    let (lx, ly) = (lease(&x, 0), lease(&y, 0));
    let mut got = join_all(vec![
        store.claim_orphans(&lx, 15),
        store.claim_orphans(&ly, 15),
    ])
    .await;
    let (got_y, got_x) = (
        got.pop().expect("two results"),
        got.pop().expect("two results"),
    );
    let got_x: HashSet<_> = got_x
        .expect("claim_orphans succeeds")
        .deployments
        .into_iter()
        .map(|d| d.id)
        .collect();
    let got_y: HashSet<_> = got_y
        .expect("claim_orphans succeeds")
        .deployments
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(
        got_x.is_disjoint(&got_y),
        "no orphan is handed to two replicas"
    );
    let union: HashSet<_> = got_x.union(&got_y).cloned().collect();
    assert_eq!(union, many, "together they took every orphan");
}

/// `release` gives up the owner's leases and no one else's; a finished deployment, whose last
/// save gave its lease up, is not among them. An owner holding a NUL character is
/// [`StoreError::Unstorable`] to every lease call, and one longer than [`MAX_KEY_BYTES`]
/// [`StoreError::TooLong`].
pub async fn lease_release(store: &DynStore) {
    let mut fx = Fixture::new("release");
    let application = fx.name("app");
    let (a, b, c) = (fx.name("a"), fx.name("b"), fx.name("c"));
    let mine = fx.start("mine", &application);
    let theirs = fx.start("theirs", &application);
    let mut done = fx.start("done", &application);
    store
        .create(mine.new_deployment().leased(lease(&a, 0)), &mine.events)
        .await
        .expect("create succeeds");
    store
        .create(done.new_deployment().leased(lease(&a, 0)), &done.events)
        .await
        .expect("create succeeds");
    done.cancel_created(store).await;
    store
        .create(theirs.new_deployment().leased(lease(&b, 0)), &theirs.events)
        .await
        .expect("create succeeds");
    assert_eq!(store.release(&a).await.expect("release succeeds"), 1);
    assert!(
        store
            .claim(mine.id(), &lease(&c, 1))
            .await
            .expect("claim succeeds"),
        "a released deployment is free at once"
    );
    assert!(
        !store
            .claim(theirs.id(), &lease(&c, 1))
            .await
            .expect("claim succeeds"),
        "another owner's lease stays"
    );
    // An owner no store can keep is refused as such, by every lease call, changing nothing;
    // never as the database failing, which a replica would retry for good.
    let nul: fn(&Result<(), StoreError>) -> bool = |answer| {
        matches!(
            answer,
            Err(StoreError::Unstorable {
                what: "lease owner"
            })
        )
    };
    let too_long: fn(&Result<(), StoreError>) -> bool = |answer| {
        matches!(
            answer,
            Err(StoreError::TooLong {
                what: "lease owner",
                max: MAX_KEY_BYTES,
                ..
            })
        )
    };
    for (owner, refused_as_such) in [
        ("replica\0a".to_owned(), nul),
        (fx.name(&"r".repeat(MAX_KEY_BYTES)), too_long),
    ] {
        for answer in lease_calls(store, &mut fx, mine.id(), &application, &owner).await {
            assert!(refused_as_such(&answer), "{answer:?}");
        }
    }
    assert!(
        !store
            .claim(mine.id(), &lease(&a, 2))
            .await
            .expect("claim succeeds"),
        "still held by the owner that claimed it"
    );
    // The longest name every store keeps holds leases everywhere.
    let longest = fx.name("r");
    let longest = lease(
        &format!("{longest}{}", "r".repeat(MAX_KEY_BYTES - longest.len())),
        2,
    );
    assert_eq!(longest.owner.len(), MAX_KEY_BYTES);
    store
        .create(
            fx.start("longest", &application)
                .new_deployment()
                .leased(longest.clone()),
            &[],
        )
        .await
        .expect("create succeeds");
    assert_eq!(
        store.renew(&longest).await.expect("renew succeeds").len(),
        1
    );
}

/// What each lease call answers for `owner` (a claim of `id`, a renewal, a look for orphans, a
/// release) and a create of a deployment of `application` leased to it.
async fn lease_calls(
    store: &DynStore,
    fx: &mut Fixture,
    id: &DeploymentId,
    application: &str,
    owner: &str,
) -> [Result<(), StoreError>; 6] {
    let leased = lease(owner, 2);
    [
        store.claim(id, &leased).await.map(|_| ()),
        store.renew(&leased).await.map(|_| ()),
        store.claim_orphans(&leased, 10).await.map(|_| ()),
        store.release(owner).await.map(|_| ()),
        store.release_run(owner, "run").await.map(|_| ()),
        store
            .create(
                fx.start("refused", application)
                    .new_deployment()
                    .leased(leased.clone()),
                &[],
            )
            .await
            .map(|_| ()),
    ]
}

/// A watcher hears of every create and save with the new version (notices may be delivered
/// asynchronously, so this waits up to ten seconds for them).
pub async fn change_notices(store: &DynStore) {
    let mut fx = Fixture::new("notices");
    let seen: Arc<Mutex<Vec<(DeploymentId, u64)>>> = Arc::default();
    let watcher: ChangeWatcher = {
        let seen = Arc::clone(&seen);
        Arc::new(move |id: &DeploymentId, version| {
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((id.clone(), version));
        })
    };
    store.watch(watcher).await.expect("watch succeeds");
    let mut d = fx.start("d", &fx.name("app"));
    d.create_in(store).await;
    let events = d.sent(1);
    d.save(store, 1, &events).await.expect("save succeeds");

    let wanted = [(d.id().clone(), 1), (d.id().clone(), 2)];
    for _ in 0..1000 {
        let mine: Vec<_> = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(id, _)| id == d.id())
            .cloned()
            .collect();
        if wanted.iter().all(|w| mine.contains(w)) {
            return;
        }
        pause(Duration::from_millis(10)).await;
    }
    panic!("the watcher did not hear of both writes within ten seconds");
}

/// Waits without a runtime and without blocking one: a thread wakes the task later, so a
/// store's own notice task can run meanwhile on a single-threaded runtime.
async fn pause(duration: Duration) {
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if armed {
            return std::task::Poll::Ready(());
        }
        armed = true;
        let waker = cx.waker().clone();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            waker.wake();
        });
        std::task::Poll::Pending
    })
    .await;
}

/// A replica's run is recorded under its name, a later run replacing it, names apart; an
/// owner no store can keep is refused, recording nothing.
pub async fn replica_registration(store: &DynStore) {
    let fx = Fixture::new("runs");
    let (a, b) = (fx.name("a"), fx.name("b"));
    assert_eq!(
        store.registered_replica(&a).await.expect("look succeeds"),
        None,
        "a name never recorded"
    );
    store
        .register_replica(&a, "run-1")
        .await
        .expect("register succeeds");
    store
        .register_replica(&b, "run-2")
        .await
        .expect("register succeeds");
    assert_eq!(
        store.registered_replica(&a).await.expect("look succeeds"),
        Some("run-1".to_owned())
    );
    store
        .register_replica(&a, "run-3")
        .await
        .expect("register succeeds");
    assert_eq!(
        store.registered_replica(&a).await.expect("look succeeds"),
        Some("run-3".to_owned()),
        "the later run replaces the earlier"
    );
    assert_eq!(
        store.registered_replica(&b).await.expect("look succeeds"),
        Some("run-2".to_owned()),
        "another name keeps its own"
    );
    let too_long = "o".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        store.register_replica(&too_long, "run-4").await,
        Err(StoreError::TooLong { .. })
    ));
    assert!(matches!(
        store.register_replica(&a, "run\0").await,
        Err(StoreError::Unstorable { .. })
    ));
    assert_eq!(
        store.registered_replica(&a).await.expect("look succeeds"),
        Some("run-3".to_owned()),
        "a refused run changes nothing"
    );
}

/// A release by a replica's run gives up the leases of its name only while that run is the
/// one recorded under it, or none is: a later run recorded under the same name keeps them.
pub async fn release_by_run(store: &DynStore) {
    let mut fx = Fixture::new("release-run");
    let application = fx.name("app");
    let (a, b, c) = (fx.name("a"), fx.name("b"), fx.name("c"));
    let mine = fx.start("mine", &application);
    let theirs = fx.start("theirs", &application);
    store
        .create(mine.new_deployment().leased(lease(&a, 0)), &mine.events)
        .await
        .expect("create succeeds");
    store
        .create(theirs.new_deployment().leased(lease(&b, 0)), &theirs.events)
        .await
        .expect("create succeeds");
    for run in ["run-1", "run-2"] {
        store
            .register_replica(&a, run)
            .await
            .expect("register succeeds");
    }
    assert_eq!(
        store
            .release_run(&a, "run-1")
            .await
            .expect("release succeeds"),
        None,
        "an earlier run of the name releases nothing"
    );
    assert!(
        !store
            .claim(mine.id(), &lease(&c, 1))
            .await
            .expect("claim succeeds"),
        "still held under the name"
    );
    assert!(matches!(
        store.release_run(&a, "run\0").await,
        Err(StoreError::Unstorable {
            what: "replica run"
        })
    ));
    assert_eq!(
        store
            .release_run(&a, "run-2")
            .await
            .expect("release succeeds"),
        Some(1),
        "the run recorded last releases the name's leases"
    );
    assert!(
        store
            .claim(mine.id(), &lease(&c, 2))
            .await
            .expect("claim succeeds"),
        "a released deployment is free at once"
    );
    assert!(
        !store
            .claim(theirs.id(), &lease(&c, 2))
            .await
            .expect("claim succeeds"),
        "another name's lease stays"
    );
    assert_eq!(
        store
            .release_run(&b, "run-3")
            .await
            .expect("release succeeds"),
        Some(1),
        "a name with no run recorded releases as `release` does"
    );
    assert_eq!(
        store.registered_replica(&b).await.expect("look succeeds"),
        None,
        "the release records nothing"
    );
}
