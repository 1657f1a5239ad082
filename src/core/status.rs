use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An environment's status (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EnvStatus {
    /// Waiting for its `dependsOn` environments.
    Pending,
    /// Evaluating `beforeDeployment`.
    Checking,
    /// Deploying and running the strategy.
    Deploying,
    /// Evaluating `afterDeployment`.
    Verifying,
    /// Being rolled back.
    RollingBack,
    /// Deployed and verified.
    Succeeded,
    /// Failed without being rolled back: a `beforeDeployment` or `afterDeployment` constraint
    /// failed, or a rollback itself failed or timed out.
    Failed,
    /// Rolled back.
    RolledBack,
    /// Never finished: a dependency failed or a person cancelled.
    Canceled,
}

impl EnvStatus {
    /// Whether the environment is finished.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EnvStatus::Succeeded | EnvStatus::Failed | EnvStatus::RolledBack | EnvStatus::Canceled
        )
    }

    /// The name used in PROTOCOL.md and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvStatus::Pending => "pending",
            EnvStatus::Checking => "checking",
            EnvStatus::Deploying => "deploying",
            EnvStatus::Verifying => "verifying",
            EnvStatus::RollingBack => "rolling_back",
            EnvStatus::Succeeded => "succeeded",
            EnvStatus::Failed => "failed",
            EnvStatus::RolledBack => "rolled_back",
            EnvStatus::Canceled => "canceled",
        }
    }
}

impl EnvStatus {
    /// Every status, in the order of PROTOCOL.md §4.
    pub const ALL: [EnvStatus; 9] = [
        EnvStatus::Pending,
        EnvStatus::Checking,
        EnvStatus::Deploying,
        EnvStatus::Verifying,
        EnvStatus::RollingBack,
        EnvStatus::Succeeded,
        EnvStatus::Failed,
        EnvStatus::RolledBack,
        EnvStatus::Canceled,
    ];
}

/// Reads what [`EnvStatus::as_str`] writes.
impl FromStr for EnvStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, UnknownStatus> {
        named(&Self::ALL, Self::as_str, text, "an environment")
    }
}

impl fmt::Display for EnvStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment's status (PROTOCOL.md §4). The core produces `queued`
/// ([`Deployment::queue`](super::Deployment::queue)), `running` and the four outcomes;
/// `rejected` belongs to the host's `ifDeploymentInProgress` handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentStatus {
    /// Waiting for another deployment of the same application (`enqueueOne`).
    Queued,
    /// Running.
    Running,
    /// Every environment succeeded.
    Succeeded,
    /// Some environment failed and none was rolled back.
    Failed,
    /// Some environment was rolled back.
    RolledBack,
    /// A person cancelled it.
    Canceled,
    /// Refused because another deployment of the application was running (`reject`).
    Rejected,
}

impl DeploymentStatus {
    /// Whether the deployment is finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, DeploymentStatus::Queued | DeploymentStatus::Running)
    }

    /// The name used in PROTOCOL.md and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Queued => "queued",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled_back",
            DeploymentStatus::Canceled => "canceled",
            DeploymentStatus::Rejected => "rejected",
        }
    }
}

impl DeploymentStatus {
    /// Every status, in the order of PROTOCOL.md §4.
    pub const ALL: [DeploymentStatus; 7] = [
        DeploymentStatus::Queued,
        DeploymentStatus::Running,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
        DeploymentStatus::RolledBack,
        DeploymentStatus::Canceled,
        DeploymentStatus::Rejected,
    ];
}

/// Reads what [`DeploymentStatus::as_str`] writes.
impl FromStr for DeploymentStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, UnknownStatus> {
        named(&Self::ALL, Self::as_str, text, "a deployment")
    }
}

/// Text that names no status of [`EnvStatus`] or [`DeploymentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not the status of {of}: expected one of the names `as_str` writes")]
pub struct UnknownStatus {
    /// The text read, at most its first 64 characters.
    pub text: String,
    /// Whose status was read: `an environment` or `a deployment`.
    pub of: &'static str,
}

/// The status among `all` whose [`as_str`](DeploymentStatus::as_str) is `text`; else the
/// error for a status of `of`.
fn named<S: Copy>(
    all: &[S],
    as_str: fn(S) -> &'static str,
    text: &str,
    of: &'static str,
) -> Result<S, UnknownStatus> {
    all.iter()
        .copied()
        .find(|&status| as_str(status) == text)
        .ok_or_else(|| UnknownStatus {
            text: text.chars().take(64).collect(),
            of,
        })
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a gate was resolved or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resolution {
    /// A callback decided it.
    Callback,
    /// The call succeeded and `disableCallback` is set.
    CallSucceeded,
    /// The outbound call failed for good (retries exhausted, a non-retryable answer, or the
    /// request could not be rendered).
    CallFailed,
    /// No callback within the callback timeout.
    CallbackTimeout,
    /// A fixed pause elapsed.
    PauseElapsed,
    /// A person approved.
    Approved,
    /// A person rejected.
    Rejected,
    /// Nobody approved within `approvalExpiration`.
    ApprovalExpired,
    /// The host's analysis passed.
    AnalysisPassed,
    /// The host's analysis failed (automatic roll-back mode).
    AnalysisFailed,
    /// The host step behind the gate took longer than `deploymentConfig.timeout`.
    StepTimeout,
    /// Closed unresolved because its environment ended first: another entry of the same
    /// parallel list, an earlier check or a host step failed, or a dependency did, which
    /// cancelled the environment.
    Superseded,
    /// The deployment was cancelled.
    Canceled,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolution::Callback => "resolved by a callback",
            Resolution::CallSucceeded => "the call succeeded (callbacks disabled)",
            Resolution::CallFailed => "the outbound call failed",
            Resolution::CallbackTimeout => "timed out waiting for a callback",
            Resolution::PauseElapsed => "pause elapsed",
            Resolution::Approved => "approved",
            Resolution::Rejected => "rejected",
            Resolution::ApprovalExpired => "approval expired",
            Resolution::AnalysisPassed => "analysis passed",
            Resolution::AnalysisFailed => "analysis failed",
            Resolution::StepTimeout => "timed out waiting for the host",
            Resolution::Superseded => {
                "closed because its environment ended first (another check or a step failed, or \
                 a dependency did)"
            }
            Resolution::Canceled => "closed because the deployment was cancelled",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name() {
        for status in EnvStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""), "the same name as JSON's");
        }
        for status in DeploymentStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""), "the same name as JSON's");
        }
        let unknown = "Running".parse::<DeploymentStatus>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "\"Running\" is not the status of a deployment: expected one of the names `as_str` writes"
        );
        assert_eq!(
            "x".repeat(1000)
                .parse::<EnvStatus>()
                .unwrap_err()
                .text
                .len(),
            64
        );
    }
}
