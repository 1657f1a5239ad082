//! Deterministic test doubles shipped for users' own tests (feature `test-util`): a manual
//! clock, predictable callback ids, and a harness that drives a [`Deployment`] on simulated
//! time.
//!
//! [`Deployment`]: crate::core::Deployment

mod clock;
mod harness;
mod ids;

pub use clock::ManualClock;
pub use harness::Harness;
pub use ids::SequentialIds;
