//! What the engine shows a host (a deployment's view, its events, its history) serializes to
//! JSON, for a status API or a queue to pass on.
#![cfg(all(feature = "runtime", feature = "test-util"))]

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::test_util::{ManualClock, RecordingTransport, SequentialIds};
use serde_json::{Value, json};

const APPROVAL: &str = r#"
application: shop
targets:
  prod:
    constraints:
      beforeDeployment: [pause: {untilApproved: true}]
"#;

#[tokio::test]
async fn views_events_and_history_serialize_with_their_field_names() {
    let external = RecordingTransport::new();
    let dispatcher = external.dispatcher("https://hookgate.example").unwrap();
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .clock(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        ))
        .ids(SequentialIds::starting_at(1))
        .build();
    let mut events = engine.subscribe();
    let id = engine.start(APPROVAL, BTreeMap::new()).await.unwrap().id;

    let view = serde_json::to_value(engine.view(&id).await.unwrap()).unwrap();
    assert_eq!(view["id"], json!(id.as_str()));
    assert_eq!(view["application"], "shop");
    assert_eq!(view["status"], "running");
    assert_eq!(view["environments"], json!([["prod", "checking"]]));
    assert_eq!(view["gates"][0]["environment"], "prod");
    assert_eq!(
        view["gates"][0]["path"],
        "targets.prod.constraints.beforeDeployment[0]"
    );

    let mut types = Vec::new();
    while let Ok(event) = events.try_recv() {
        let event = serde_json::to_value(event).unwrap();
        assert_eq!(event["id"], json!(id.as_str()), "{event}");
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    assert!(types.iter().any(|t| t == "deployment"), "{types:?}");
    assert!(types.iter().any(|t| t == "approval_requested"), "{types:?}");

    let history = serde_json::to_value(engine.history(&id).await.unwrap()).unwrap();
    let Value::Array(entries) = history else {
        panic!("{history}")
    };
    assert_eq!(entries[0]["seq"], 1);
    assert_eq!(entries[0]["version"], 1);
    assert!(entries[0]["event"].is_object());
}
