//! Deployments for the store tests: one environment with one webhook gate, started and moved
//! along without any IO.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, Event, IdSource, StartOptions};
use hookgate::ids::RandomIds;
use hookgate::test_util::SequentialIds;

pub const PLAN: &str = r#"
application: shop
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
webhooks:
  - name: ticket
    uriTemplate: "https://tickets.example/{{armory.deploymentId}}"
"#;

/// Starts deployment `id` of [`PLAN`] with predictable callback ids; returns it with the events
/// its start produced.
pub fn start(id: &str) -> (Deployment, Vec<Event>) {
    start_with(id, &mut SequentialIds::default())
}

/// Like [`start`], with random callback ids, so that deployments do not share them.
pub fn start_random(id: &str) -> (Deployment, Vec<Event>) {
    start_with(id, &mut RandomIds)
}

fn start_with(id: &str, ids: &mut impl IdSource) -> (Deployment, Vec<Event>) {
    let plan = Arc::new(Plan::from_yaml(PLAN).expect("valid plan"));
    let mut d = Deployment::start(
        plan,
        DeploymentId::from(id),
        StartOptions::default(),
        ids,
        Utc::now(),
    );
    let events = drain(&mut d);
    (d, events)
}

/// Drops the actions (nothing is performed here) and returns the events.
pub fn drain(d: &mut Deployment) -> Vec<Event> {
    while d.poll_action().is_some() {}
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// A progress note whose message is `note`: one event, no change of state.
pub fn progress(d: &mut Deployment, note: impl Into<String>) -> Vec<Event> {
    let (_, callback) = d.callback_ids().next().expect("one webhook gate");
    d.handle_progress(Utc::now(), callback, note.into())
        .expect("the gate is open");
    drain(d)
}
