//! Multi-row statements of a few fixed sizes, with plain bound parameters.
//!
//! A batch's rows go to SQLite as the rows of a `VALUES` list rather than as JSON, which SQLite
//! would have to parse (and unescape every state and event of) before it could use them. A
//! statement's text fixes its number of rows, and sqlx keeps one prepared statement per text on
//! the writer's connection, so rows are sent in chunks of [`SIZES`] only: a handful of prepared
//! statements serve every batch. The last chunk of a run is padded with rows of `NULL`, which
//! match no deployment and are skipped, when that saves statements without more than doubling
//! the rows sent (see [`plan`]). The largest chunk binds at most `256 × 23` parameters (a
//! layer's four statements: 2 + 5 + 8 + 8 per row), 5,888, far below SQLite's limit of 32766.

use std::sync::LazyLock;

use sqlx::SqliteConnection;
use sqlx::sqlite::{Sqlite, SqliteArguments};

use crate::core::{DeploymentId, Event};
use crate::store::{StoreError, codec};

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

/// `rows` cut into the chunks [`plan`] makes, in order: each with the index in [`SIZES`] of
/// the statement that carries it and the number of padding rows that statement needs after it.
pub(super) fn each<T>(rows: &[T]) -> impl Iterator<Item = (usize, &[T], usize)> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (size, taken) = plan(rest.len());
        let (chunk, after) = rest.split_at(taken);
        rest = after;
        let padding = SIZES
            .get(size)
            .map_or(0, |&rows| rows.saturating_sub(taken));
        Some((size, chunk, padding))
    })
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

/// One write's events: a JSON array of them, and how many it holds.
#[derive(Debug)]
pub(in crate::store::sqlite) struct EventList {
    pub json: String,
    pub count: i64,
}

impl EventList {
    /// The list of `events`, or `None` for none.
    pub(in crate::store::sqlite) fn encode(
        id: &DeploymentId,
        events: &[Event],
    ) -> Result<Option<Self>, StoreError> {
        let Some(count) = i64::try_from(events.len()).ok().filter(|&n| n > 0) else {
            return Ok(None);
        };
        Ok(Some(Self {
            json: codec::encode_event_list(id, events)?,
            count,
        }))
    }

    /// How many events `list` holds: none for no list.
    pub(in crate::store::sqlite) fn count(list: Option<&Self>) -> i64 {
        list.map_or(0, |list| list.count)
    }

    /// The list of `events` (each already JSON), or `None` for none.
    #[cfg(test)]
    pub(in crate::store::sqlite) fn join<'a>(
        events: impl ExactSizeIterator<Item = &'a str>,
    ) -> Option<Self> {
        let count = i64::try_from(events.len()).ok().filter(|&n| n > 0)?;
        let mut json = String::from("[");
        for (at, event) in events.enumerate() {
            if at > 0 {
                json.push(',');
            }
            json.push_str(event);
        }
        json.push(']');
        Some(Self { json, count })
    }
}

/// One write's events to append: its deployment, the number of the first of them in its
/// history, the version that wrote them, and them.
pub(super) struct ListRow<'a> {
    pub id: &'a str,
    pub first_seq: i64,
    pub version: i64,
    pub list: &'a EventList,
}

/// Appends each write's events as one row. Padding rows have a `NULL` id and are skipped.
static APPEND: LazyLock<[String; SIZES.len()]> = LazyLock::new(|| {
    texts(|rows| {
        format!(
            "WITH e(id, first_seq, count, version, events) AS (VALUES {})
             INSERT INTO history (deployment_id, first_seq, count, version, events)
             SELECT * FROM e WHERE e.id IS NOT NULL",
            values(rows, APPEND_COLUMNS)
        )
    })
});

/// The parameters of one row of [`APPEND`].
const APPEND_COLUMNS: usize = 5;

/// Appends `lists`, in as few statements as [`plan`] allows.
pub(super) async fn append(
    conn: &mut SqliteConnection,
    lists: &[ListRow<'_>],
) -> Result<(), sqlx::Error> {
    for (size, chunk, padding) in each(lists) {
        let Some(text) = APPEND.get(size) else {
            break;
        };
        let mut query = sqlx::query(text);
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.first_seq)
                .bind(row.list.count)
                .bind(row.version)
                .bind(row.list.json.as_str());
        }
        for _ in 0..padding {
            query = pad(query, APPEND_COLUMNS);
        }
        query.execute(&mut *conn).await?;
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
