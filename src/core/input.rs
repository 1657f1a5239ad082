use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::is_retryable_status;
use crate::config::Webhook;

/// How one attempt of an outbound call ended, as reported by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CallResult {
    /// A 2xx answer.
    Sent {
        /// The HTTP status.
        status: u16,
    },
    /// Anything else.
    Failed(CallFailure),
}

impl CallResult {
    /// Classifies an HTTP answer: 2xx is sent; otherwise a failure, retryable per
    /// PROTOCOL.md §4. A webhook's `retryableStatusCodes` replaces that classification when
    /// the deployment handles the result.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        if (200..300).contains(&status) {
            CallResult::Sent { status }
        } else {
            CallResult::Failed(CallFailure {
                retryable: is_retryable_status(status),
                status: Some(status),
                reason: format!("HTTP {status}"),
                retry_after,
            })
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallFailure {
    /// Whether another attempt may succeed (connection errors, timeouts, 408, 429, 5xx). For a
    /// failure with a status, a webhook's `retryableStatusCodes` decides instead.
    pub retryable: bool,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// A short reason for people. Must not contain secrets.
    pub reason: String,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

impl CallFailure {
    /// A connection error or timeout: retryable.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            retryable: true,
            status: None,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A failure no retry can fix, such as a template that cannot be rendered.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            retryable: false,
            status: None,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Whether `webhook` tries again after this failure (retries left aside): an answer by
    /// the webhook's `retryableStatusCodes` when it has them, since whoever classified the
    /// answer may not have known the webhook; anything else by its own `retryable`.
    pub(crate) fn retryable_for(&self, webhook: &Webhook) -> bool {
        match (self.status, webhook.retryable_status_codes.as_deref()) {
            (Some(status), Some(codes)) => codes.binary_search(&status).is_ok(),
            _ => self.retryable,
        }
    }
}

/// How a host step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StepOutcome {
    /// It succeeded (an analysis: it passed).
    Succeeded,
    /// `exposeServices` succeeded; service name to URL, for `{{armory.preview.<service>}}`.
    Exposed(BTreeMap<String, String>),
    /// The deploy step succeeded, and the new version runs in this Kubernetes ReplicaSet: the
    /// environment's later webhook calls render it as `{{armory.replicaSetName}}` (PROTOCOL.md
    /// §3, "supplied by the host when known"). For any other step it counts as `Succeeded`,
    /// and the name is not kept.
    Deployed {
        /// The ReplicaSet's name.
        replica_set_name: String,
    },
    /// It failed (an analysis: it failed).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl StepOutcome {
    /// A failure, for `reason`, which is stored and shown (keep secrets out of it).
    ///
    /// ```
    /// use hookgate::core::StepOutcome;
    /// let outcome = StepOutcome::failed("the image would not pull");
    /// assert_eq!(outcome, StepOutcome::Failed { reason: "the image would not pull".into() });
    /// ```
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed {
            reason: reason.into(),
        }
    }
}

/// A person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// Approve (continue) or reject.
    pub approve: bool,
    /// Who decided.
    pub by: String,
    /// Their roles, checked against `requiresRoles`.
    pub roles: Vec<String>,
    /// Their comment.
    pub comment: Option<String>,
}

impl Decision {
    /// An approval by `by` holding `roles`.
    pub fn approve(
        by: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            approve: true,
            by: by.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            comment: None,
        }
    }

    /// A rejection by `by` holding `roles`.
    pub fn reject(
        by: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            approve: false,
            ..Self::approve(by, roles)
        }
    }

    /// Adds a comment.
    #[must_use]
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Whether the decider holds what `requiresRoles` asks: any one of `required`, or nothing
    /// when it lists none.
    pub(crate) fn meets(&self, required: &[String]) -> bool {
        required.is_empty() || self.roles.iter().any(|r| required.contains(r))
    }
}

/// Whether a callback changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackAck {
    /// The callback resolved the gate.
    Applied,
    /// The gate was already resolved by a callback with the same outcome; nothing changed.
    Duplicate,
}
