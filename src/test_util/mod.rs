//! Deterministic test doubles shipped for users' own tests (feature `test-util`): a manual
//! clock, predictable callback ids, an HTTP transport that answers at once and records what it
//! was sent, a store whose saves fail or wait on demand, and a harness that drives a
//! [`Deployment`] on simulated time.
//!
//! [`Deployment`]: crate::core::Deployment

mod clock;
mod harness;
mod ids;
mod store;
mod transport;

pub use clock::ManualClock;
pub use harness::Harness;
pub use ids::SequentialIds;
pub use store::FaultyStore;
pub use transport::{RecordedRequest, RecordingTransport};
