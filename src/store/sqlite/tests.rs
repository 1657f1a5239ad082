//! The connection settings the durability promise rests on, read back from a live connection.

use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use super::writer::Writer;
use super::{Durability, SqliteOptions, SqliteStore, connect_options};

async fn pragma(store: &SqliteStore, name: &str) -> String {
    let mut conn = store.pool.acquire().await.expect("a pooled connection");
    pragma_of(&mut conn, name).await
}

async fn pragma_of(conn: &mut SqliteConnection, name: &str) -> String {
    let row = sqlx::query(&format!("PRAGMA {name}"))
        .fetch_one(conn)
        .await
        .expect("read the pragma");
    row.try_get::<String, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
        .expect("a text or integer pragma")
}

#[tokio::test]
async fn durability_sets_synchronous_under_wal() {
    let dir = std::env::temp_dir().join(format!("hookgate-store-pragmas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    for (durability, synchronous) in [
        (Durability::ProcessCrash, "1"),
        (Durability::PowerLoss, "2"),
    ] {
        let options = SqliteOptions::default().with_durability(durability);
        let store = SqliteStore::open_with(dir.join("pragmas.db"), options)
            .await
            .expect("open");
        assert_eq!(pragma(&store, "journal_mode").await, "wal");
        assert_eq!(
            pragma(&store, "synchronous").await,
            synchronous,
            "{durability:?}: 1 is NORMAL, 2 is FULL"
        );
        assert_eq!(pragma(&store, "foreign_keys").await, "1");
        assert_eq!(pragma(&store, "busy_timeout").await, "5000");
        store.close().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every write is committed on the writer's own connection, not the pool's: the durability
/// promise rests on its settings.
#[tokio::test]
async fn the_writers_connection_keeps_the_durability_and_leaves_checkpoints_to_it() {
    let dir = std::env::temp_dir().join(format!("hookgate-writer-pragmas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    for (durability, synchronous) in [
        (Durability::ProcessCrash, "1"),
        (Durability::PowerLoss, "2"),
    ] {
        let options = SqliteOptions::default().with_durability(durability);
        let mut conn = Writer::options(connect_options(&dir.join("writer.db"), &options))
            .connect()
            .await
            .expect("open the writer's connection");
        assert_eq!(pragma_of(&mut conn, "journal_mode").await, "wal");
        assert_eq!(
            pragma_of(&mut conn, "synchronous").await,
            synchronous,
            "{durability:?}: 1 is NORMAL, 2 is FULL"
        );
        assert_eq!(pragma_of(&mut conn, "wal_autocheckpoint").await, "0");
        assert_eq!(pragma_of(&mut conn, "foreign_keys").await, "1");
        conn.close().await.expect("close");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
