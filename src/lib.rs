//! hookgate: deployment approval gates driven by webhooks with callbacks.
//!
//! A deployment pauses at a gate, calls an external system over HTTP, and waits — minutes or a
//! whole day — for that system to call back and say yes or no. This is the protocol of Armory
//! CD-as-a-Service's webhook-based approvals, and hookgate implements both sides of it:
//!
//! - the **orchestrator side**: the Armory deployment file ([`config`]), a sans-IO state machine
//!   that decides every gate ([`core`]), templated outbound calls ([`template`], [`transport`],
//!   [`secrets`]), and the pieces around them;
//! - the **external-process side** ([`receiver`]): find the callback URI in the received
//!   request, get an OAuth2 client-credentials token, post `{"success": bool, "mdMessage": ...}`.
//!
//! Around the core: the callback and approval endpoint (`server`, an axum router with feature
//! `axum`), callback authorization (`auth`), durable state (`store`: memory, SQLite with feature
//! `sqlite`, PostgreSQL shared by several replicas with feature `postgres`), and an engine that
//! drives many deployments with all of them (`runtime`, feature `runtime`).
//!
//! # The run loop
//!
//! The [`core::Deployment`] performs no IO and reads no clock. A host feeds it inputs
//! (`handle_*`, each with `now`), performs the [`core::Action`]s it drains with
//! `poll_action`, records the [`core::Event`]s it drains with `poll_event`, and calls
//! `handle_timeout` when `poll_timeout` says so. Here the host answers everything at once:
//!
//! ```
//! use std::sync::Arc;
//! use chrono::{TimeDelta, Utc};
//! use hookgate::config::Plan;
//! use hookgate::core::{Action, CallResult, Deployment, StartOptions, StepOutcome};
//! use hookgate::ids::RandomIds;
//!
//! let plan = Arc::new(Plan::from_yaml(r#"
//! application: checkout
//! targets:
//!   staging:
//!     constraints:
//!       afterDeployment: [runWebhook: {name: smoke-tests}]
//!   prod:
//!     constraints: {dependsOn: [staging]}
//! webhooks:
//!   - name: smoke-tests
//!     uriTemplate: https://ci.example.com/run?env={{armory.environmentName}}
//!     headers: [{key: Content-Type, value: application/json}]
//!     bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}/callback"}'}
//! "#)?);
//!
//! let mut now = Utc::now();
//! let mut deployment = Deployment::start(
//!     plan, "deploy-1".into(), StartOptions::default(), &mut RandomIds, now);
//!
//! while !deployment.is_finished() {
//!     while let Some(action) = deployment.poll_action() {
//!         match action {
//!             // A real host deploys to Kubernetes (or wherever) and reports how it went.
//!             Action::RunStep(step) => {
//!                 deployment.handle_step_result(now, step.op, StepOutcome::Succeeded)?;
//!             }
//!             // A real host renders the webhook's request and sends it (`hookgate::outbound`);
//!             // the external system later calls back on the gate's callback URI.
//!             Action::CallWebhook(call) => {
//!                 deployment.handle_call_result(now, call.gate, call.attempt,
//!                     CallResult::Sent { status: 202 })?;
//!                 deployment.handle_callback(now, call.callback_id, true,
//!                     Some("smoke tests passed".into()))?;
//!             }
//!             other => unreachable!("this plan has no {other:?}"),
//!         }
//!     }
//!     while let Some(event) = deployment.poll_event() {
//!         println!("{} {}", event.at, event.kind.describe(deployment.plan()));
//!     }
//!     if let Some(deadline) = deployment.poll_timeout() {
//!         now = now.max(deadline);
//!         deployment.handle_timeout(now);
//!     }
//!     now += TimeDelta::seconds(1);
//! }
//! assert_eq!(deployment.status().as_str(), "succeeded");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! - The core is deterministic: the same inputs give the same actions and events, and a
//!   deployment restored from its serialized [`core::DeploymentState`] continues exactly as if it
//!   had never stopped, once its host has asked again for the work that was in flight
//!   ([`core::Deployment::reissue_in_flight`]; the runtime's engine does it).
//! - A panic is a bug: input from outside — a deployment file, a callback, a token response —
//!   gives a typed error and changes nothing itself (deadlines its `now` has passed and that
//!   fail something fire first, as they would have on their own; for a cancel, also the ends of
//!   pauses that finish the deployment).
//! - Secrets ([`Secret`]) print as `[redacted]` and are never stored: the state keeps templates
//!   and context, and requests are rendered again for every attempt.
//!
//! # Features
//!
//! See the README's feature table. With `default-features = false` the crate builds the
//! deployment-file model and the core without tokio, reqwest, hyper, axum or sqlx.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::return_self_not_must_use)]
// docs.rs builds with `--cfg docsrs` on nightly: mark each item with the features it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod clock;
pub mod config;
pub mod core;
pub mod ids;
mod invisible;
pub mod outbound;
pub mod receiver;
mod retry_after;
#[cfg(feature = "runtime")]
pub mod runtime;
mod secret;
pub mod secrets;
pub mod server;
#[cfg(feature = "signing")]
pub mod signing;
pub mod store;
pub mod template;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod transport;

pub use secret::Secret;

// Crates whose types are part of hookgate's own API, for users to name them at the versions
// hookgate was built with rather than keep a matching version of each themselves.
#[doc(no_inline)]
pub use async_trait;
#[cfg(feature = "axum")]
#[doc(no_inline)]
pub use axum;
#[doc(no_inline)]
pub use bytes;
#[doc(no_inline)]
pub use chrono;
#[doc(no_inline)]
pub use http;
#[doc(no_inline)]
pub use http_body;
#[cfg(feature = "reqwest")]
#[doc(no_inline)]
pub use reqwest;
#[doc(no_inline)]
pub use serde_json;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[doc(no_inline)]
pub use sqlx;
#[cfg(any(
    feature = "runtime",
    feature = "receiver",
    feature = "axum",
    feature = "reqwest",
    feature = "sqlite",
    feature = "postgres"
))]
#[doc(no_inline)]
pub use tokio;
#[doc(no_inline)]
pub use url;
