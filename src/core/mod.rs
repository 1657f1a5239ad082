//! The sans-IO state machine that decides everything about a deployment's gates.
//!
//! No networking, no clock reads, no randomness of its own: time comes in as an argument to
//! every input, callback ids come from an [`IdSource`] the host passes in, and retry jitter
//! comes from a seeded generator stored with the state. The same inputs give the same outputs,
//! and a restored [`DeploymentState`] continues exactly as if the deployment had never stopped.
//!
//! See [`Deployment`] for the method families and the order in which a host drains outputs.

mod action;
mod backoff;
mod deployment;
mod error;
mod event;
mod event_text;
mod fit;
mod ids;
mod input;
mod machine;
mod settings;
mod state;
mod status;
mod timestamp;

pub use action::{Action, ApprovalKind, ApprovalRequest, HostStep, StepRequest, WebhookCall};
pub use backoff::is_retryable_status;
pub use deployment::{Deployment, StartOptions};
pub use error::CoreError;
pub use event::{Event, EventKind};
pub use ids::{CallbackId, DeploymentId, IdSource, OpId, ParseCallbackIdError};
pub use input::{CallFailure, CallResult, CallbackAck, Decision, StepOutcome};
pub use settings::Settings;
pub use state::{DeploymentState, GateState};
pub use status::{DeploymentStatus, EnvStatus, Resolution, UnknownStatus};

#[cfg(feature = "runtime")]
pub(crate) use machine::later;
