use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Deployment-wide settings the file does not carry. Stored with the deployment's state, so a
/// restored deployment keeps the settings it started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Settings {
    /// How long a gate waits for its callback after the first successful send, unless the
    /// webhook sets its own `callbackTimeout`. Default 24 hours.
    pub callback_timeout: Duration,
    /// First retry's upper bound for the backoff of outbound calls. Default 1 second.
    pub backoff_base: Duration,
    /// Largest backoff, and the cap on an honoured `Retry-After`. Default 60 seconds.
    pub backoff_cap: Duration,
    /// How many progress notes (`"inProgress": true`) one gate records; later ones are
    /// refused ([`CoreError::TooManyProgressNotes`](super::CoreError::TooManyProgressNotes))
    /// while the gate stays open for its callback. Bounds what a sender can add to a
    /// deployment's history. Default 2000; states stored before the limit existed get it too.
    #[serde(default = "default_max_progress_notes")]
    pub max_progress_notes: u32,
}

/// [`Settings::max_progress_notes`] by default: a note a minute for longer than the default
/// callback timeout of a day.
const DEFAULT_MAX_PROGRESS_NOTES: u32 = 2000;

fn default_max_progress_notes() -> u32 {
    DEFAULT_MAX_PROGRESS_NOTES
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            callback_timeout: Duration::from_secs(24 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_progress_notes: DEFAULT_MAX_PROGRESS_NOTES,
        }
    }
}

impl Settings {
    /// Sets the default callback timeout.
    ///
    /// Nothing refuses zero here, though a file's `callbackTimeout: 0` is refused
    /// ([`ProblemKind::ZeroWait`](crate::config::ProblemKind::ZeroWait)): with it, every gate
    /// waiting on a callback without a `callbackTimeout` of its own fails as soon as its call
    /// is answered. A host taking the value from its operators checks it first.
    #[must_use]
    pub fn with_callback_timeout(mut self, timeout: Duration) -> Self {
        self.callback_timeout = timeout;
        self
    }

    /// Sets the backoff base and cap.
    #[must_use]
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Sets how many progress notes one gate records; 0 refuses them all.
    #[must_use]
    pub fn with_max_progress_notes(mut self, limit: u32) -> Self {
        self.max_progress_notes = limit;
        self
    }
}
