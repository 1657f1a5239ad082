//! [`run`] on its own, without the writer's fallback: a batch whose shared statements failed
//! would still be answered rightly by running it again one write at a time, so only here does a
//! wrong layering show.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::oneshot;

use super::{Whole, run};
use crate::core::DeploymentId;
use crate::store::StoreError;
use crate::store::sqlite::SqliteStore;
use crate::store::sqlite::writer::{Create, EventList, Save, Write};

const NOW: &str = "2030-01-01T00:00:00.000000Z";

/// A state whose text JSON would spell otherwise if it were parsed and printed again.
fn state(id: &str, version: i64) -> String {
    format!(r#"{{"at": {version}, "note": "\"{id}\" \\ \u00e9"}}"#)
}

/// The event list of `texts`, each event the JSON string of its text.
fn events(texts: &[&str]) -> Option<EventList> {
    let json: Vec<String> = texts
        .iter()
        .map(|t| serde_json::to_string(t).expect("a string is JSON"))
        .collect();
    EventList::join(json.iter().map(String::as_str))
}

/// Every event stored for `id` (every deployment's, for `None`), numbered: (id, seq, version,
/// text).
async fn history(conn: &mut SqliteConnection, id: Option<&str>) -> Vec<(String, i64, i64, String)> {
    let rows: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT deployment_id, first_seq, count, version, events FROM history
         WHERE ?1 IS NULL OR deployment_id = ?1 ORDER BY deployment_id, first_seq",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .expect("read the events");
    let mut history = Vec::new();
    for (id, first, count, version, events) in rows {
        let texts: Vec<String> = serde_json::from_str(&events).expect("a JSON array of strings");
        assert_eq!(texts.len() as i64, count, "{id} {first}: {events}");
        history.extend(
            (first..)
                .zip(texts)
                .map(|(seq, text)| (id.clone(), seq, version, text)),
        );
    }
    history
}

fn save(id: &str, expected: i64, texts: &[&str]) -> Write {
    let save = Save {
        id: DeploymentId::from(id),
        expected_version: expected.unsigned_abs(),
        expected,
        next: expected + 1,
        state: state(id, expected + 1),
        status: "running",
        finished: false,
        events: events(texts),
        now: NOW.to_owned(),
    };
    Write::Save(Box::new(save), oneshot::channel().0)
}

/// `write`, a save, changed to end its deployment with `status`.
fn finishing(mut write: Write, status: &'static str) -> Write {
    if let Write::Save(save, _) = &mut write {
        save.status = status;
        save.finished = true;
    }
    write
}

/// Runs `sql`, rows to start a test from.
async fn seed(conn: &mut SqliteConnection, sql: &str) {
    sqlx::raw_sql(sql).execute(conn).await.expect("seed");
}

fn create(id: &str, texts: &[&str]) -> Write {
    let create = Create {
        id: DeploymentId::from(id),
        application: "shop".to_owned(),
        plan_source: "plan".to_owned(),
        state: state(id, 1),
        status: "running",
        finished: false,
        callback_ids: Vec::new(),
        events: events(texts),
        now: NOW.to_owned(),
        exclusive: false,
    };
    Write::Create(Box::new(create), oneshot::channel().0)
}

/// An answer, comparable: `Err(Some(actual))` is a conflict, `Err(None)` not found.
fn answer(result: &Result<u64, StoreError>) -> Result<u64, Option<u64>> {
    match result {
        Ok(version) => Ok(*version),
        Err(StoreError::Conflict { actual, .. }) => Err(Some(*actual)),
        Err(StoreError::NotFound { .. }) => Err(None),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn connect(dir: &tempfile::TempDir) -> SqliteConnection {
    let path = dir.path().join("layers.db");
    SqliteStore::open(&path).await.expect("open").close().await;
    SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("connect")
}

/// [`run`] in a transaction of its own, as the writer runs it; its answers in queue order. No
/// shared statement may fail, which would hide a layering mistake behind the fallback.
async fn run_in_transaction(
    conn: &mut SqliteConnection,
    items: &[(Write, Option<Result<u64, StoreError>>)],
) -> super::Answers {
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .expect("begin");
    let mut answers = run(conn, items).await.expect("no shared statement fails");
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .expect("commit");
    answers.sort_by_key(|(at, _)| *at);
    answers
}

/// Saves of one deployment queued several times in a row go to successive layers, interleaved
/// with stale saves, an unknown id and a create: every answer is the one-at-a-time answer, no
/// shared statement fails, and the rows and numbered events are those written one at a time.
#[tokio::test]
async fn layers_answer_as_one_write_at_a_time() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut conn = connect(&dir).await;
    seed(
        &mut conn,
        r#"INSERT INTO deployments VALUES
            ('a', 'shop', '{}', 'running', 0, 1, 't', 't', 2),
            ('b', 'shop', '{}', 'running', 0, 1, 't', 't', 0),
            ('c', 'shop', '{}', 'running', 0, 3, 't', 't', 0);
         INSERT INTO history VALUES ('a', 1, 2, 1, '["a1", "a1 again"]');"#,
    )
    .await;

    let last = finishing(save("a", 3, &[]), "succeeded");
    let batch = [
        (save("a", 1, &["a2 \"x\"", "a2 y\n"]), Ok(2)),
        (save("b", 1, &["b2"]), Ok(2)),
        (save("a", 2, &["a3"]), Ok(3)),
        (save("c", 1, &["stale c"]), Err(Some(3))),
        (save("ghost", 1, &["ghost"]), Err(None)),
        (save("a", 2, &["stale a"]), Err(Some(3))),
        (save("b", 1, &[]), Err(Some(2))),
        (save("c", 3, &["c4"]), Ok(4)),
        (save("n", 1, &["too early"]), Err(None)),
        (create("n", &["n1"]), Ok(1)),
        (save("n", 1, &["n2"]), Ok(2)),
        (last, Ok(4)),
    ];
    let (items, want): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|(write, want)| ((write, None), want))
        .unzip();

    let answers = run_in_transaction(&mut conn, &items).await;
    let got: Vec<_> = answers.iter().map(|(_, result)| answer(result)).collect();
    assert_eq!(got, want);
    let answered: Vec<usize> = answers.iter().map(|(at, _)| *at).collect();
    assert_eq!(answered, (0..items.len()).collect::<Vec<_>>(), "each once");

    let rows: Vec<(String, String, String, bool, i64, String)> = sqlx::query_as(
        "SELECT id, state, status, finished, version, updated_at FROM deployments ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the deployments");
    let row = |id: &str, version, status: &str, finished| {
        let updated = if id == "n" || version > 1 { NOW } else { "t" };
        (
            id.to_owned(),
            state(id, version),
            status.to_owned(),
            finished,
            version,
            updated.to_owned(),
        )
    };
    assert_eq!(
        rows,
        [
            row("a", 4, "succeeded", true),
            row("b", 2, "running", false),
            row("c", 4, "running", false),
            row("n", 2, "running", false),
        ]
    );

    let history = history(&mut conn, None).await;
    let event = |id: &str, seq, version, text: &str| (id.to_owned(), seq, version, text.to_owned());
    assert_eq!(
        history,
        [
            event("a", 1, 1, "a1"),
            event("a", 2, 1, "a1 again"),
            event("a", 3, 2, "a2 \"x\""),
            event("a", 4, 2, "a2 y\n"),
            event("a", 5, 3, "a3"),
            event("b", 1, 2, "b2"),
            event("c", 1, 4, "c4"),
            event("n", 1, 1, "n1"),
            event("n", 2, 2, "n2"),
        ]
    );
}

/// Layers of 1, 4, 16, 64 and 65 saves, around every chunk size, with one stale save in five
/// and one save of 70 events: each answer and every event number is
/// the one-at-a-time one.
#[tokio::test]
async fn layers_of_every_chunk_size_answer_as_one_write_at_a_time() {
    for n in [1usize, 4, 16, 64, 65] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut conn = connect(&dir).await;
        for i in 0..n {
            sqlx::query(
                r#"INSERT INTO deployments VALUES (?, 'shop', '{}', 'running', 0, 1, 't', 't', 1);
                 INSERT INTO history VALUES (?, 1, 1, 1, '["first"]')"#,
            )
            .bind(format!("d{i}"))
            .bind(format!("d{i}"))
            .execute(&mut conn)
            .await
            .expect("seed");
        }
        let many: Vec<String> = (0..70).map(|k| format!("e{k}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut items = Vec::new();
        let mut want = Vec::new();
        for i in 0..n {
            let id = format!("d{i}");
            let stale = i % 5 == 4;
            let texts: &[&str] = if i == 0 { &many } else { &["x", "y", "z"] };
            items.push((save(&id, if stale { 7 } else { 1 }, texts), None));
            want.push(if stale { Err(Some(1)) } else { Ok(2) });
        }

        let answers = run_in_transaction(&mut conn, &items).await;
        let got: Vec<_> = answers.iter().map(|(_, result)| answer(result)).collect();
        assert_eq!(got, want, "{n} saves");

        for i in 0..n {
            let id = format!("d{i}");
            let history = history(&mut conn, Some(&id)).await;
            let mut expect = vec![(id.clone(), 1, 1, "first".to_owned())];
            if i % 5 != 4 {
                let texts: Vec<&str> = if i == 0 {
                    many.clone()
                } else {
                    vec!["x", "y", "z"]
                };
                expect.extend(
                    (2..)
                        .zip(texts)
                        .map(|(seq, text)| (id.clone(), seq, 2, text.to_owned())),
                );
            }
            assert_eq!(history, expect, "{n} saves: {id}");
        }
    }
}

/// Only a batch of saves of distinct deployments, few enough for one statement, is sent as one
/// command; writes already answered and the close are not part of it.
#[test]
fn a_whole_batch_is_one_chunk_of_one_layer() {
    let saves = |n: usize| -> Vec<_> {
        (0..n)
            .map(|i| (save(&format!("d{i}"), 1, &[]), None))
            .collect()
    };
    let whole = |items: &[(Write, Option<Result<u64, StoreError>>)]| {
        Whole::of(items).map(|whole| whole.saves.iter().map(|(at, _)| *at).collect::<Vec<_>>())
    };
    assert_eq!(whole(&saves(1)), Some(vec![0]));
    assert_eq!(whole(&saves(64)), Some((0..64).collect()));
    assert_eq!(whole(&saves(100)), None, "64 + 36: two statements");
    assert_eq!(whole(&saves(256)), Some((0..256).collect()));

    let mut items = saves(3);
    items[1].1 = Some(Ok(2));
    items.push((Write::Close(oneshot::channel().0), None));
    assert_eq!(
        whole(&items),
        Some(vec![0, 2]),
        "answered and close left out"
    );

    let mut twice = saves(2);
    twice.push((save("d0", 2, &[]), None));
    assert_eq!(whole(&twice), None, "a second save of d0 is a second layer");

    let mut with_create = saves(2);
    with_create.push((create("n", &[]), None));
    assert_eq!(whole(&with_create), None);
}

/// A batch sent as one command commits itself and answers as one write at a time would: the
/// fresh save is written with its events, the stale one and the unknown id are refused with
/// nothing written, and no transaction is left open.
#[tokio::test]
async fn a_whole_batch_commits_in_one_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut conn = connect(&dir).await;
    seed(
        &mut conn,
        r#"INSERT INTO deployments VALUES
            ('a', 'shop', '{}', 'running', 0, 1, 't', 't', 1),
            ('c', 'shop', '{}', 'running', 0, 3, 't', 't', 0);
         INSERT INTO history VALUES ('a', 1, 1, 1, '["a1"]');"#,
    )
    .await;
    let done = finishing(save("c", 1, &["stale c"]), "failed");
    let items = [
        (save("a", 1, &["a2", "a2 again"]), None),
        (done, None),
        (save("ghost", 1, &["ghost"]), None),
    ];

    let whole = Whole::of(&items).expect("one chunk of one layer");
    let mut answers = whole.run(&mut conn).await.expect("the batch commits");
    answers.sort_by_key(|(at, _)| *at);
    let got: Vec<_> = answers.iter().map(|(_, result)| answer(result)).collect();
    assert_eq!(got, [Ok(2), Err(Some(3)), Err(None)]);

    sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK")
        .execute(&mut conn)
        .await
        .expect("no transaction was left open");
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT id, status, version, last_seq FROM deployments ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("read the deployments");
    assert_eq!(
        rows,
        [
            ("a".to_owned(), "running".to_owned(), 2, 3),
            ("c".to_owned(), "running".to_owned(), 3, 0),
        ]
    );
    let event = |id: &str, seq, version, text: &str| (id.to_owned(), seq, version, text.to_owned());
    assert_eq!(
        history(&mut conn, None).await,
        [
            event("a", 1, 1, "a1"),
            event("a", 2, 2, "a2"),
            event("a", 3, 2, "a2 again"),
        ]
    );
}

/// A version edited by hand into something other than an integer is that save's answer; the
/// batch's transaction has committed by the time the refused rows are read, so the other saves
/// are answered as written, not reported failed.
#[tokio::test]
async fn a_stored_version_that_is_not_an_integer_fails_only_its_own_save() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut conn = connect(&dir).await;
    seed(
        &mut conn,
        r#"INSERT INTO deployments VALUES
            ('a', 'shop', '{}', 'running', 0, 1, 't', 't', 0),
            ('b', 'shop', '{}', 'running', 0, 1.5, 't', 't', 0);"#,
    )
    .await;
    let items = [(save("a", 1, &["a2"]), None), (save("b", 1, &["b2"]), None)];

    let whole = Whole::of(&items).expect("one chunk of one layer");
    let mut answers = whole.run(&mut conn).await.expect("the batch commits");
    answers.sort_by_key(|(at, _)| *at);

    assert_eq!(answer(&answers[0].1), Ok(2));
    assert!(
        matches!(
            &answers[1].1,
            Err(StoreError::Corrupt {
                what: "version",
                ..
            })
        ),
        "{:?}",
        answers[1].1
    );
    let version: i64 = sqlx::query_scalar("SELECT version FROM deployments WHERE id = 'a'")
        .fetch_one(&mut conn)
        .await
        .expect("read a's version");
    assert_eq!(version, 2, "a's save was committed");
}
