//! Deterministic test doubles shipped for users' own tests (feature `test-util`).

mod clock;

pub use clock::ManualClock;
