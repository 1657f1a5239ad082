//! The deployment file: Armory's `deploy.yml` model and its validation (PROTOCOL.md §2).
//!
//! [`DeploymentFile`] is the file as written; [`DeploymentFile::validate`] checks it and
//! produces a [`Plan`], the immutable description a deployment runs. A refused file yields a
//! [`ConfigError`] that lists every problem with the path of its field:
//!
//! ```
//! use hookgate::config::{ConfigError, Plan};
//!
//! let file = r#"
//! application: checkout
//! targets:
//!   prod:
//!     constraints:
//!       dependsOn: [prdo]
//!       beforeDeployment:
//!         - runWebhook: {name: ticket}
//! "#;
//! let Err(ConfigError::Invalid { problems, .. }) = Plan::from_yaml(file) else { panic!() };
//! let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
//! assert_eq!(shown, [
//!     r#"targets.prod.constraints.dependsOn[0]: unknown target "prdo""#,
//!     r#"targets.prod.constraints.beforeDeployment[0].runWebhook.name: unknown webhook "ticket": add it under `webhooks` or fix the name"#,
//! ]);
//! ```

mod error;
mod file;
mod limits;
mod near_miss;
mod plan;
mod validate;

pub use error::{ConfigError, Problem, ProblemKind};
pub use file::{
    Analysis, AnalysisConfig, AnalysisQuery, BlueGreen, BodyTemplate, Canary,
    CanaryStep as FileCanaryStep, Constraint, Constraints, Context, ContextValue, DeploymentConfig,
    DeploymentFile, DurationSpec, ExposeServices, Header, IfDeploymentInProgress, Pause,
    RunWebhook, SetWeight, Strategy as FileStrategy, Target, Webhook as FileWebhook,
};
pub use limits::Limits;
pub use near_miss::{NearMiss, Slip};
pub use plan::{
    AnalysisSpec, CanaryStep, EnvId, Environment, Gate, GateId, GateKind, InProgressPolicy,
    NetworkMode, Plan, RollBackMode, Stage, Strategy, Webhook, WebhookId,
};
