//! Events written for people (`EventKind::describe`): each kind names its environment and
//! gate from the plan, and text from outside cannot forge a line of a log.

use chrono::{TimeZone, Utc};
use hookgate::config::{EnvId, GateId, Plan};
use hookgate::core::{DeploymentStatus, EnvStatus, EventKind, OpId, Resolution};

const FILE: &str = r#"
application: shop
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
        - pause: {untilApproved: true}
      afterDeployment:
        - pause: {duration: 5, unit: minutes}
webhooks:
  - {name: ticket, uriTemplate: 'https://t.example'}
"#;

fn described(kind: &EventKind) -> String {
    kind.describe(&Plan::from_yaml(FILE).unwrap()).to_string()
}

#[test]
fn every_kind_names_its_environment_and_gate() {
    let (webhook, approval, pause) = (GateId(0), GateId(1), GateId(2));
    let retry_at = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 30).unwrap();
    let cases = [
        (EventKind::DeploymentStarted, "deployment started"),
        (
            EventKind::EnvironmentStatus {
                env: EnvId(0),
                status: EnvStatus::Deploying,
            },
            "prod: deploying",
        ),
        (
            EventKind::GateOpened { gate: approval },
            "prod approval: open",
        ),
        (
            EventKind::WebhookAttempt {
                gate: webhook,
                attempt: 1,
            },
            "prod webhook ticket: calling, attempt 1",
        ),
        (
            EventKind::WebhookSent {
                gate: webhook,
                attempt: 2,
                status: 202,
            },
            "prod webhook ticket: call answered 202, attempt 2",
        ),
        (
            EventKind::WebhookFailed {
                gate: webhook,
                attempt: 1,
                status: Some(503),
                reason: "HTTP 503".into(),
                retry_at: Some(retry_at),
            },
            "prod webhook ticket: call failed, attempt 1: \"HTTP 503\"; next attempt at \
             2026-12-05T12:00:30+00:00",
        ),
        (
            EventKind::CallbackReceived {
                gate: webhook,
                success: false,
                message: Some("3 tests failed".into()),
            },
            "prod webhook ticket: callback, failure: \"3 tests failed\"",
        ),
        (
            EventKind::CallbackReceived {
                gate: webhook,
                success: true,
                message: None,
            },
            "prod webhook ticket: callback, success",
        ),
        (
            EventKind::Progress {
                gate: webhook,
                message: "half way".into(),
            },
            "prod webhook ticket: progress: \"half way\"",
        ),
        (
            EventKind::ApprovalDecided {
                gate: approval,
                approved: false,
                by: "ana".into(),
                comment: Some("not on a Friday".into()),
            },
            "prod approval: rejected by \"ana\": \"not on a Friday\"",
        ),
        (
            EventKind::GatePassed {
                gate: pause,
                how: Resolution::PauseElapsed,
            },
            "prod pause: passed, pause elapsed",
        ),
        (
            EventKind::GatePassed {
                gate: webhook,
                how: Resolution::CallSucceeded,
            },
            "prod webhook ticket: passed, the call succeeded (callbacks disabled)",
        ),
        (
            EventKind::EnvironmentStatus {
                env: EnvId(0),
                status: EnvStatus::RollingBack,
            },
            "prod: rolling back",
        ),
        (
            EventKind::GateFailed {
                gate: webhook,
                how: Resolution::CallbackTimeout,
                message: "no callback within 24h".into(),
            },
            "prod webhook ticket: failed, timed out waiting for a callback: \"no callback \
             within 24h\"",
        ),
        (
            EventKind::GateClosed {
                gate: approval,
                how: Resolution::Canceled,
            },
            "prod approval: closed because the deployment was cancelled",
        ),
        (
            EventKind::StepFinished {
                op: OpId(7),
                env: EnvId(0),
                ok: false,
                message: Some("image isn't there".into()),
            },
            "prod: host step op 7 failed: \"image isn't there\"",
        ),
        (
            EventKind::RollbackStarted { env: EnvId(0) },
            "prod: rolling back",
        ),
        (
            EventKind::CancelRequested { by: "ops".into() },
            "deployment cancel asked by \"ops\"",
        ),
        (
            EventKind::DeploymentFinished {
                status: DeploymentStatus::Failed,
            },
            "deployment failed",
        ),
        (
            EventKind::DeploymentFinished {
                status: DeploymentStatus::RolledBack,
            },
            "deployment rolled back",
        ),
    ];
    for (kind, expected) in cases {
        assert_eq!(described(&kind), expected, "{kind:?}");
    }
}

/// A callback's message is the sender's: its line breaks and quotes come out escaped, on
/// the one line of the event.
#[test]
fn text_from_outside_stays_on_one_line() {
    let kind = EventKind::CallbackReceived {
        gate: GateId(0),
        success: true,
        message: Some("ok\"\n2026-12-05 INFO deployment approved\u{1b}[2K".into()),
    };
    assert_eq!(
        described(&kind),
        r#"prod webhook ticket: callback, success: "ok\"\n2026-12-05 INFO deployment approved\u{1b}[2K""#
    );
}

/// An event paired with another deployment's plan does not panic: ids the plan lacks are
/// written as numbers.
#[test]
fn ids_the_plan_does_not_have_are_written_as_numbers() {
    let kind = EventKind::GatePassed {
        gate: GateId(99),
        how: Resolution::Approved,
    };
    assert_eq!(described(&kind), "gate 99: passed, approved");
    let kind = EventKind::RollbackStarted { env: EnvId(7) };
    assert_eq!(described(&kind), "environment 7: rolling back");
}
