//! Deployments for the store tests: one environment with one webhook gate, started and moved
//! along without any IO.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use hookgate::config::Plan;
use hookgate::core::{Deployment, DeploymentId, Event, IdSource, Settings, StartOptions};
use hookgate::ids::RandomIds;
use hookgate::store::{NewDeployment, Store};
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
        StartOptions::default()
            .with_settings(Settings::default().with_max_progress_notes(u32::MAX)),
        ids,
        Utc::now(),
    );
    let events = drain(&mut d);
    (d, events)
}

/// Creates deployments `d0`, `d1`, ... (`count` of them, random callback ids) in `store`, and
/// returns them as created.
pub async fn created(store: &impl Store, count: usize) -> Vec<Deployment> {
    let mut deployments = Vec::with_capacity(count);
    for i in 0..count {
        let (d, events) = start_random(&format!("d{i}"));
        store
            .create(NewDeployment::new(&d, PLAN), &events)
            .await
            .expect("create");
        deployments.push(d);
    }
    deployments
}

/// Drops the actions (nothing is performed here) and returns the events.
pub fn drain(d: &mut Deployment) -> Vec<Event> {
    while d.poll_action().is_some() {}
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// A progress note whose message is `note`: one event; the state changes only in the gate's
/// note count, which deployments started here do not run out of.
pub fn progress(d: &mut Deployment, note: impl Into<String>) -> Vec<Event> {
    let (_, callback) = d.callback_ids().next().expect("one webhook gate");
    d.handle_progress(Utc::now(), callback, note.into())
        .expect("the gate is open");
    drain(d)
}
