//! A deployment with two webhook gates before deploying, stored as a replica or engine that
//! stopped left it: the first gate's call sent, the second's in flight (or sent too), for
//! tests of what a resumption asks for again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookgate::config::Plan;
use hookgate::core::{
    Action, CallResult, Deployment, DeploymentId, Event, StartOptions, WebhookCall,
};
use hookgate::store::{NewDeployment, Store};
use hookgate::test_util::{RecordingTransport, SequentialIds};

/// Two webhook gates before deploying; each call's body is its callback URI.
pub const TWO_CALLS: &str = r#"
application: two
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: a}, runWebhook: {name: b}]
webhooks:
  - name: a
    uriTemplate: https://external.example/a
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
  - name: b
    uriTemplate: https://external.example/b
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;

/// Deployment `d1` of [`TWO_CALLS`] created in `store` at `now` with the first call sent and
/// the second in flight, or sent too; returns it and the two calls.
pub async fn stored(
    store: &dyn Store,
    now: DateTime<Utc>,
    second_sent: bool,
) -> (Deployment, WebhookCall, WebhookCall) {
    let mut d = Deployment::start(
        Arc::new(Plan::from_yaml(TWO_CALLS).expect("a valid file")),
        DeploymentId("d1".into()),
        StartOptions::default(),
        &mut SequentialIds::starting_at(7),
        now,
    );
    let mut calls = Vec::new();
    while let Some(action) = d.poll_action() {
        if let Action::CallWebhook(call) = action {
            calls.push(call);
        }
    }
    let [first, second] = <[_; 2]>::try_from(calls).expect("two calls");
    let sent = if second_sent {
        vec![&first, &second]
    } else {
        vec![&first]
    };
    for call in sent {
        d.handle_call_result(
            now,
            call.gate,
            call.attempt,
            CallResult::Sent { status: 200 },
        )
        .expect("a call in flight");
    }
    let events: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    store
        .create(NewDeployment::new(&d, TWO_CALLS), &events)
        .await
        .expect("created");
    (d, first, second)
}

/// How many requests `external` got for `call`'s gate.
pub fn sent_for(external: &RecordingTransport, call: &WebhookCall) -> usize {
    let id = call.callback_id.to_string();
    external
        .requests()
        .iter()
        .filter(|r| r.body.ends_with(id.as_bytes()))
        .count()
}
