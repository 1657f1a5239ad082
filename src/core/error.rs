use super::status::Resolution;
use crate::config::GateId;

/// Why the core refused an input. A refused input changes nothing of its own, but the
/// deadlines that had passed by its `now` and fail something (of any gate or environment)
/// fire first, as the host's timer would have: a callback after the callback timeout meets the
/// gate timed out, with what that timeout does.
///
/// The callback refusals map to PROTOCOL.md §5: [`CoreError::UnknownCallback`] and
/// [`CoreError::GateNotOpen`] → 404, [`CoreError::Conflict`] → 409,
/// [`CoreError::GateClosed`] and [`CoreError::CallbackDisabled`] → 410; beyond §5,
/// [`CoreError::TooManyProgressNotes`] → 422. A decision is refused as a callback is: the
/// opposite of the one that stands with [`CoreError::AlreadyDecided`] (409), any after the gate
/// closed another way with [`CoreError::GateClosed`] (410), and one for a gate not waiting for
/// one with [`CoreError::NotAwaitingDecision`] (409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// No gate of this deployment has that callback id.
    #[error("no gate of this deployment has that callback id")]
    UnknownCallback,
    /// The gate exists but was never called, so nobody can have been given its callback URI.
    #[error("the gate has not been called yet, so it cannot take a callback")]
    GateNotOpen,
    /// A callback already resolved the gate with the other outcome.
    #[error(
        "conflict: a callback already reported success={first} for this gate; the first outcome stands"
    )]
    Conflict {
        /// The outcome that stands.
        first: bool,
    },
    /// The gate closed without a callback (for a decision: without a decision); it takes no
    /// more of either.
    #[error("the gate is closed ({how}); it takes no more callbacks or decisions")]
    GateClosed {
        /// How it closed.
        how: Resolution,
    },
    /// The gate's webhook has `disableCallback: true`: the gate passes when its call succeeds,
    /// and a callback does not decide it, even one that arrives before the call's result.
    #[error(
        "the gate's webhook has disableCallback: true; the gate passes when its call succeeds and takes no callback"
    )]
    CallbackDisabled,
    /// The gate id is not in the plan.
    #[error("{0} is not in this deployment's plan")]
    UnknownGate(GateId),
    /// The gate is not waiting for a person's decision: not reached yet, or not one that
    /// takes decisions.
    #[error("{0} is not waiting for a decision")]
    NotAwaitingDecision(GateId),
    /// A person already decided the gate the other way; the first decision stands.
    #[error(
        "conflict: the gate was already {}; the first decision stands",
        if *approved { "approved" } else { "rejected" }
    )]
    AlreadyDecided {
        /// Whether the decision that stands approved.
        approved: bool,
    },
    /// The person lacks every role the approval requires.
    #[error("deciding this approval needs one of the roles {}", required.join(", "))]
    MissingRole {
        /// The roles of which one is needed.
        required: Vec<String>,
    },
    /// A result for an attempt or operation the core no longer waits for (a later attempt
    /// started, the gate was resolved, the environment rolled back). Harmless: ignore it.
    #[error("stale result: the core no longer waits for it")]
    Stale,
    /// The gate has recorded as many progress notes as [`Settings::max_progress_notes`]
    /// allows; it stays open, and its callback (`success` true or false) is still taken.
    ///
    /// [`Settings::max_progress_notes`]: super::Settings::max_progress_notes
    #[error(
        "this gate has recorded its limit of {limit} progress notes; it still takes its callback (success true or false)"
    )]
    TooManyProgressNotes {
        /// The limit.
        limit: u32,
    },
    /// The deployment has finished.
    #[error("the deployment has finished")]
    Finished,
    /// [`Deployment::handle_begin`](super::Deployment::handle_begin) of a deployment that has
    /// begun already: only a [queued](super::Deployment::queue) one begins.
    #[error("the deployment is not queued: it has begun already")]
    NotQueued,
    /// A stored state does not fit the plan it was restored with.
    #[error(
        "the stored state does not match the plan: {what}; restore it with the plan it was saved with"
    )]
    PlanMismatch {
        /// What differs.
        what: &'static str,
    },
}
