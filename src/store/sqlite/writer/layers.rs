//! A batch's saves in one command per layer rather than several per save.
//!
//! sqlx hands every command to SQLite on another thread, so a command's cost is mostly the
//! trip, not the work. Consecutive saves are therefore cut into layers, each holding at most
//! one save per deployment, in the order they were queued: the first save of each deployment
//! goes to the first layer, its second to the second, and so on. Saves of different
//! deployments touch different rows, so running a layer at once is running its saves one after
//! the other; saves of one deployment stay in queue order, one layer apart.
//!
//! A layer goes to SQLite as one command of four statements ([`LAYER`]), each taking the
//! layer's rows as bound parameters, in chunks of the sizes [`chunks`] allows (a large layer
//! may need a few commands). Every statement is guarded by the same test, run on the rows as
//! they stood before the layer: a save is applied if and only if its expected version is the
//! stored one. So the first statement, which names the saves that fail the test with their
//! stored versions, also tells which the other three apply; the second appends the events of
//! those applied, numbered on from their deployments' last event before the `UPDATE`s move
//! it; the third applies those that keep their deployment's status, without setting `status`
//! or `finished`, so SQLite leaves the indexes on them alone, where setting them to the same
//! values would rewrite their entries (most saves do not change the status); the fourth
//! applies the rest, whose versions the third has not moved on. Padding rows have a `NULL` id,
//! which matches nothing.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{Row, SqliteConnection};

use super::chunks::{self, EventList, Query, SIZES, pad, texts, values};
use super::{Answers, Outcome, Save, StoreError, Write, create_one, refused, written};

/// The four statements of a layer's chunk, described in the [module docs](self).
///
/// The writes are `OR ROLLBACK`, and the history's reference to its deployment is checked at
/// `COMMIT`: otherwise SQLite keeps a statement journal for each of these multi-row statements,
/// to undo that statement alone if a constraint failed half-way, and writing it was a twentieth
/// of the store's work. Nothing is lost by it: a statement the batch shares that fails makes
/// the writer roll back and run the batch again one write at a time anyway.
static LAYER: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "WITH s(id, expected) AS (VALUES {refused})
             SELECT s.id, d.version FROM s LEFT JOIN deployments d ON d.id = s.id
             WHERE s.id IS NOT NULL AND d.version IS NOT s.expected;
             WITH s(id, expected, next, count, events) AS (VALUES {append})
             INSERT OR ROLLBACK INTO history (deployment_id, first_seq, count, version, events)
             SELECT s.id, d.last_seq + 1, s.count, s.next, s.events
             FROM s JOIN deployments d ON d.id = s.id AND d.version = s.expected
             WHERE s.events IS NOT NULL;
             WITH s(id, expected, next, state, status, finished, now, count) AS (VALUES {update})
             UPDATE OR ROLLBACK deployments
             SET state = s.state, version = s.next, updated_at = s.now,
                 last_seq = last_seq + s.count
             FROM s
             WHERE deployments.id = s.id AND deployments.version = s.expected
                 AND deployments.status = s.status;
             WITH s(id, expected, next, state, status, finished, now, count) AS (VALUES {update})
             UPDATE OR ROLLBACK deployments
             SET state = s.state, status = s.status, finished = s.finished, version = s.next,
                 updated_at = s.now, last_seq = last_seq + s.count
             FROM s
             WHERE deployments.id = s.id AND deployments.version = s.expected",
            refused = values(rows, REFUSED_COLUMNS),
            append = values(rows, APPEND_COLUMNS),
            update = values(rows, UPDATE_COLUMNS),
        )
    })
});

/// [`LAYER`] as a transaction of its own, for a batch that is one chunk of one layer: the
/// whole batch in one command.
static WHOLE: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    LAYER
        .each_ref()
        .map(|layer| format!("BEGIN IMMEDIATE;\n{layer};\nCOMMIT"))
});

/// The parameters of one row of each statement of [`LAYER`].
const REFUSED_COLUMNS: usize = 2;
const APPEND_COLUMNS: usize = 5;
const UPDATE_COLUMNS: usize = 8;

/// Runs the writes of `items` not yet answered, in queue order: each run of consecutive saves
/// in layers, each create on its own. Any database failure is returned for the whole attempt,
/// since a shared statement cannot say which save it failed for.
pub(super) async fn run(
    conn: &mut SqliteConnection,
    items: &[(Write, Option<Result<u64, StoreError>>)],
) -> Result<Answers, sqlx::Error> {
    let mut done = Vec::with_capacity(items.len());
    let mut saves = Vec::new();
    for (at, (write, result)) in items.iter().enumerate() {
        if result.is_some() {
            continue;
        }
        match write {
            Write::Save(save, _) => saves.push((at, &**save)),
            Write::Create(create, _) => {
                run_saves(conn, &saves, &mut done).await?;
                saves.clear();
                match create_one(conn, create).await {
                    Outcome::Done(result) => done.push((at, result)),
                    Outcome::Failed(e) => return Err(e),
                }
            }
            Write::Close(_) => {}
        }
    }
    run_saves(conn, &saves, &mut done).await?;
    Ok(done)
}

/// The saves of a batch that are one chunk of one layer, with the text to run them as a
/// transaction of their own ([`WHOLE`]): those not yet answered, if every one is a save, of a
/// deployment of its own, and few enough for one statement.
pub(super) struct Whole<'a> {
    text: &'a str,
    saves: Vec<(usize, &'a Save)>,
    padding: usize,
}

impl<'a> Whole<'a> {
    /// The batch `items` as one command, or `None` if it is not one chunk of one layer.
    pub(super) fn of(items: &'a [(Write, Option<Result<u64, StoreError>>)]) -> Option<Self> {
        let mut saves = Vec::with_capacity(items.len());
        let mut ids = HashSet::with_capacity(items.len());
        for (at, (write, result)) in items.iter().enumerate() {
            match (write, result) {
                (_, Some(_)) | (Write::Close(_), None) => {}
                (Write::Save(save, _), None) if ids.insert(save.id.0.as_str()) => {
                    saves.push((at, &**save));
                }
                (Write::Save(..) | Write::Create(..), None) => return None,
            }
        }
        let (size, padding) = {
            let mut chunks = chunks::each(&saves);
            let (size, _, padding) = chunks.next()?;
            chunks.next().is_none().then_some((size, padding))?
        };
        Some(Self {
            text: WHOLE.get(size)?,
            saves,
            padding,
        })
    }

    /// Runs the batch, committed once this returns `Ok`; on `Err` the transaction may still
    /// be open.
    pub(super) async fn run(self, conn: &mut SqliteConnection) -> Result<Answers, sqlx::Error> {
        let mut done = Vec::with_capacity(self.saves.len());
        run_chunk(conn, self.text, &self.saves, self.padding, &mut done).await?;
        Ok(done)
    }
}

/// One save on its own: a layer of one.
pub(super) async fn save_one(conn: &mut SqliteConnection, save: &Save) -> Outcome {
    let mut done = Vec::with_capacity(1);
    match run_layer(conn, &[(0, save)], &mut done).await {
        Err(e) => Outcome::Failed(e),
        Ok(()) => match done.pop() {
            Some((_, result)) => Outcome::Done(result),
            None => Outcome::Failed(sqlx::Error::Protocol(
                "a layer of one save gave no answer".into(),
            )),
        },
    }
}

/// Runs consecutive saves, layer after layer.
async fn run_saves(
    conn: &mut SqliteConnection,
    saves: &[(usize, &Save)],
    done: &mut Answers,
) -> Result<(), sqlx::Error> {
    let mut layers: Vec<Vec<(usize, &Save)>> = Vec::new();
    let mut depth: HashMap<&str, usize> = HashMap::with_capacity(saves.len());
    for &(at, save) in saves {
        let depth = depth.entry(save.id.0.as_str()).or_default();
        match layers.get_mut(*depth) {
            Some(layer) => layer.push((at, save)),
            None => layers.push(vec![(at, save)]),
        }
        *depth += 1;
    }
    for layer in &layers {
        run_layer(conn, layer, done).await?;
    }
    Ok(())
}

/// Runs one layer, saves of distinct deployments, one [`LAYER`] command per chunk.
async fn run_layer(
    conn: &mut SqliteConnection,
    layer: &[(usize, &Save)],
    done: &mut Answers,
) -> Result<(), sqlx::Error> {
    for (size, chunk, padding) in chunks::each(layer) {
        let Some(text) = LAYER.get(size) else {
            break;
        };
        run_chunk(conn, text, chunk, padding, done).await?;
    }
    Ok(())
}

/// Runs `text`, [`LAYER`] or [`WHOLE`], over `chunk` and `padding` rows that match nothing.
async fn run_chunk(
    conn: &mut SqliteConnection,
    text: &str,
    chunk: &[(usize, &Save)],
    padding: usize,
    done: &mut Answers,
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(text);
    query = bind(query, chunk, padding, REFUSED_COLUMNS, |q, save| {
        q.bind(&save.id.0).bind(save.expected)
    });
    query = bind(query, chunk, padding, APPEND_COLUMNS, |q, save| {
        q.bind(&save.id.0)
            .bind(save.expected)
            .bind(save.next)
            .bind(EventList::count(save.events.as_ref()))
            .bind(save.events.as_ref().map(|list| list.json.as_str()))
    });
    for _ in 0..2 {
        query = bind(query, chunk, padding, UPDATE_COLUMNS, |q, save| {
            q.bind(&save.id.0)
                .bind(save.expected)
                .bind(save.next)
                .bind(&save.state)
                .bind(save.status)
                .bind(save.finished)
                .bind(&save.now)
                .bind(EventList::count(save.events.as_ref()))
        });
    }
    let mut stored = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        // The id is the save's own, bound as text. A stored version that is not an integer
        // (a row edited by hand) is that save's answer, not the batch's: in a whole batch the
        // transaction has committed by now, and failing it would report committed saves as
        // failed.
        let actual = row.try_get::<Option<i64>, _>(1).map_err(|e| e.to_string());
        stored.insert(row.try_get::<String, _>(0)?, actual);
    }
    done.extend(chunk.iter().map(|(at, save)| {
        let answer = match stored.remove(&save.id.0) {
            None => written(save),
            Some(Ok(actual)) => refused(save, actual),
            Some(Err(reason)) => Err(StoreError::Corrupt {
                id: save.id.clone(),
                what: "version",
                source: reason.into(),
            }),
        };
        (*at, answer)
    }));
    Ok(())
}

/// Binds a statement's rows: `row` binds one save's parameters, then `padding` rows of
/// `columns` `NULL`s follow.
fn bind<'q>(
    mut query: Query<'q>,
    chunk: &[(usize, &'q Save)],
    padding: usize,
    columns: usize,
    row: impl Fn(Query<'q>, &'q Save) -> Query<'q>,
) -> Query<'q> {
    for (_, save) in chunk {
        query = row(query, save);
    }
    for _ in 0..padding {
        query = pad(query, columns);
    }
    query
}

#[cfg(test)]
mod tests;
