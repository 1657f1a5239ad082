//! Load harness: callbacks per second through hookgate's router into engines on one PostgreSQL
//! database — one replica, and two replicas with each callback sent to either at random —
//! against a naive baseline in the same run: a bare axum handler doing one plain
//! `UPDATE ... WHERE id = $1 AND version = $2` per callback.
//!
//! ```text
//! HOOKGATE_TEST_POSTGRES_URL=postgres://... \
//!   cargo bench --bench replicas_load --features runtime,axum,postgres,test-util -- \
//!   [--requests N] [--concurrency C] [--rounds R]
//! ```
//!
//! Each run uses fresh schemas, dropped at the end. Runs alternate between the three set-ups;
//! the best round of each is reported. Without the variable it prints why and exits 0.

mod load;
mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use hookgate::runtime::ReplicaOptions;
use hookgate::store::{DynStore, PostgresOptions, PostgresStore};
use load::{Round, drive, options, report, serve_engine};
use sqlx::postgres::{PgPool, PgPoolOptions};
use support::ONE_GATE;

/// A schema name no earlier run used.
fn fresh_schema(what: &str) -> String {
    format!("bench_{what}_{:016x}", load::rand_start() as u64)
}

async fn store(url: &str, schema: &str) -> Arc<DynStore> {
    let options = PostgresOptions::default()
        .with_schema(schema)
        .with_max_connections(20);
    Arc::new(PostgresStore::connect_with(url, options).await.unwrap())
}

async fn one_replica(url: &str, requests: usize, concurrency: usize) -> (Round, String) {
    let schema = fresh_schema("one");
    let served = serve_engine(store(url, &schema).await, ONE_GATE, requests, |b| {
        b.replica(ReplicaOptions::new("replica-1"))
    })
    .await;
    let round = drive(served.urls, concurrency).await;
    served.engine.shutdown().await;
    (round, schema)
}

async fn two_replicas(url: &str, requests: usize, concurrency: usize) -> (Round, String) {
    let schema = fresh_schema("two");
    let shared = store(url, &schema).await;
    let mut engines = Vec::new();
    let mut ports = Vec::new();
    let mut urls = Vec::new();
    for (name, share) in [
        ("replica-a", requests / 2),
        ("replica-b", requests - requests / 2),
    ] {
        let served = serve_engine(Arc::clone(&shared), ONE_GATE, share, |b| {
            b.replica(ReplicaOptions::new(name))
        })
        .await;
        ports.push(url::Url::parse(&served.base).unwrap().port());
        urls.extend(served.urls);
        engines.push((served.engine, served.server));
    }
    // As a load balancer would: every callback to either replica, whoever drives its gate.
    let urls = urls
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let mut u = url::Url::parse(&u).unwrap();
            let pick = (i.wrapping_mul(0x9E37_79B9) >> 7) % 2;
            u.set_port(ports[pick]).unwrap();
            u.to_string()
        })
        .collect();
    let round = drive(urls, concurrency).await;
    for (engine, _server) in &engines {
        engine.shutdown().await;
    }
    (round, schema)
}

/// One row per gate, updated once by its callback with a plain versioned `UPDATE`.
async fn baseline(url: &str, requests: usize, concurrency: usize) -> (Round, String) {
    let schema = fresh_schema("naive");
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(url)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {schema}.gates (id TEXT PRIMARY KEY, version BIGINT NOT NULL, state TEXT NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "INSERT INTO {schema}.gates SELECT lpad(to_hex(i), 32, '0'), 1, '{{}}' FROM generate_series(0, $1 - 1) AS i"
    ))
    .bind(requests as i64)
    .execute(&pool)
    .await
    .unwrap();
    let update = Arc::new(format!(
        "UPDATE {schema}.gates SET state = $1, version = version + 1 WHERE id = $2 AND version = $3"
    ));
    let app = {
        let pool = pool.clone();
        axum::Router::new().route(
            "/callbacks/{id}",
            post(
                move |axum::extract::Path(id): axum::extract::Path<String>, body: Bytes| {
                    let (pool, update) = (pool.clone(), Arc::clone(&update));
                    async move {
                        let parsed: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let done = sqlx::query(&update)
                            .bind(parsed.to_string())
                            .bind(id)
                            .bind(1_i64)
                            .execute(&pool)
                            .await
                            .unwrap();
                        assert_eq!(done.rows_affected(), 1, "each gate is updated once");
                        "{\"status\":\"applied\"}"
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let _server = load::serve(listener, app);
    let urls = (0..requests)
        .map(|i| format!("{base}/callbacks/{i:032x}"))
        .collect();
    let round = drive(urls, concurrency).await;
    pool.close().await;
    (round, schema)
}

async fn drop_schemas(url: &str, schemas: &[String]) {
    let pool = PgPool::connect(url).await.unwrap();
    for schema in schemas {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

fn main() {
    let Ok(url) = std::env::var("HOOKGATE_TEST_POSTGRES_URL") else {
        println!(
            "replicas_load: HOOKGATE_TEST_POSTGRES_URL is not set, so there is no PostgreSQL to measure against; skipped"
        );
        return;
    };
    let o = options();
    load::runtime(&o).block_on(async {
        let (mut one, mut two, mut naive, mut schemas) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            for (rounds, (round, schema)) in [
                (&mut one, one_replica(&url, o.requests, o.concurrency).await),
                (
                    &mut two,
                    two_replicas(&url, o.requests, o.concurrency).await,
                ),
                (&mut naive, baseline(&url, o.requests, o.concurrency).await),
            ] {
                rounds.push(round);
                schemas.push(schema);
            }
            // Let the engines' shutdown and the baseline's pool settle between rounds.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        report("pg 1 rep", &one, &naive);
        report("pg 2 rep", &two, &naive);
        drop_schemas(&url, &schemas).await;
    });
}
