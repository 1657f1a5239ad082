//! A batch's saves in a constant number of statements rather than two per save.
//!
//! sqlx hands every statement to SQLite on another thread, so a statement's cost is mostly the
//! trip, not the work. Consecutive saves are therefore cut into layers, each holding at most
//! one save per deployment, in the order they were queued: the first save of each deployment
//! goes to the first layer, its second to the second, and so on. Saves of different
//! deployments touch different rows, so running a layer at once is running its saves one after
//! the other; saves of one deployment stay in queue order, one layer apart. A layer is one
//! guarded `UPDATE ... FROM` over all its saves, one `INSERT` of the events of those it
//! updated, and, only if some were refused, one `SELECT` of their stored versions to report.
//! Each statement takes its saves as one JSON array, unpacked by `json_each`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{Answers, Outcome, Save, StoreError, Write, create_one, refused, written};

/// Applies every save of a layer whose expected version is the stored one, and names them.
/// The layer holds one save per id, so no row matches twice.
const UPDATE: &str = "UPDATE deployments
     SET state = s.state, status = s.status, finished = s.finished, version = s.next,
         updated_at = s.now
     FROM (SELECT json_extract(value, '$.id') AS id,
                  json_extract(value, '$.expected') AS expected,
                  json_extract(value, '$.next') AS next,
                  json_extract(value, '$.state') AS state,
                  json_extract(value, '$.status') AS status,
                  json_extract(value, '$.finished') AS finished,
                  json_extract(value, '$.now') AS now
           FROM json_each(?)) AS s
     WHERE deployments.id = s.id AND deployments.version = s.expected
     RETURNING deployments.id";

/// Appends the events of several saves, each numbered after its deployment's last event as
/// the one-save append does. Each save's events arrive as the JSON text of an array, which the
/// inner `json_each` unpacks.
const APPEND: &str = "INSERT INTO events (deployment_id, seq, version, event)
     SELECT s.id, s.last + e.key + 1, s.version, e.value
     FROM (SELECT json_extract(j.value, '$.id') AS id,
                  json_extract(j.value, '$.version') AS version,
                  json_extract(j.value, '$.events') AS events,
                  (SELECT COALESCE(MAX(seq), 0) FROM events
                   WHERE deployment_id = json_extract(j.value, '$.id')) AS last
           FROM json_each(?) AS j) AS s,
          json_each(s.events) AS e";

/// The stored versions of the deployments whose saves were refused, to report them.
const VERSIONS: &str =
    "SELECT id, version FROM deployments WHERE id IN (SELECT value FROM json_each(?))";

/// One save, as an element of the array [`UPDATE`] unpacks. The state is embedded as a string,
/// which `json_extract` returns as the text it was, not parsed into JSON.
#[derive(Serialize)]
struct SaveRow<'a> {
    id: &'a str,
    expected: i64,
    next: i64,
    state: &'a str,
    status: &'a str,
    finished: bool,
    now: &'a str,
}

/// One updated save's events, as an element of the array [`APPEND`] unpacks.
#[derive(Serialize)]
struct EventsRow<'a> {
    id: &'a str,
    version: i64,
    /// The JSON array of [`Save::events`], as a string.
    events: &'a str,
}

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
    let rows: Vec<_> = layer
        .iter()
        .map(|(_, save)| SaveRow {
            id: &save.id.0,
            expected: save.expected,
            next: save.next,
            state: &save.state,
            status: save.status,
            finished: save.finished,
            now: &save.now,
        })
        .collect();
    let updated: Vec<String> = sqlx::query_scalar(UPDATE)
        .bind(json(&rows)?)
        .fetch_all(&mut *conn)
        .await?;
    let updated: HashSet<String> = updated.into_iter().collect();

    let (written_saves, refused_saves): (Vec<_>, Vec<_>) = layer
        .iter()
        .partition(|(_, save)| updated.contains(&save.id.0));
    let events: Vec<_> = written_saves
        .iter()
        .filter_map(|(_, save)| {
            save.events.as_deref().map(|events| EventsRow {
                id: &save.id.0,
                version: save.next,
                events,
            })
        })
        .collect();
    if !events.is_empty() {
        sqlx::query(APPEND)
            .bind(json(&events)?)
            .execute(&mut *conn)
            .await?;
    }
    done.extend(written_saves.iter().map(|(at, save)| (*at, written(save))));

    if refused_saves.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = refused_saves
        .iter()
        .map(|(_, save)| save.id.0.as_str())
        .collect();
    let stored: Vec<(String, i64)> = sqlx::query_as(VERSIONS)
        .bind(json(&ids)?)
        .fetch_all(&mut *conn)
        .await?;
    let stored: HashMap<String, i64> = stored.into_iter().collect();
    done.extend(
        refused_saves
            .iter()
            .map(|(at, save)| (*at, refused(save, stored.get(&save.id.0).copied()))),
    );
    Ok(())
}

/// A statement's JSON parameter. Serializing plain strings and numbers does not fail; were it
/// to, the error is the attempt's like any other and the batch runs one write at a time.
fn json(value: &impl Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

#[cfg(test)]
mod tests;
