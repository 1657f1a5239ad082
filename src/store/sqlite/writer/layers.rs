//! A batch's saves in a constant number of statements rather than two per save.
//!
//! sqlx hands every statement to SQLite on another thread, so a statement's cost is mostly the
//! trip, not the work. Consecutive saves are therefore cut into layers, each holding at most
//! one save per deployment, in the order they were queued: the first save of each deployment
//! goes to the first layer, its second to the second, and so on. Saves of different
//! deployments touch different rows, so running a layer at once is running its saves one after
//! the other; saves of one deployment stay in queue order, one layer apart. A layer is a
//! guarded `UPDATE ... FROM` over all its saves that keep their deployment's status (it leaves
//! the indexes on the status alone), another over the rest, one `INSERT` of the events of those
//! updated, and, only if some were refused, one `SELECT` of their stored versions to report;
//! each takes its rows as bound parameters, in chunks of the sizes [`chunks`] allows, so a
//! large layer may need a few statements of each kind.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::SqliteConnection;

use super::chunks::{self, EventList, ListRow, SIZES, texts, values};
use super::{Answers, Outcome, Save, StoreError, Write, create_one, refused, written};

/// Applies every save of a chunk whose expected version is the stored one and whose status is
/// the stored one, and names them with their deployments' new last event numbers (advanced by
/// each save's number of events). It leaves `status` and `finished` alone, so SQLite leaves the
/// indexes on them alone too, where setting them to the same values would rewrite their
/// entries: most saves do not change the status. The layer holds one save per id, so no row
/// matches twice; padding rows have a `NULL` id, which matches none.
static UPDATE_SAME_STATUS: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "WITH s(id, expected, next, state, status, finished, now, events) AS (VALUES {})
             UPDATE deployments
             SET state = s.state, version = s.next, updated_at = s.now,
                 last_seq = last_seq + s.events
             FROM s
             WHERE deployments.id = s.id AND deployments.version = s.expected
                 AND deployments.status = s.status
             RETURNING deployments.id, deployments.last_seq",
            values(rows, UPDATE_COLUMNS)
        )
    })
});

/// Applies every save of a chunk whose expected version is the stored one, and names them with
/// their deployments' new last event numbers. Run after [`UPDATE_SAME_STATUS`] on the same
/// rows, it finds only those that change the status: the others' versions have moved on.
static UPDATE: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "WITH s(id, expected, next, state, status, finished, now, events) AS (VALUES {})
             UPDATE deployments
             SET state = s.state, status = s.status, finished = s.finished, version = s.next,
                 updated_at = s.now, last_seq = last_seq + s.events
             FROM s
             WHERE deployments.id = s.id AND deployments.version = s.expected
             RETURNING deployments.id, deployments.last_seq",
            values(rows, UPDATE_COLUMNS)
        )
    })
});

/// The parameters of one row of [`UPDATE`] and [`UPDATE_SAME_STATUS`].
const UPDATE_COLUMNS: usize = 8;

/// The stored versions of the deployments whose saves were refused, to report them; padding
/// is `NULL`, which no id equals.
static VERSIONS: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "SELECT id, version FROM deployments WHERE id IN ({})",
            vec!["?"; rows].join(", ")
        )
    })
});

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

/// Runs one layer: saves of distinct deployments.
async fn run_layer(
    conn: &mut SqliteConnection,
    layer: &[(usize, &Save)],
    done: &mut Answers,
) -> Result<(), sqlx::Error> {
    let mut updated = HashMap::with_capacity(layer.len());
    for (size, chunk, padding) in chunks::each(layer) {
        let (Some(same), Some(any)) = (UPDATE_SAME_STATUS.get(size), UPDATE.get(size)) else {
            break;
        };
        let ids = update(conn, same, chunk, padding).await?;
        let all = ids.len() == chunk.len();
        updated.extend(ids);
        if !all {
            updated.extend(update(conn, any, chunk, padding).await?);
        }
    }

    let (written_saves, refused_saves): (Vec<_>, Vec<_>) = layer
        .iter()
        .partition(|(_, save)| updated.contains_key(&save.id.0));
    let events: Vec<_> = written_saves
        .iter()
        .filter_map(|(_, save)| {
            let list = save.events.as_ref()?;
            let last = updated.get(&save.id.0)?;
            Some(ListRow {
                id: &save.id.0,
                first_seq: last - list.count + 1,
                version: save.next,
                list,
            })
        })
        .collect();
    chunks::append(conn, &events).await?;
    done.extend(written_saves.iter().map(|(at, save)| (*at, written(save))));

    let mut stored = HashMap::with_capacity(refused_saves.len());
    for (size, chunk, padding) in chunks::each(&refused_saves) {
        let Some(text) = VERSIONS.get(size) else {
            break;
        };
        let mut query = sqlx::query_as(text);
        for (_, save) in chunk {
            query = query.bind(&save.id.0);
        }
        for _ in 0..padding {
            query = query.bind(None::<&str>);
        }
        let found: Vec<(String, i64)> = query.fetch_all(&mut *conn).await?;
        stored.extend(found);
    }
    done.extend(
        refused_saves
            .iter()
            .map(|(at, save)| (*at, refused(save, stored.get(&save.id.0).copied()))),
    );
    Ok(())
}

/// Runs `text`, one of the `UPDATE`s, over `chunk` and `padding` rows that match nothing;
/// returns the ids it updated, each with its deployment's new last event number.
async fn update(
    conn: &mut SqliteConnection,
    text: &str,
    chunk: &[(usize, &Save)],
    padding: usize,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut query = sqlx::query_as(text);
    for (_, save) in chunk {
        query = query
            .bind(&save.id.0)
            .bind(save.expected)
            .bind(save.next)
            .bind(&save.state)
            .bind(save.status)
            .bind(save.finished)
            .bind(&save.now)
            .bind(EventList::count(save.events.as_ref()));
    }
    for _ in 0..padding {
        for _ in 0..UPDATE_COLUMNS {
            query = query.bind(None::<i64>);
        }
    }
    query.fetch_all(&mut *conn).await
}

#[cfg(test)]
mod tests;
