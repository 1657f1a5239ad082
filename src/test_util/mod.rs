//! Deterministic test doubles shipped for users' own tests (feature `test-util`): a manual
//! clock, predictable callback ids, an HTTP transport that answers at once and records what it
//! was sent, a store whose saves fail or wait on demand, a harness that drives a
//! [`Deployment`] on simulated time, and (with feature `runtime`) a host whose steps wait for
//! the test to answer them. The stores' conformance suite is
//! `hookgate::store::conformance`, under the same feature.
//!
//! Testing an application around the engine (features `runtime` and `test-util`): the engine
//! runs on a [`ManualClock`] and calls out through a [`RecordingTransport`], whose records
//! carry the call each request performs (its gate, attempt and callback id); the test answers
//! a call as the external system would, or moves the clock to
//! `Engine::next_deadline` and fires what is due,
//! with no sleep and no network.
//!
#![cfg_attr(
    feature = "runtime",
    doc = r#"```
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hookgate::auth::Principal;
use hookgate::core::DeploymentStatus;
use hookgate::runtime::{Engine, SimulatedHost};
use hookgate::server::{CallbackReport, GateService};
use hookgate::store::MemoryStore;
use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport, SequentialIds};

const FILE: &str = "
application: shop
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
webhooks:
  - {name: ticket, uriTemplate: 'https://tickets.example/open'}
";

# tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap());
let external = RecordingTransport::new();
// Kept, to make a write fail on demand (`store.fail_saves(..)`).
let store = Arc::new(FaultyStore::new(MemoryStore::new()));
let engine = Engine::builder(external.dispatcher("https://gates.example")?, SimulatedHost)
    .shared_store(store.clone())
    .clock(clock.clone())
    .ids(SequentialIds::starting_at(1))
    .build();

// The ticket system says yes: the deployment goes on, and deploys.
let first = engine.start(FILE, BTreeMap::new()).await?;
let call = external.requests()[0].call.clone().expect("a webhook call");
let yes = CallbackReport::Outcome { success: true, message: None };
engine.callback(call.callback_id, yes, &Principal::new("tickets")).await?;
assert_eq!(engine.view(&first.id).await?.status, DeploymentStatus::Succeeded);

// It never answers: 24 hours later the gate fails, and the deployment with it.
let second = engine.start(FILE, BTreeMap::new()).await?;
clock.set(engine.next_deadline().expect("the callback timeout"));
engine.fire_due().await;
assert_eq!(engine.view(&second.id).await?.status, DeploymentStatus::Failed);

// The store fails to write the deploy step's result: the deployment keeps it, and its write
// is made again a second later by the engine's clock.
let third = engine.start(FILE, BTreeMap::new()).await?;
let call = external.requests().last().and_then(|r| r.call.clone()).expect("a webhook call");
store.fail_saves(1, 1); // the callback's own write goes through, the result's does not
let yes = CallbackReport::Outcome { success: true, message: None };
engine.callback(call.callback_id, yes, &Principal::new("tickets")).await?;
assert_eq!(engine.view(&third.id).await?.status, DeploymentStatus::Running);
clock.set(engine.next_deadline().expect("the write made again"));
engine.fire_due().await;
assert_eq!(engine.view(&third.id).await?.status, DeploymentStatus::Succeeded);
# Ok::<(), Box<dyn std::error::Error>>(())
# })?;
# Ok::<(), Box<dyn std::error::Error>>(())
```"#
)]
//!
//! A store write that fails ([`FaultyStore::fail_saves`]) is answered to the sender of a
//! callback or decision. Every other failed write is tried again by the engine's clock, a
//! second later and, after each further failure in a row, twice as long, up to 8 s:
//! - one that was a deadline's;
//! - one that recorded a call's or step's result: the deployment keeps the result, and its
//!   deadline (or its next input) records it;
//! - the start of a deployment queued behind one that finished (`enqueueOne`), and the cancel
//!   of one replaced in the queue ([`FaultyStore::fail_creates`] and the like).
//!
//! Move the clock to `Engine::next_deadline` and fire what is due; no sleep or paused time is
//! needed. The first attempt at a queued deployment's start, once the one before it
//! finished, runs in a task of the engine's, as does the cancel of one replaced in the queue:
//! let it run (yield, or wait for what it does) before moving the clock.
//!
//! [`Deployment`]: crate::core::Deployment

mod clock;
mod harness;
#[cfg(feature = "runtime")]
mod host;
mod ids;
mod store;
mod transport;

pub use clock::ManualClock;
pub use harness::Harness;
#[cfg(feature = "runtime")]
pub use host::{AskedStep, ScriptedHost};
pub use ids::SequentialIds;
pub use store::FaultyStore;
pub use transport::{RecordedRequest, RecordingTransport};
