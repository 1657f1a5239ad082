//! hookgate: deployment approval gates driven by webhooks with callbacks.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod core;
pub mod ids;
pub mod receiver;
mod secret;
pub mod secrets;
#[cfg(feature = "signing")]
pub mod signing;
pub mod template;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod transport;

pub use secret::Secret;
