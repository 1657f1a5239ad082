//! Pieces the benchmarks and load harnesses share.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use hookgate::core::{CallbackId, IdSource};
use hookgate::outbound::Dispatcher;
use hookgate::secrets::MemorySecrets;
use hookgate::transport::{TransportError, TransportRegistry};

/// A three-environment plan: dev (a webhook before deploying) → staging (canary with a webhook
/// step, a webhook after deploying) → prod (a webhook and an approval before deploying).
pub const THREE_ENVIRONMENTS: &str = r#"
application: checkout
targets:
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
  staging:
    strategy: canary
    constraints: {dependsOn: [dev], afterDeployment: [runWebhook: {name: smoke}]}
  prod:
    strategy: canary
    constraints:
      dependsOn: [staging]
      beforeDeployment: [runWebhook: {name: ticket}, pause: {untilApproved: true}]
strategies:
  canary: {canary: {steps: [setWeight: {weight: 25}, runWebhook: {name: smoke}, setWeight: {weight: 100}]}}
webhooks:
  - {name: ticket, uriTemplate: 'https://t.example/{{armory.deploymentId}}'}
  - {name: smoke, uriTemplate: 'https://s.example', retryCount: 3}
"#;

/// Callback ids 1, 2, 3, ... without the `test-util` feature.
pub struct Counter(pub u128);

impl IdSource for Counter {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

/// This process's resident memory, from /proc/self/statm.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// A dispatcher whose every webhook call is answered 202 in-process, with no network.
pub fn accepting_dispatcher() -> Dispatcher {
    let accept = |_request: http::Request<Bytes>| async {
        Ok::<_, TransportError>(
            http::Response::builder()
                .status(202)
                .body(Bytes::new())
                .expect("a static response"),
        )
    };
    Dispatcher::builder(
        TransportRegistry::new(Arc::new(accept)),
        Arc::new(MemorySecrets::new()),
        "https://gates.example",
    )
    .build()
    .expect("a dispatcher")
}
