//! SECURITY.md's claim "secrets are never stored": a secret rendered into a webhook's URL, a
//! header and the body reaches the external system, yet no byte of it is in the database files,
//! the stored history or the engine's events.
#![cfg(all(feature = "runtime", feature = "sqlite", feature = "test-util"))]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hookgate::auth::Principal;
use hookgate::core::{CallbackAck, CallbackId, DeploymentStatus};
use hookgate::outbound::Dispatcher;
use hookgate::runtime::{Engine, EngineEvent, SimulatedHost};
use hookgate::secrets::MemorySecrets;
use hookgate::server::{CallbackReport, GateService};
use hookgate::store::{SqliteStore, Store};
use hookgate::transport::{TransportError, TransportRegistry};

const SECRET: &str = "s3cr3t-Value-That-Must-Not-Be-Stored";

#[tokio::test]
async fn a_rendered_secret_is_sent_but_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let sent: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let capture = Arc::clone(&sent);
    let external = move |request: http::Request<Bytes>| {
        capture.lock().unwrap().push((
            request.uri().to_string(),
            request.headers()["authorization"]
                .to_str()
                .unwrap()
                .to_owned(),
            String::from_utf8_lossy(request.body()).into_owned(),
        ));
        async {
            Ok::<_, TransportError>(
                http::Response::builder()
                    .status(202)
                    .body(Bytes::new())
                    .unwrap(),
            )
        }
    };
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(external)),
        Arc::new(MemorySecrets::new().with("token", SECRET)),
        "https://gates.example",
    )
    .build()
    .unwrap();
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .store(SqliteStore::open(&path).await.unwrap())
        .build();
    let mut events = engine.subscribe();
    let file = r#"
application: secretive
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: hook}]
webhooks:
  - name: hook
    uriTemplate: "https://external.example/run?key={{secrets.token}}"
    headers:
      - {key: Authorization, value: "Bearer {{secrets.token}}"}
      - {key: Content-Type, value: application/json}
    bodyTemplate: {inline: '{"token": "{{secrets.token}}", "callbackUri": "{{armory.callbackUri}}"}'}
"#;
    let started = engine.start(file, Default::default()).await.unwrap();
    let mut seen = Vec::new();
    let callback: CallbackId = loop {
        let event = events.recv().await.unwrap();
        seen.push(format!("{event:?}"));
        if let Some((_, _, body)) = sent.lock().unwrap().first() {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            let uri = body["callbackUri"].as_str().unwrap();
            break uri.rsplit('/').next().unwrap().parse().unwrap();
        }
    };
    let (uri, auth, body) = sent.lock().unwrap()[0].clone();
    assert!(uri.contains(SECRET) && auth.contains(SECRET) && body.contains(SECRET));

    let ack = engine
        .callback(
            callback,
            CallbackReport::Outcome {
                success: true,
                message: Some("done".into()),
            },
            &Principal::new("ci"),
        )
        .await
        .unwrap();
    assert_eq!(ack, CallbackAck::Applied);
    loop {
        let event = events.recv().await.unwrap();
        seen.push(format!("{event:?}"));
        if let EngineEvent::Deployment { event, .. } = &event
            && event.kind
                == (hookgate::core::EventKind::DeploymentFinished {
                    status: DeploymentStatus::Succeeded,
                })
        {
            break;
        }
    }
    engine.shutdown().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let stored = store.load(&started.id).await.unwrap().unwrap();
    assert!(
        !serde_json::to_string(&stored.state)
            .unwrap()
            .contains(SECRET)
    );
    assert!(!format!("{:?}", store.history(&started.id).await.unwrap()).contains(SECRET));
    store.close().await;
    for event in &seen {
        assert!(!event.contains(SECRET), "{event}");
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "a database file holds the secret"
        );
    }
}
