//! Saves per second of each store, at 1 and 64 concurrent writers.
//!
//! `cargo bench --features sqlite --bench store`. Each writer owns one deployment and saves it
//! version after version (state as JSON plus one event), as the runtime does for deployments in
//! flight; criterion reports the time per save and the throughput in saves per second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, Event, IdSource, StartOptions};
use hookgate::ids::RandomIds;
use hookgate::store::{
    Durability, DynStore, MemoryStore, NewDeployment, SqliteOptions, SqliteStore,
};
use tokio::runtime::Runtime;

const PLAN: &str = r#"
application: checkout
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
webhooks:
  - name: ticket
    uriTemplate: "https://tickets.example/{{armory.deploymentId}}"
"#;

/// A deployment stored at version 1, and the event each of its saves appends.
async fn stored(store: &DynStore, plan: &Arc<Plan>) -> (Deployment, Vec<Event>) {
    let id = DeploymentId(RandomIds.callback_id().to_string());
    let mut d = Deployment::start(
        Arc::clone(plan),
        id,
        StartOptions::default(),
        &mut RandomIds,
        Utc::now(),
    );
    while d.poll_action().is_some() {}
    let created: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    store
        .create(NewDeployment::new(&d, PLAN), &created)
        .await
        .expect("create");
    let (_, callback) = d.callback_ids().next().expect("one webhook gate");
    d.handle_progress(Utc::now(), callback, "halfway".into())
        .expect("open gate");
    let events = std::iter::from_fn(|| d.poll_event()).collect();
    (d, events)
}

/// Runs at least `iters` saves spread over `writers` tasks; returns the time of `iters` saves.
async fn saves(store: &Arc<DynStore>, plan: &Arc<Plan>, writers: u64, iters: u64) -> Duration {
    let per_writer = iters.div_ceil(writers);
    let mut prepared = Vec::new();
    for _ in 0..writers {
        prepared.push(stored(&**store, plan).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(d, events)| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                for version in 1..=per_writer {
                    store
                        .save(d.id(), version, d.state(), d.status(), &events)
                        .await
                        .expect("save");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_writer * writers) as f64)
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let plan = Arc::new(Plan::from_yaml(PLAN).expect("plan"));
    let dir = std::env::temp_dir().join(format!("hookgate-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let sqlite = |name: &str, durability| -> Arc<DynStore> {
        let path: PathBuf = dir.join(name);
        let options = SqliteOptions::default().with_durability(durability);
        Arc::new(
            runtime
                .block_on(SqliteStore::open_with(path, options))
                .expect("open"),
        )
    };
    let stores: [(&str, Arc<DynStore>); 3] = [
        ("memory", Arc::new(MemoryStore::new())),
        (
            "sqlite_normal",
            sqlite("normal.db", Durability::ProcessCrash),
        ),
        ("sqlite_full", sqlite("full.db", Durability::PowerLoss)),
    ];
    let mut group = c.benchmark_group("store_save");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for writers in [1, 64] {
        for (name, store) in &stores {
            group.bench_function(BenchmarkId::new(*name, writers), |b| {
                b.iter_custom(|iters| runtime.block_on(saves(store, &plan, writers, iters)))
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
