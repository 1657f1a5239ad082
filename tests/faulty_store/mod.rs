//! An engine over a `FaultyStore`, on a manual clock, its webhooks answered in process: for
//! tests of what the engine does when its store fails under it.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};

/// One webhook gate before deploying, whose call the recording transport answers at once (its
/// body is the callback URI), then a deploy step.
pub const GATE: &str = r#"
application: gate
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;

pub struct Setup {
    pub engine: Engine,
    pub store: Arc<FaultyStore>,
    pub clock: ManualClock,
    pub external: RecordingTransport,
}

/// A fresh engine, store and clock (at 2026-11-01 12:00 UTC).
pub fn setup() -> Setup {
    let store = Arc::new(FaultyStore::default());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let external = RecordingTransport::new();
    Setup {
        engine: engine(&store, &clock, &external),
        store,
        clock,
        external,
    }
}

/// An engine over `store` on `clock`, its webhooks answered by `external`: a second one over
/// the same store is the same engine restarted.
pub fn engine(
    store: &Arc<FaultyStore>,
    clock: &ManualClock,
    external: &RecordingTransport,
) -> Engine {
    let dispatcher = external
        .dispatcher("https://hookgate.example")
        .expect("a dispatcher");
    Engine::builder(dispatcher, SimulatedHost)
        .shared_store(store.clone())
        .clock(clock.clone())
        .ids(SequentialIds::starting_at(1))
        .build()
}
