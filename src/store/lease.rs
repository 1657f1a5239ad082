//! What several replicas sharing one store need: leases on deployments and change notices.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::core::DeploymentId;

/// A replica's claim on the deployments it drives: who holds it, the time it is taken at, and
/// until when it holds.
///
/// A lease whose `until` has passed (by the `now` of the replica asking) may be taken by
/// another replica. Replicas compare times from their own clocks, so their clocks must agree to
/// well within the lease time (NTP does that).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The replica holding it: unique among the replicas sharing the store.
    pub owner: String,
    /// The holder's current time.
    pub now: DateTime<Utc>,
    /// When it ends unless renewed.
    pub until: DateTime<Utc>,
}

impl Lease {
    /// A lease for `owner` from `now` for `ttl`.
    pub fn new(owner: impl Into<String>, now: DateTime<Utc>, ttl: Duration) -> Self {
        let ttl = TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
        Self {
            owner: owner.into(),
            now,
            until: now
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// Called by a store after each `create` or `save` of a deployment, by this process or by any
/// other sharing the store, with the deployment and its new version.
///
/// A notice may come late, twice, or (when the connection carrying them drops) not at all, so a
/// replica treats it as a hint to look, never as the only way to learn of a change. It must
/// return at once: it runs on the store's own thread or task.
pub type ChangeWatcher = Arc<dyn Fn(&DeploymentId, u64) + Send + Sync>;
