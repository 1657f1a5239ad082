//! Performing [`Action::CallWebhook`](crate::core::Action::CallWebhook): the outbound half of a
//! webhook gate.
//!
//! The core decides *when* to call and *whether* to retry; a [`Dispatcher`] does the call. It
//! joins the pieces below it — templates, the host's secret source, optional Standard Webhooks
//! signing, the transport registry — and reports a [`CallResult`](crate::core::CallResult).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use chrono::Utc;
//! use hookgate::config::Plan;
//! use hookgate::core::{Action, CallResult, Deployment, DeploymentId, StartOptions};
//! use hookgate::ids::RandomIds;
//! use hookgate::outbound::Dispatcher;
//! use hookgate::secrets::MemorySecrets;
//! use hookgate::transport::{TransportError, TransportRegistry};
//!
//! let plan = Arc::new(Plan::from_yaml(r#"
//! application: checkout
//! targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}
//! webhooks:
//!   - name: ticket
//!     uriTemplate: https://tickets.example.com/hooks
//!     headers:
//!       - {key: Authorization, value: "Bearer {{secrets.ticket_token}}"}
//!       - {key: Content-Type, value: application/json}
//!     bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}/callback"}'}
//! "#).unwrap());
//! // Any `HttpTransport` will do; production hosts register a `ReqwestTransport`.
//! let accept = |_request: http::Request<Bytes>| async {
//!     let mut response = http::Response::new(Bytes::new());
//!     *response.status_mut() = http::StatusCode::ACCEPTED;
//!     Ok::<_, TransportError>(response)
//! };
//! let dispatcher = Dispatcher::builder(
//!     TransportRegistry::new(accept),
//!     Arc::new(MemorySecrets::new().with("ticket_token", "t0k3n")),
//!     "https://hookgate.example.com",
//! )
//! .build()
//! .unwrap();
//! dispatcher.check_agents(&plan).unwrap();
//!
//! let now = Utc::now();
//! let mut deployment = Deployment::start(
//!     plan, DeploymentId::from("d-1"), StartOptions::default(), &mut RandomIds, now,
//! );
//! while let Some(action) = deployment.poll_action() {
//!     let Action::CallWebhook(call) = action else { continue };
//!     // Under the deployment's lock: copy what the call needs...
//!     let prepared = dispatcher.prepare(&deployment, &call, None);
//!     // ...then, without it, do the IO.
//!     let result = dispatcher.send(&prepared).await;
//!     assert_eq!(result, CallResult::Sent { status: 202 });
//!     deployment.handle_call_result(now, call.gate, call.attempt, result).unwrap();
//! }
//! # }
//! ```

mod answer;
mod dispatcher;
mod error;
mod prepared;
pub(crate) mod redact;
mod send;
#[cfg(feature = "signing")]
mod signers;

pub use dispatcher::{Dispatcher, DispatcherBuilder};
pub use error::OutboundError;
pub use prepared::PreparedCall;
