//! The SQLite store: the conformance suite, durability across `kill -9`, group commit answering
//! each write on its own, migrations on reopen, and typed errors for corrupt rows.
#![cfg(all(feature = "sqlite", feature = "test-util"))]

mod store_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta, Utc};
use hookgate::core::{DeploymentId, EventKind};
use hookgate::store::{
    Durability, DynStore, Lease, NewDeployment, SqliteOptions, SqliteStore, Store, StoreError,
    conformance,
};
use hookgate::test_util::ManualClock;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use store_support::{PLAN, progress, start, start_random};

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

/// Event text goes through the writer's one-statement append unchanged, however it is spelt.
#[tokio::test]
async fn events_round_trip_whatever_their_text() {
    let dir = TempDir::new("event-text");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (mut d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
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
    let dir = TempDir::new("close");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (mut d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
    let events = progress(&mut d, "before close");
    let (saved, ()) = tokio::join!(
        store.save(d.id(), 1, d.state(), d.status(), &events),
        store.close()
    );
    assert_eq!(saved.expect("queued before close"), 2);
    let late = store.save(d.id(), 2, d.state(), d.status(), &[]).await;
    assert!(matches!(late, Err(StoreError::Backend { .. })), "{late:?}");
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
    assert_eq!(before.len(), 1, "one migration: {before:?}");

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

#[tokio::test]
async fn corrupt_rows_are_typed_errors() {
    let dir = TempDir::new("corrupt");
    let store = SqliteStore::open(dir.db()).await.expect("open");
    let (d, events) = start("d1");
    store
        .create(NewDeployment::new(&d, PLAN), &events)
        .await
        .expect("create");
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
        let listed = store.list_unfinished().await;
        assert!(
            matches!(listed, Err(StoreError::Corrupt { .. })),
            "{listed:?}"
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

    sqlx::query("UPDATE events SET event = '[1, 2]' WHERE seq = 1")
        .execute(&pool)
        .await
        .expect("tamper");
    let history = store.history(d.id()).await;
    assert!(
        matches!(&history, Err(StoreError::Corrupt { what: "event", .. })),
        "{history:?}"
    );
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
                supported: 1
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

/// Does nothing in a normal run. `acknowledged_saves_survive_kill_9` runs this test binary again
/// with [`WRITER`] set, and then this saves version after version, printing `acked N` after
/// each save has returned, until it is killed.
#[tokio::test]
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
    let unsupported = |r: Result<(), StoreError>| {
        let e = r.expect_err("refused");
        assert!(matches!(e, StoreError::Unsupported { .. }), "{e:?}");
        assert!(e.to_string().contains("PostgresStore"), "{e}");
    };
    unsupported(store.claim(d.id(), &lease).await.map(drop));
    unsupported(store.renew(&lease).await.map(drop));
    unsupported(store.claim_orphans(&lease, 10).await.map(drop));
    unsupported(store.release("replica-a").await.map(drop));
    unsupported(store.watch(Arc::new(|_: &DeploymentId, _| {})).await);
}
