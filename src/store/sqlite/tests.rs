//! The connection settings the durability promise rests on, read back from a live connection.

use sqlx::Row;

use super::{Durability, SqliteOptions, SqliteStore};

async fn pragma(store: &SqliteStore, name: &str) -> String {
    let row = sqlx::query(&format!("PRAGMA {name}"))
        .fetch_one(&store.pool)
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
