//! Multi-row statements of a few fixed sizes, with plain bound parameters.
//!
//! A batch's rows go to SQLite as the rows of a `VALUES` list rather than as JSON, which SQLite
//! would have to parse (and unescape every state and event of) before it could use them. A
//! statement's text fixes its number of rows, and sqlx keeps one prepared statement per text on
//! the writer's connection, so rows are sent in chunks of [`SIZES`] only: a handful of prepared
//! statements serve every batch. The last chunk of a run is padded with rows of `NULL`, which
//! match no deployment and are skipped, when that saves statements without more than doubling
//! the rows sent (see [`plan`]). The largest chunk binds at most `256 × 7` parameters, far below
//! SQLite's limit of 32766.

use std::sync::LazyLock;

use sqlx::SqliteConnection;
use sqlx::sqlite::{Sqlite, SqliteArguments};

/// The numbers of rows a statement may carry, smallest first.
pub(super) const SIZES: [usize; 5] = [1, 4, 16, 64, 256];

/// For `rest` rows still to send (at least one), which of [`SIZES`] the next statement uses
/// (by index) and how many of the rows it carries; any place left is padding. That is the
/// smallest size holding every row left if it is at most twice as many, one statement instead
/// of several, or else the largest size that they fill.
pub(super) fn plan(rest: usize) -> (usize, usize) {
    let mut fits = 0;
    for (at, &size) in SIZES.iter().enumerate() {
        if size >= rest {
            if size <= 2 * rest {
                return (at, rest);
            }
            break;
        }
        fits = at;
    }
    let size = SIZES.get(fits).copied().unwrap_or(1);
    (fits, rest.min(size))
}

/// The text of `rows` rows of `columns` parameters each, for a `VALUES` list.
pub(super) fn values(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// One statement text per size of [`SIZES`], made by `text` from the size.
pub(super) fn texts(text: impl Fn(usize) -> String) -> [String; SIZES.len()] {
    SIZES.map(text)
}

/// A bound statement, to bind rows to.
pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Binds `columns` `NULL`s: one padding row.
pub(super) fn pad(mut query: Query<'_>, columns: usize) -> Query<'_> {
    for _ in 0..columns {
        query = query.bind(None::<i64>);
    }
    query
}

/// One event to append: its deployment, the version that wrote it and its JSON.
pub(super) struct EventRow<'a> {
    pub id: &'a str,
    pub version: i64,
    pub event: &'a str,
}

/// Appends events, each numbered after its deployment's last one. `k` is the event's place
/// among its deployment's events of the same statement, counted from 1: SQLite evaluates the
/// whole `SELECT` before inserting, because it reads the table inserted into, so every
/// `MAX(seq)` of a statement is the one before it. Padding rows have a `NULL` id and are
/// skipped. The writer holds the write lock, so no other writer can take the same numbers.
static APPEND: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "WITH e(id, version, k, event) AS (VALUES {})
             INSERT INTO events (deployment_id, seq, version, event)
             SELECT e.id,
                    (SELECT COALESCE(MAX(seq), 0) FROM events WHERE deployment_id = e.id) + e.k,
                    e.version, e.event
             FROM e WHERE e.id IS NOT NULL",
            values(rows, 4)
        )
    })
});

/// Appends `events`, in order, in as few statements as [`plan`] allows. The events of one
/// deployment must be consecutive, as they are when each deployment has one save among them.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    events: &[EventRow<'_>],
) -> Result<(), sqlx::Error> {
    let mut rest = events;
    while !rest.is_empty() {
        let (size, taken) = plan(rest.len());
        let (chunk, after) = rest.split_at(taken);
        let Some(text) = APPEND.get(size) else {
            break;
        };
        let mut query = sqlx::query(text);
        let mut previous: Option<&str> = None;
        let mut k = 0i64;
        for event in chunk {
            // Numbering restarts with each deployment and with each statement, which reads
            // the deployment's last number again.
            k = if previous == Some(event.id) { k + 1 } else { 1 };
            previous = Some(event.id);
            query = query
                .bind(event.id)
                .bind(event.version)
                .bind(k)
                .bind(event.event);
        }
        for _ in taken..SIZES.get(size).copied().unwrap_or(taken) {
            query = pad(query, 4);
        }
        query.execute(&mut *conn).await?;
        rest = after;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{SIZES, plan};

    /// Every row is sent exactly once, in statements of the listed sizes, never padding a
    /// statement to more than twice its rows.
    #[test]
    fn plans_cover_every_row_once() {
        for rows in 1..=600 {
            let mut rest = rows;
            while rest > 0 {
                let (size, taken) = plan(rest);
                let size = SIZES[size];
                assert!(
                    taken >= 1 && taken <= size && taken <= rest,
                    "{rows}: {taken}/{size}"
                );
                assert!(size <= 2 * taken || taken == size, "{rows}: {taken}/{size}");
                rest -= taken;
            }
        }
        assert_eq!(plan(1), (0, 1));
        assert_eq!(plan(3), (1, 3));
        assert_eq!(plan(5), (1, 4));
        assert_eq!(plan(53), (3, 53));
        assert_eq!(plan(65), (3, 64));
        assert_eq!(plan(300), (4, 256));
    }
}
