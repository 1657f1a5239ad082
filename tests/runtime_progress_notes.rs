//! The progress-note limit through the engine on SQLite: a refused note writes nothing, and the
//! count survives a restart, since it is stored with the state.
#![cfg(all(feature = "runtime", feature = "sqlite", feature = "test-util"))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hookgate::auth::Principal;
use hookgate::core::{CallbackAck, CallbackId, CoreError, DeploymentId, EventKind, Settings};
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::server::{CallbackReport, GateError, GateService};
use hookgate::store::{SqliteStore, Store};
use hookgate::test_util::RecordingTransport;

const PLAN: &str = r#"
application: shop
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
webhooks:
  - name: ticket
    uriTemplate: https://tickets.example/run
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

/// An engine on the SQLite file at `path` whose deployments take one progress note per gate.
async fn open(path: &Path, external: &RecordingTransport) -> (Engine, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(path).await.expect("the store opens"));
    let engine = Engine::builder(
        external
            .dispatcher("https://hookgate.example")
            .expect("a dispatcher"),
        SimulatedHost,
    )
    .shared_store(store.clone())
    .settings(Settings::default().with_max_progress_notes(1))
    .build();
    engine.recover().await.expect("recovered");
    (engine, store)
}

async fn note(engine: &Engine, callback: CallbackId, text: &str) -> Result<CallbackAck, GateError> {
    let report = CallbackReport::Progress {
        message: text.into(),
    };
    engine
        .callback(callback, report, &Principal::new("ci"))
        .await
}

async fn version(store: &SqliteStore, id: &DeploymentId) -> u64 {
    let stored = store.load(id).await.expect("the load succeeds");
    stored.expect("the deployment is stored").version
}

#[tokio::test]
async fn a_note_past_the_limit_writes_nothing_and_stays_refused_after_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hookgate.db");
    let external = RecordingTransport::new();
    let (engine, store) = open(&path, &external).await;
    let started = engine.start(PLAN, BTreeMap::new()).await.expect("started");
    // The webhook call goes out from a task of the engine's.
    while external.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let body: serde_json::Value =
        serde_json::from_slice(&external.requests()[0].body).expect("a JSON body");
    let uri = body["callbackUri"].as_str().expect("the callback URI");
    let callback: CallbackId = uri.rsplit('/').next().unwrap().parse().expect("an id");

    assert_eq!(
        note(&engine, callback, "10%").await,
        Ok(CallbackAck::Applied)
    );
    let noted = version(&store, &started.id).await;
    let refused = Err(GateError::Core(CoreError::TooManyProgressNotes {
        limit: 1,
    }));
    assert_eq!(note(&engine, callback, "20%").await, refused);
    assert_eq!(
        version(&store, &started.id).await,
        noted,
        "a refused note is not written"
    );
    engine.shutdown().await;
    drop((engine, store));

    let (engine, store) = open(&path, &external).await;
    assert_eq!(note(&engine, callback, "30%").await, refused);
    let report = CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let principal = Principal::new("ci");
    assert_eq!(
        engine.callback(callback, report, &principal).await,
        Ok(CallbackAck::Applied)
    );
    let history = store.history(&started.id).await.expect("the history");
    let notes: Vec<_> = history
        .iter()
        .filter_map(|h| match &h.event.kind {
            EventKind::Progress { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(notes, ["10%"]);
    engine.shutdown().await;
}
