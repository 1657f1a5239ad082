//! Waiting for an engine's deployment to end, in tests without a loopback world.

use std::time::Duration;

use hookgate::core::{DeploymentId, DeploymentStatus};
use hookgate::runtime::Engine;

/// Waits (at most 10 s of real time) for `id` to end on `engine`; returns its outcome. Panics
/// with `what` if it does not.
pub async fn finished(engine: &Engine, id: &DeploymentId, what: &str) -> DeploymentStatus {
    let wait = async {
        loop {
            let status = engine.view(id).await.expect("the deployment").status;
            if status.is_terminal() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: the deployment never ends"))
}
