//! The SQLite store: the conformance suite, durability across `kill -9`, group commit answering
//! each write on its own, migrations on reopen, and typed errors for corrupt rows.
#![cfg(all(feature = "sqlite", feature = "test-util"))]

mod store_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta, Utc};
use hookgate::core::{Deployment, DeploymentId, Event, EventKind};
use hookgate::store::{
    Durability, DynStore, Lease, NewDeployment, SqliteOptions, SqliteStore, Store, StoreError,
    conformance,
};
use hookgate::test_util::ManualClock;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use store_support::{PLAN, created, progress, start, start_random};

/// A directory under Cargo's temporary directory for tests, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("store-sqlite-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        Self(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("hookgate.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn raw(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("open the file directly")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = TempDir::new("conformance");
    let store: Arc<DynStore> = Arc::new(SqliteStore::open(dir.db()).await.expect("open"));
    conformance::run_all(&store).await;
    conformance::concurrent_saves(&store, |task| {
        Box::pin(async { tokio::spawn(task).await.expect("the save task panicked") })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_durability_passes_the_conformance_suite() {
    let dir = TempDir::new("power-loss");
    let options = SqliteOptions::default().with_durability(Durability::PowerLoss);
    let store = SqliteStore::open_with(dir.db(), options)
        .await
        .expect("open");
    let store: Arc<DynStore> = Arc::new(store);
    conformance::run_all(&store).await;
}

/// Many creates and saves at once, some of them refused: the writer groups them into shared
/// transactions, yet each call gets its own answer and a refused one writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_are_answered_each_on_its_own() {
    const N: usize = 48;
    let dir = TempDir::new("group-commit");
    let store: Arc<DynStore> = Arc::new(SqliteStore::open(dir.db()).await.expect("open"));
    // `start` takes callback ids from a fresh sequence, so these two share theirs.
    let (owner, owner_events) = start("owner");
    store
        .create(NewDeployment::new(&owner, PLAN), &owner_events)
        .await
        .expect("create");
    let (clash, clash_events) = start("clash");

    let mut creates = Vec::new();
    let mut deployments = Vec::new();
    for i in 0..N {
        let (d, events) = start_random(&format!("d{i}"));
        let (store, new) = (Arc::clone(&store), NewDeployment::new(&d, PLAN));
        creates.push(tokio::spawn(
            async move { store.create(new, &events).await },
        ));
        deployments.push(d);
    }
    let refused = [
        NewDeployment::new(&clash, PLAN),
        NewDeployment::new(&start_random("owner").0, PLAN),
    ]
    .map(|new| {
        let (store, events) = (Arc::clone(&store), clash_events.clone());
        tokio::spawn(async move { store.create(new, &events).await })
    });
    for create in creates {
        assert_eq!(create.await.expect("create task").expect("create"), 1);
    }
    let [taken, exists] = refused;
    let taken = taken.await.expect("create task");
    assert!(
        matches!(taken, Err(StoreError::CallbackTaken { .. })),
        "{taken:?}"
    );
    let exists = exists.await.expect("create task");
    assert!(
        matches!(exists, Err(StoreError::AlreadyExists { .. })),
        "{exists:?}"
    );
    assert!(store.load(clash.id()).await.expect("load").is_none());
    assert!(store.history(clash.id()).await.expect("history").is_empty());
    let (_, callback) = owner.callback_ids().next().expect("one webhook gate");
    assert_eq!(
        store.find_by_callback(callback).await.expect("find"),
        Some(owner.id().clone())
    );

    // Every deployment gets a fresh save and a stale one, all at once.
    let mut saves = Vec::new();
    for (i, d) in deployments.iter_mut().enumerate() {
        let events = progress(d, format!("note {i}"));
        for expected in [1, 7] {
            let store = Arc::clone(&store);
            let (id, state, status) = (d.id().clone(), d.state().clone(), d.status());
            let events = events.clone();
            saves.push(tokio::spawn(async move {
                let saved = store.save(&id, expected, &state, status, &events).await;
                (expected, saved)
            }));
        }
    }
    for save in saves {
        match save.await.expect("save task") {
            (1, saved) => assert_eq!(saved.expect("the fresh save is written"), 2),
            (_, saved) => assert!(
                matches!(
                    saved,
                    Err(StoreError::Conflict {
                        expected: 7,
                        actual: 1 | 2,
                        ..
                    })
                ),
                "the stale save alone is refused: {saved:?}"
            ),
        }
    }
    for (i, d) in deployments.iter().enumerate() {
        let stored = store.load(d.id()).await.expect("load").expect("stored");
        assert_eq!(stored.version, 2);
        assert_eq!(stored.state, *d.state());
        let notes: Vec<_> = store
            .history(d.id())
            .await
            .expect("history")
            .into_iter()
            .filter_map(|e| match e.event.kind {
                EventKind::Progress { message, .. } => Some((e.version, message)),
                _ => None,
            })
            .collect();
        assert_eq!(notes, [(2, format!("note {i}"))]);
    }
}

/// A deployment's progress notes as (version, message), after checking that its history is
/// numbered 1, 2, 3, ... with no gap or duplicate, and that versions never go back.
async fn notes(store: &SqliteStore, id: &DeploymentId) -> Vec<(u64, String)> {
    let history = store.history(id).await.expect("history");
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..).take(history.len()).collect();
    assert_eq!(seqs, want, "{id}: numbered without gap or duplicate");
    assert!(
        history.windows(2).all(|w| w[0].version <= w[1].version),
        "{id}: versions in order"
    );
    history
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::Progress { message, .. } => Some((e.version, message)),
            _ => None,
        })
        .collect()
}

/// What a save in one of the batches below must come to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Saved(u64),
    Conflict { expected: u64, actual: u64 },
    NotFound,
}

fn check(what: &str, saved: Result<u64, StoreError>, expect: Expect) {
    let ok = match (&saved, expect) {
        (Ok(version), Expect::Saved(want)) => *version == want,
        (
            Err(StoreError::Conflict {
                expected, actual, ..
            }),
            Expect::Conflict {
                expected: e,
                actual: a,
            },
        ) => (*expected, *actual) == (e, a),
        (Err(StoreError::NotFound { .. }), Expect::NotFound) => true,
        _ => false,
    };
    assert!(ok, "{what}: expected {expect:?}, got {saved:?}");
}

/// Saves of many deployments in one batch, some deployments saved two or three times in a
/// row, some stale, one unknown: the writer runs them in shared statements, yet each comes to
/// what it would have alone, in the order queued.
#[tokio::test]
async fn one_batch_of_many_saves_runs_as_if_one_after_the_other() {
    const N: usize = 40;
    let dir = TempDir::new("layers");
    let store = Arc::new(SqliteStore::open(dir.db()).await.expect("open"));
    let mut deployments = created(&*store, N).await;

    // This runtime has one thread: the spawned saves all queue before the writer task runs
    // again, so they form one batch (fewer than `MAX_BATCH`).
    let mut saves = Vec::new();
    let mut finals = Vec::new();
    for (i, d) in deployments.iter_mut().enumerate() {
        let times = 1 + i as u64 % 3;
        for version in 1..=times {
            let events = progress(d, format!("d{i} v{}", version + 1));
            saves.push((Expect::Saved(version + 1), save(&store, d, version, events)));
        }
        finals.push(d.state().clone());
        if i % 4 == 0 {
            let events = progress(d, format!("d{i} stale"));
            let expect = Expect::Conflict {
                expected: 1,
                actual: times + 1,
            };
            saves.push((expect, save(&store, d, 1, events)));
        }
    }
    let (ghost, ghost_events) = start_random("ghost");
    saves.push((Expect::NotFound, save(&store, &ghost, 1, ghost_events)));
    for (n, (expect, saved)) in saves.into_iter().enumerate() {
        check(
            &format!("save {n}"),
            saved.await.expect("save task"),
            expect,
        );
    }

    for (i, (d, state)) in deployments.iter().zip(finals).enumerate() {
        let times = 1 + i as u64 % 3;
        let stored = store.load(d.id()).await.expect("load").expect("stored");
        assert_eq!(stored.version, times + 1, "d{i}");
        assert_eq!(stored.state, state, "d{i}: the last save's state");
        let want: Vec<_> = (2..=times + 1).map(|v| (v, format!("d{i} v{v}"))).collect();
        assert_eq!(notes(&store, d.id()).await, want, "d{i}");
    }
    assert!(store.load(ghost.id()).await.expect("load").is_none());
    assert!(store.history(ghost.id()).await.expect("history").is_empty());
}

fn save(
    store: &Arc<SqliteStore>,
    d: &Deployment,
    expected: u64,
    events: Vec<Event>,
) -> tokio::task::JoinHandle<Result<u64, StoreError>> {
    let store = Arc::clone(store);
    let (id, state, status) = (d.id().clone(), d.state().clone(), d.status());
    tokio::spawn(async move { store.save(&id, expected, &state, status, &events).await })
}

/// A store in a new directory named after `test`, holding deployment `d1` as created, with
/// the events of its creation.
async fn with_one_deployment(test: &str) -> (TempDir, SqliteStore, Deployment, Vec<Event>) {
    let dir = TempDir::new(test);
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    (dir, store, d, events)
}

/// A save to version 2 and one to version 3 of the same deployment, queued together (`join!`
/// polls both before the writer task runs): both are written, their events numbered in order.
#[tokio::test]
async fn two_saves_of_one_deployment_in_one_batch_both_succeed_in_order() {
    let (_dir, store, mut d, events) = with_one_deployment("same-batch-in-order").await;
    let second = progress(&mut d, "second");
    let at_2 = d.state().clone();
    let third = progress(&mut d, "third");
    let at_3 = d.state().clone();
    let (to_2, to_3) = tokio::join!(
        store.save(d.id(), 1, &at_2, d.status(), &second),
        store.save(d.id(), 2, &at_3, d.status(), &third),
    );
    assert_eq!(to_2.expect("save to 2"), 2);
    assert_eq!(to_3.expect("save to 3"), 3);
    let stored = store.load(d.id()).await.expect("load").expect("stored");
    assert_eq!((stored.version, stored.state), (3, at_3));
    assert_eq!(
        notes(&store, d.id()).await,
        [(2, "second".to_owned()), (3, "third".to_owned())]
    );
    let history = store.history(d.id()).await.expect("history");
    assert_eq!(history.len(), events.len() + 2, "every event once");
}

/// Two saves of the same version queued together: the first is written, the second conflicts
/// with the version the first wrote and writes nothing.
#[tokio::test]
async fn two_saves_of_one_version_in_one_batch_first_wins() {
    let dir = TempDir::new("same-batch-same-version");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    // The same start twice: two replicas of one deployment, each moving it its own way.
    let (mut first, events) = start("d1");
    let (mut second, _) = start("d1");
    store
        .create(NewDeployment::new(&first, PLAN), &events)
        .await
        .expect("create");
    let first_events = progress(&mut first, "first");
    let second_events = progress(&mut second, "second");
    let (won, lost) = tokio::join!(
        store.save(first.id(), 1, first.state(), first.status(), &first_events),
        store.save(
            second.id(),
            1,
            second.state(),
            second.status(),
            &second_events
        ),
    );
    assert_eq!(won.expect("the first save is written"), 2);
    check(
        "the second save",
        lost,
        Expect::Conflict {
            expected: 1,
            actual: 2,
        },
    );
    let stored = store.load(first.id()).await.expect("load").expect("stored");
    assert_eq!(stored.state, *first.state());
    assert_eq!(notes(&store, first.id()).await, [(2, "first".to_owned())]);
}

/// A save of a deployment that does not exist is `NotFound`; the saves queued around it are
/// written.
#[tokio::test]
async fn an_unknown_deployment_in_a_batch_is_not_found_and_the_rest_is_written() {
    let dir = TempDir::new("same-batch-not-found");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (mut a, a_events) = start_random("a");
    let (mut b, b_events) = start_random("b");
    let (mut ghost, _) = start_random("ghost");
    for (d, events) in [(&a, &a_events), (&b, &b_events)] {
        store
            .create(NewDeployment::new(d, PLAN), events)
            .await
            .expect("create");
    }
    let (a_note, b_note, ghost_note) = (
        progress(&mut a, "a"),
        progress(&mut b, "b"),
        progress(&mut ghost, "ghost"),
    );
    let (a_saved, ghost_saved, b_saved) = tokio::join!(
        store.save(a.id(), 1, a.state(), a.status(), &a_note),
        store.save(ghost.id(), 1, ghost.state(), ghost.status(), &ghost_note),
        store.save(b.id(), 1, b.state(), b.status(), &b_note),
    );
    assert_eq!(a_saved.expect("a is written"), 2);
    assert_eq!(b_saved.expect("b is written"), 2);
    assert!(
        matches!(&ghost_saved, Err(StoreError::NotFound { id }) if id == ghost.id()),
        "{ghost_saved:?}"
    );
    assert_eq!(notes(&store, a.id()).await, [(2, "a".to_owned())]);
    assert_eq!(notes(&store, b.id()).await, [(2, "b".to_owned())]);
    assert!(store.history(ghost.id()).await.expect("history").is_empty());
}

/// Creates and saves queued together keep their order: a save queued before its deployment's
/// create is `NotFound`, one queued after it is written.
#[tokio::test]
async fn creates_and_saves_in_one_batch_run_in_queue_order() {
    let dir = TempDir::new("same-batch-create");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (mut d, events) = start("d1");
    let before = progress(&mut d, "too early");
    let after = progress(&mut d, "after create");
    let (early, created, saved, again) = tokio::join!(
        store.save(d.id(), 1, d.state(), d.status(), &before),
        store.create(NewDeployment::new(&d, PLAN), &events),
        store.save(d.id(), 1, d.state(), d.status(), &after),
        store.save(d.id(), 1, d.state(), d.status(), &[]),
    );
    check("the save before the create", early, Expect::NotFound);
    assert_eq!(created.expect("create"), 1);
    assert_eq!(saved.expect("the save after the create"), 2);
    check(
        "the stale save",
        again,
        Expect::Conflict {
            expected: 1,
            actual: 2,
        },
    );
    assert_eq!(
        notes(&store, d.id()).await,
        [(2, "after create".to_owned())]
    );
}

/// When the database fails one save of a batch (a trigger stands in for a full disk), in its
/// `UPDATE` or in appending its events, that save alone gets the error: the others of the
/// batch are written.
#[tokio::test]
async fn a_database_failure_in_a_batch_fails_only_its_own_save() {
    let dir = TempDir::new("same-batch-failure");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let mut deployments = Vec::new();
    for id in ["good-1", "bad-update", "bad-events", "good-2"] {
        let (d, events) = start_random(id);
        store
            .create(NewDeployment::new(&d, PLAN), &events)
            .await
            .expect("create");
        deployments.push(d);
    }
    let pool = raw(&dir.db()).await;
    sqlx::raw_sql(
        "CREATE TRIGGER fail_update BEFORE UPDATE ON deployments WHEN NEW.id = 'bad-update'
         BEGIN SELECT RAISE(ABORT, 'injected update failure'); END;
         CREATE TRIGGER fail_events BEFORE INSERT ON history WHEN NEW.deployment_id = 'bad-events'
         BEGIN SELECT RAISE(ABORT, 'injected append failure'); END;",
    )
    .execute(&pool)
    .await
    .expect("install the failing triggers");

    let notes_of: Vec<_> = deployments
        .iter_mut()
        .map(|d| progress(d, format!("{} saved", d.id())))
        .collect();
    let [good_1, bad_update, bad_events, good_2] = &deployments[..] else {
        unreachable!("four deployments")
    };
    let saved = tokio::join!(
        store.save(
            good_1.id(),
            1,
            good_1.state(),
            good_1.status(),
            &notes_of[0]
        ),
        store.save(
            bad_update.id(),
            1,
            bad_update.state(),
            bad_update.status(),
            &notes_of[1]
        ),
        store.save(
            bad_events.id(),
            1,
            bad_events.state(),
            bad_events.status(),
            &notes_of[2]
        ),
        store.save(
            good_2.id(),
            1,
            good_2.state(),
            good_2.status(),
            &notes_of[3]
        ),
    );
    assert_eq!(saved.0.expect("good-1 is written"), 2);
    assert_eq!(saved.3.expect("good-2 is written"), 2);
    for (failed, what) in [
        (saved.1, "injected update failure"),
        (saved.2, "injected append failure"),
    ] {
        let e = failed.expect_err("the failing save gets an error");
        assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
        assert!(format!("{e:?}").contains(what), "its own error: {e:?}");
    }
    for d in [good_1, good_2] {
        assert_eq!(
            notes(&store, d.id()).await,
            [(2, format!("{} saved", d.id()))]
        );
    }
    for d in [bad_update, bad_events] {
        let stored = store.load(d.id()).await.expect("load").expect("stored");
        assert_eq!(stored.version, 1, "{}: nothing of it was written", d.id());
        assert!(notes(&store, d.id()).await.is_empty());
    }
}

/// Event text goes through the writer's one-statement append unchanged, however it is spelt.
#[tokio::test]
async fn events_round_trip_whatever_their_text() {
    let (_dir, store, mut d, events) = with_one_deployment("event-text").await;
    let notes = [
        "plain",
        "\"quoted\" \\ back\\slash, [brackets], {braces}",
        "line\nbreak\ttab\r\u{0}nul \u{1f}",
        "é 日本 🚀 \u{2028}",
        "",
    ];
    let mut all = events;
    let mut batch = Vec::new();
    for note in notes {
        batch.extend(progress(&mut d, note.to_owned()));
    }
    store
        .save(d.id(), 1, d.state(), d.status(), &batch)
        .await
        .expect("save");
    all.extend(batch);
    let history = store.history(d.id()).await.expect("history");
    let got: Vec<_> = history.iter().map(|e| (e.seq, &e.event)).collect();
    let want: Vec<_> = (1..).zip(&all).collect();
    assert_eq!(got, want);
}

/// Closing commits and answers the writes queued before it, and refuses later ones.
#[tokio::test]
async fn close_finishes_queued_writes_and_refuses_later_ones() {
    let (dir, store, mut d, _) = with_one_deployment("close").await;
    let events = progress(&mut d, "before close");
    let (saved, ()) = tokio::join!(
        store.save(d.id(), 1, d.state(), d.status(), &events),
        store.close()
    );
    assert_eq!(saved.expect("queued before close"), 2);
    let late = store.save(d.id(), 2, d.state(), d.status(), &[]).await;
    let Err(late) = late else {
        panic!("saved after close");
    };
    assert!(
        matches!(late, StoreError::Closed { store: "SQLite" }),
        "{late:?}"
    );
    let shown = late.to_string();
    assert!(
        shown.contains("closed")
            && shown.contains("open a new store")
            && !shown.contains("retried"),
        "{shown}"
    );
    let load = store.load(d.id()).await;
    assert!(matches!(load, Err(StoreError::Closed { .. })), "{load:?}");
    store.close().await;

    let store = SqliteStore::open(dir.db()).await.expect("reopen");
    let stored = store.load(d.id()).await.expect("load").expect("kept");
    assert_eq!(stored.version, 2);
    assert_eq!(stored.state, *d.state());
}

#[tokio::test]
async fn two_stores_on_one_file_see_each_others_versions() {
    let dir = TempDir::new("two-stores");
    let first = SqliteStore::open(dir.db()).await.expect("open");
    let second = SqliteStore::open(dir.db())
        .await
        .expect("open again while open");
    let (mut d, events) = start("d1");
    first
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let loaded = second.load(d.id()).await.expect("load").expect("found");
    let events = progress(&mut d, "first");
    first
        .save(d.id(), 1, d.state(), d.status(), &events)
        .await
        .expect("save");
    let stale = second
        .save(d.id(), loaded.version, &loaded.state, loaded.status, &[])
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{stale:?}"
    );
}

/// A save that finds the database locked by another connection for the whole busy timeout
/// fails then: it does not wait as long again (its batch retried one write at a time), which
/// would outlast the lock held here and succeed.
#[tokio::test]
async fn a_save_locked_out_for_the_busy_timeout_fails_after_it_once() {
    let dir = TempDir::new("busy");
    let options = SqliteOptions::default().with_busy_timeout(std::time::Duration::from_secs(1));
    let store = SqliteStore::open_with(dir.db(), options)
        .await
        .expect("open");
    let (mut d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let mut other = raw(&dir.db()).await.acquire().await.expect("a connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *other)
        .await
        .expect("take the write lock");
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();
    });
    let events = progress(&mut d, "while locked");
    let saved = store.save(d.id(), 1, d.state(), d.status(), &events).await;
    assert!(
        matches!(saved, Err(StoreError::Backend { .. })),
        "{saved:?}"
    );
    release.await.unwrap();
    assert_eq!(store.load(d.id()).await.unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn reopening_applies_no_migration_and_keeps_the_data() {
    let dir = TempDir::new("reopen");
    let start_time = Utc::now();
    let options = SqliteOptions::default().with_clock(ManualClock::new(start_time));
    let store = SqliteStore::open_with(dir.db(), options)
        .await
        .expect("open");
    let (d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    store.close().await;

    let pool = raw(&dir.db()).await;
    let applied = || {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT version, applied_at FROM hookgate_migrations ORDER BY version",
        )
        .fetch_all(&pool)
    };
    let before = applied().await.expect("read the migrations");
    assert_eq!(before.len(), 2, "two migrations: {before:?}");

    // A later clock would stamp any migration applied again with another time.
    let later = ManualClock::new(start_time + TimeDelta::days(1));
    let options = SqliteOptions::default().with_clock(later);
    let store = SqliteStore::open_with(dir.db(), options)
        .await
        .expect("reopen");
    assert_eq!(applied().await.expect("read the migrations"), before);
    let stored = store.load(d.id()).await.expect("load").expect("kept");
    assert_eq!(stored.state, *d.state());
    assert_eq!(
        stored.created_at,
        start_time.trunc_subsecs(6),
        "stored to the microsecond"
    );
    assert_eq!(
        store.history(d.id()).await.expect("history").len(),
        events.len()
    );
}

/// A row whose id is not text (a BLOB, or text that is not UTF-8: only a hand edit writes
/// either) is set aside by the listing, named as nearly as it can be, and the other rows are
/// listed.
#[tokio::test]
async fn a_row_whose_id_cannot_be_read_is_set_aside_by_the_listing() {
    let (dir, store, d, _) = with_one_deployment("unreadable-id").await;
    let (other, events) = start_random("d2");
    store
        .create(NewDeployment::new(&other, PLAN), &events)
        .await
        .expect("create");
    // One connection, its foreign keys off: the callback index and the history still name `d1`.
    let mut raw = raw(&dir.db()).await.acquire().await.expect("a connection");
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *raw)
        .await
        .expect("foreign keys off");
    for (value, named) in [
        ("x'6431ff'", "d1\u{fffd}"),
        ("CAST(x'6431ff' AS TEXT)", "d1\u{fffd}"),
    ] {
        // In both tables the listing joins.
        for sql in [
            format!("UPDATE deployments SET id = {value} WHERE id = 'd1'"),
            format!("UPDATE plans SET deployment_id = {value} WHERE deployment_id = 'd1'"),
        ] {
            sqlx::query(&sql).execute(&mut *raw).await.expect("tamper");
        }
        let listed = store.list_unfinished().await.expect("the listing itself");
        assert_eq!(
            listed.deployments.iter().map(|s| &s.id).collect::<Vec<_>>(),
            [other.id()],
            "{value}"
        );
        assert!(
            matches!(&listed.unreadable[..], [StoreError::Corrupt { id, what: "id", .. }] if id.0 == named),
            "{value}: {listed:?}"
        );
        for sql in [
            "UPDATE deployments SET id = 'd1' WHERE id != 'd2'",
            "UPDATE plans SET deployment_id = 'd1' WHERE deployment_id != 'd2'",
        ] {
            sqlx::query(sql).execute(&mut *raw).await.expect("repair");
        }
        assert!(store.load(d.id()).await.expect("repaired").is_some());
    }
}

/// A deployment whose plan row is gone is reported, not taken for absent: it still counts as
/// running for its application, so a recovery that did not list it would leave the
/// application blocked with nothing said.
#[tokio::test]
async fn a_deployment_without_its_plan_row_is_reported_corrupt() {
    let (dir, store, d, _) = with_one_deployment("no-plan").await;
    let pool = raw(&dir.db()).await;
    sqlx::query("DELETE FROM plans")
        .execute(&pool)
        .await
        .expect("tamper");

    let loaded = store.load(d.id()).await;
    assert!(
        matches!(&loaded, Err(StoreError::Corrupt { id, what: "plan_source", .. }) if id == d.id()),
        "{loaded:?}"
    );
    let listed = store.list_unfinished().await.expect("the listing itself");
    assert!(listed.deployments.is_empty(), "{listed:?}");
    assert!(
        matches!(&listed.unreadable[..], [StoreError::Corrupt { id, what: "plan_source", .. }] if id == d.id()),
        "{listed:?}"
    );
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors() {
    let (dir, store, d, _) = with_one_deployment("corrupt").await;
    let pool = raw(&dir.db()).await;
    let corrupt = |column: &'static str, value: &'static str| {
        let pool = pool.clone();
        async move {
            let sql = format!("UPDATE deployments SET {column} = {value} WHERE id = 'd1'");
            sqlx::query(&sql).execute(&pool).await.expect("tamper");
        }
    };
    let good_state = serde_json::to_string(d.state()).expect("state as JSON");

    for (column, value) in [
        ("state", "'{\"truncated\": '"),
        ("state", "'{}'"),
        ("state", "x'00ff'"),
        ("status", "'paused'"),
        ("created_at", "'yesterday'"),
    ] {
        corrupt(column, value).await;
        let loaded = store.load(d.id()).await;
        assert!(
            matches!(&loaded, Err(StoreError::Corrupt { id, what, .. }) if id == d.id() && *what == column),
            "{column} = {value}: {loaded:?}"
        );
        let listed = store.list_unfinished().await.expect("the listing itself");
        assert!(listed.deployments.is_empty(), "{listed:?}");
        assert!(
            matches!(&listed.unreadable[..], [StoreError::Corrupt { id, what, .. }] if id == d.id() && *what == column),
            "{column} = {value}: {listed:?}"
        );
        let message = loaded.expect_err("corrupt").to_string();
        assert!(message.contains("restore it from a backup"), "{message}");
        sqlx::query(
            "UPDATE deployments SET state = ?, status = 'running', created_at = updated_at",
        )
        .bind(&good_state)
        .execute(&pool)
        .await
        .expect("repair");
        assert!(store.load(d.id()).await.expect("repaired").is_some());
    }

    // A row holding another deployment's state (copied by hand) would be driven as that one.
    let copied = good_state.replacen("\"id\":\"d1\"", "\"id\":\"d2\"", 1);
    assert_ne!(copied, good_state, "the state names its deployment");
    sqlx::query("UPDATE deployments SET state = ?")
        .bind(&copied)
        .execute(&pool)
        .await
        .expect("tamper");
    let loaded = store.load(d.id()).await;
    assert!(
        matches!(&loaded, Err(StoreError::Corrupt { id, what: "state", .. }) if id == d.id()),
        "{loaded:?}"
    );
    let message = loaded.expect_err("corrupt").to_string();
    assert!(message.contains("deployment d2"), "{message}");
    sqlx::query("UPDATE deployments SET state = ?")
        .bind(&good_state)
        .execute(&pool)
        .await
        .expect("repair");

    sqlx::query("UPDATE deployments SET version = 9223372036854775807")
        .execute(&pool)
        .await
        .expect("tamper");
    let stored = store.load(d.id()).await.expect("load").expect("found");
    let saved = store
        .save(d.id(), stored.version, d.state(), d.status(), &[])
        .await;
    assert!(
        matches!(
            &saved,
            Err(StoreError::Corrupt {
                what: "version",
                ..
            })
        ),
        "the largest version cannot advance: {saved:?}"
    );

    let good_events: String = sqlx::query_scalar("SELECT events FROM history")
        .fetch_one(&pool)
        .await
        .expect("the events as stored");
    for (column, value) in [("events", "'[1, 2]'"), ("events", "'{}'"), ("count", "99")] {
        let sql = format!("UPDATE history SET {column} = {value}");
        sqlx::query(&sql).execute(&pool).await.expect("tamper");
        let history = store.history(d.id()).await;
        assert!(
            matches!(&history, Err(StoreError::Corrupt { what: "event", .. })),
            "{column} = {value}: {history:?}"
        );
        sqlx::query("UPDATE history SET events = ?, count = json_array_length(?)")
            .bind(&good_events)
            .bind(&good_events)
            .execute(&pool)
            .await
            .expect("repair");
        assert!(store.history(d.id()).await.is_ok(), "repaired");
    }
}

/// A deployment whose last event number was tampered down cannot append over its history: the
/// save fails, and nothing of it is written.
#[tokio::test]
async fn a_tampered_event_number_fails_the_save_and_writes_nothing() {
    let (dir, store, mut d, _) = with_one_deployment("tampered-last-seq").await;
    let pool = raw(&dir.db()).await;
    sqlx::query("UPDATE deployments SET last_seq = 0")
        .execute(&pool)
        .await
        .expect("tamper");
    let before = store.history(d.id()).await.expect("history");
    let note = progress(&mut d, "over the first event");
    let saved = store.save(d.id(), 1, d.state(), d.status(), &note).await;
    assert!(
        matches!(saved, Err(StoreError::Backend { .. })),
        "{saved:?}"
    );
    let stored = store.load(d.id()).await.expect("load").expect("kept");
    assert_eq!(stored.version, 1);
    assert_eq!(store.history(d.id()).await.expect("history"), before);
}

/// A file of the first schema, with the deployment file in the deployment's row and one row
/// per event, is migrated with its deployment as it was and its history numbered as it was,
/// and the next save's events follow on.
#[tokio::test]
async fn a_first_schema_history_is_kept_by_the_migration() {
    let dir = TempDir::new("first-schema");
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(dir.db())
            .create_if_missing(true),
    )
    .await
    .expect("create the file");
    sqlx::raw_sql(concat!(
        "CREATE TABLE hookgate_migrations (version INTEGER PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL);
         INSERT INTO hookgate_migrations VALUES (1, 'then');\n",
        include_str!("../src/store/sqlite/migrations/0001_initial.sql")
    ))
    .execute(&pool)
    .await
    .expect("the first schema");
    let (mut d, mut events) = start("d1");
    let created = events.len();
    events.extend(progress(&mut d, "one"));
    events.extend(progress(&mut d, "two"));
    let at = "2030-01-01T00:00:00.000000Z";
    sqlx::query("INSERT INTO deployments VALUES ('d1', 'shop', ?, ?, 'running', 0, 3, ?, ?)")
        .bind(PLAN)
        .bind(serde_json::to_string(d.state()).expect("state as JSON"))
        .bind(at)
        .bind(at)
        .execute(&pool)
        .await
        .expect("a deployment of the first schema");
    for (seq, event) in (1i64..).zip(&events) {
        let version = if seq as usize <= created {
            1
        } else {
            seq - created as i64 + 1
        };
        sqlx::query("INSERT INTO events VALUES ('d1', ?, ?, ?)")
            .bind(seq)
            .bind(version)
            .bind(serde_json::to_string(event).expect("event as JSON"))
            .execute(&pool)
            .await
            .expect("an event of the first schema");
    }
    pool.close().await;

    let store = SqliteStore::open(dir.db()).await.expect("open and migrate");
    let stored = store.load(d.id()).await.expect("load").expect("kept");
    assert_eq!((stored.plan_source.as_str(), stored.version), (PLAN, 3));
    assert_eq!(stored.state, *d.state());
    let history = store.history(d.id()).await.expect("history");
    let numbered: Vec<_> = history.iter().map(|h| (h.seq, h.version)).collect();
    let mut want: Vec<(u64, u64)> = (1..=created as u64).map(|seq| (seq, 1)).collect();
    want.extend([(created as u64 + 1, 2), (created as u64 + 2, 3)]);
    assert_eq!(numbered, want);
    assert_eq!(
        history.into_iter().map(|h| h.event).collect::<Vec<_>>(),
        events
    );

    let three = progress(&mut d, "three");
    store
        .save(d.id(), 3, d.state(), d.status(), &three)
        .await
        .expect("save after the migration");
    let last = store
        .history(d.id())
        .await
        .expect("history")
        .pop()
        .expect("an event");
    assert_eq!((last.seq, last.version), (created as u64 + 3, 4));
    assert_eq!(last.event, three[0]);
}

#[tokio::test]
async fn a_schema_newer_than_this_release_is_refused() {
    let dir = TempDir::new("schema-too-new");
    SqliteStore::open(dir.db())
        .await
        .expect("open")
        .close()
        .await;
    let pool = raw(&dir.db()).await;
    sqlx::query("INSERT INTO hookgate_migrations (version, applied_at) VALUES (99, 'later')")
        .execute(&pool)
        .await
        .expect("pretend a newer release migrated");
    let refused = SqliteStore::open(dir.db()).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::SchemaTooNew {
                found: 99,
                supported: 2
            })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_missing_directory_is_an_open_error() {
    let dir = TempDir::new("missing-dir");
    let path = dir.0.join("no-such-directory").join("hookgate.db");
    let refused = SqliteStore::open(&path).await;
    assert!(
        matches!(&refused, Err(StoreError::Open { path: p, .. }) if *p == path),
        "{refused:?}"
    );
}

/// Tells the re-run test binary to act as the writer of the kill -9 test, on this database.
const WRITER: &str = "HOOKGATE_TEST_KILL_9_WRITER";
/// The parent kills the writer once it has read this many acknowledgements.
const KILL_AFTER: u64 = 200;

/// Not a test of its own: `acknowledged_saves_survive_kill_9` runs this test binary again with
/// [`WRITER`] set and `--ignored`, and then this saves version after version, printing
/// `acked N` after each save has returned, until it is killed. Ignored so that a normal run
/// does not count it as a passing test; run without [`WRITER`] (`--include-ignored`), it does
/// nothing.
#[tokio::test]
#[ignore = "the writer process of acknowledged_saves_survive_kill_9, which runs it"]
async fn kill_9_writer() {
    let Some(path) = std::env::var_os(WRITER) else {
        return;
    };
    let store = SqliteStore::open(path).await.expect("open");
    let (mut d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    println!("acked 1");
    // Bounded only so that a writer whose parent vanished stops; the parent kills it long
    // before, and a closed stdout makes `println!` end it too.
    for version in 1..1_000_000u64 {
        let events = progress(&mut d, format!("save {}", version + 1));
        store
            .save(d.id(), version, d.state(), d.status(), &events)
            .await
            .expect("save");
        println!("acked {}", version + 1);
    }
}

fn acked(line: &str) -> Option<u64> {
    // libtest may print `test kill_9_writer ... ` on the same line before the first ack.
    line.rsplit_once("acked ")?.1.trim().parse().ok()
}

#[test]
fn acknowledged_saves_survive_kill_9() {
    let dir = TempDir::new("kill-9");
    let exe = std::env::current_exe().expect("the test binary");
    let mut writer = Command::new(exe)
        .args([
            "kill_9_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER, dir.db())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(writer.stdout.take().expect("piped stdout")).lines();
    let mut last_ack = 0;
    for line in lines.by_ref() {
        if let Some(n) = acked(&line.expect("read the writer")) {
            last_ack = n;
            if n >= KILL_AFTER {
                break;
            }
        }
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no checkpoint.
    writer.kill().expect("kill the writer");
    // Acks still in the pipe were printed before the kill, each after its save returned.
    for line in lines {
        last_ack = last_ack.max(line.ok().as_deref().and_then(acked).unwrap_or(0));
    }
    let status = writer.wait().expect("reap the writer");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the writer was killed: {status:?}"
        );
    }
    #[cfg(not(unix))]
    assert!(!status.success(), "the writer was killed: {status:?}");
    assert!(
        last_ack >= KILL_AFTER,
        "the writer acknowledged only {last_ack} saves"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(dir.db())
            .await
            .expect("reopen after kill -9");
        let id = DeploymentId::from("d1");
        let stored = store.load(&id).await.expect("load").expect("kept");
        // The save under way at the kill may have committed without its ack being printed.
        assert!(
            (last_ack..=last_ack + 1).contains(&stored.version),
            "acknowledged {last_ack}, stored {}",
            stored.version
        );
        let notes: Vec<(u64, String)> = store
            .history(&id)
            .await
            .expect("history")
            .into_iter()
            .filter_map(|e| match e.event.kind {
                EventKind::Progress { message, .. } => Some((e.version, message)),
                _ => None,
            })
            .collect();
        let expected: Vec<(u64, String)> = (2..=stored.version)
            .map(|v| (v, format!("save {v}")))
            .collect();
        assert_eq!(
            notes, expected,
            "every stored version has its events, and no other"
        );
    });
}

#[tokio::test]
async fn leases_and_notices_are_refused_as_unsupported_and_change_nothing() {
    let dir = TempDir::new("no-leases");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (d, events) = start("d1");
    let lease = Lease::new("replica-a", Utc::now(), std::time::Duration::from_secs(30));
    let leased = store
        .create(NewDeployment::new(&d, PLAN).leased(lease.clone()), &events)
        .await;
    assert!(
        matches!(leased, Err(StoreError::Unsupported { what: "leases" })),
        "{leased:?}"
    );
    assert!(
        store.load(d.id()).await.expect("load").is_none(),
        "nothing was created"
    );
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let stored = store.load(d.id()).await.expect("load").expect("created");
    let history = store.history(d.id()).await.expect("history");
    let unsupported = async |call: &str, r: Result<(), StoreError>| {
        let e = r.expect_err("refused");
        assert!(matches!(e, StoreError::Unsupported { .. }), "{call}: {e:?}");
        assert!(e.to_string().contains("PostgresStore"), "{call}: {e}");
        // The whole row (version, state, status, times) and its history, not just its presence.
        let now = store
            .load(d.id())
            .await
            .expect("load")
            .expect("still stored");
        assert_eq!(now, stored, "{call} changed the row");
        assert_eq!(
            store.history(d.id()).await.expect("history"),
            history,
            "{call}"
        );
    };
    unsupported("claim", store.claim(d.id(), &lease).await.map(drop)).await;
    unsupported("renew", store.renew(&lease).await.map(drop)).await;
    let orphans = store.claim_orphans(&lease, 10).await.map(drop);
    unsupported("claim_orphans", orphans).await;
    unsupported("release", store.release("replica-a").await.map(drop)).await;
    let watched = store.watch(Arc::new(|_: &DeploymentId, _| {})).await;
    unsupported("watch", watched).await;
}

/// A store opening a new file while another connection holds a lock on it waits for the lock
/// (up to the busy timeout), as it does for an existing file: switching a new file to WAL
/// takes a lock SQLite does not wait for, so a store opened beside another store's first
/// opening failed at once with "database is locked".
#[tokio::test]
async fn a_store_opening_a_new_file_another_connection_locks_waits_for_it() {
    use sqlx::{ConnectOptions, Connection};

    let dir = TempDir::new("first-open-waits");
    let mut holder = SqliteConnectOptions::new()
        .filename(dir.db())
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete)
        .connect()
        .await
        .expect("a connection creating the file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("a lock on the new file");
    let release = async {
        // Long enough for the opening to meet the lock; it waits up to its 5 s busy timeout.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query("COMMIT")
            .execute(&mut holder)
            .await
            .expect("the lock given up");
    };
    let (opened, ()) = tokio::join!(SqliteStore::open(dir.db()), release);
    opened
        .expect("the store waited for the lock and opened")
        .close()
        .await;
    holder.close().await.unwrap();
}

/// Paths SQLite opens as a database of each connection's own are refused before any is opened,
/// rather than opening a store whose writes find no table (the writer's connection would hold
/// an empty database of its own). A file given as a URI still opens.
#[tokio::test]
async fn a_path_naming_no_database_file_is_refused() {
    for path in [
        "",
        ":memory:",
        "file::memory:",
        "file::memory:?cache=shared",
        "file:%3Amemory%3A",
        "file:hookgate.db?mode=memory",
        "file:hookgate.db?cache=shared&mode=memor%79",
        "file:hookgate.db?vfs=memdb",
        "file:/hookgate.db?vfs=memdb",
        "file:",
        "file:?mode=rwc",
        "file://",
        "file://localhost",
    ] {
        match SqliteStore::open(path).await {
            Err(e @ StoreError::NotAFile { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("give the SQLite store a file path"),
                    "{message}"
                );
            }
            other => panic!("{path:?}: {:?}", other.map(|_| "opened")),
        }
    }
    let dir = TempDir::new("not-a-file");
    let uri = format!("file:{}?mode=rwc", dir.db().display());
    let store = SqliteStore::open(&uri)
        .await
        .expect("a file given as a URI");
    creates_and_loads(&store).await;
    store.close().await;
    assert!(dir.db().exists(), "the URI's file holds the database");
}

/// A busy timeout longer than SQLite takes ("wait for ever") and an empty pool are taken as
/// the longest timeout and one connection, rather than panicking or failing to open.
#[tokio::test]
async fn out_of_range_options_are_brought_into_range() {
    let dir = TempDir::new("out-of-range");
    let options = SqliteOptions::default()
        .with_busy_timeout(std::time::Duration::MAX)
        .with_max_connections(0);
    let store = SqliteStore::open_with(dir.db(), options)
        .await
        .expect("opens");
    creates_and_loads(&store).await;
    store.close().await;
}

/// Creates a deployment and reads it back: the store works.
/// A file SQLite can only read (a `mode=ro` URI here; its permissions for a process not running
/// as root) is refused as a database that cannot be opened, which says to make it writable,
/// rather than as a backend failure to retry: SQLite opens it read-only without a word, and the
/// first write is the migration's.
#[tokio::test]
async fn a_database_that_can_only_be_read_is_refused_at_open() {
    let dir = TempDir::new("read-only");
    SqliteStore::open(dir.db())
        .await
        .expect("open")
        .close()
        .await;
    let uri = format!("file:{}?mode=ro", dir.db().display());
    match SqliteStore::open(&uri).await {
        Err(e @ StoreError::Open { .. }) => {
            assert!(e.to_string().contains("writable"), "{e}");
        }
        other => panic!("{:?}", other.map(|_| "opened")),
    }
}

async fn creates_and_loads(store: &SqliteStore) {
    let (d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    assert!(store.load(d.id()).await.unwrap().is_some());
}
