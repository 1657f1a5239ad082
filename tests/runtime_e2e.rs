//! The engine end to end on loopback, one test per outcome row of PROTOCOL.md §4: webhooks go
//! out over HTTP to an external system, which calls back over HTTP through hookgate's router.
#![cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver"
))]

mod log_capture;
mod support;

use std::sync::Arc;

use hookgate::core::{DeploymentStatus, EnvStatus};
use hookgate::runtime::RuntimeError;
use log_capture::Captured;
use support::{StepLog, file, world, world_on};

const TARGETS: &str = r#"
  dev:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
  staging:
    strategy: canary
    constraints:
      dependsOn: [dev]
      afterDeployment: [runWebhook: {name: smoke}]
  prod:
    strategy: canary
    constraints:
      dependsOn: [staging]
"#;
const CANARY: &str = "  canary: {canary: {steps: [setWeight: {weight: 50}, runWebhook: {name: tests}, setWeight: {weight: 100}]}}";

/// Runs [`TARGETS`] with every webhook whose path starts with `fail` failing; returns the
/// outcome, each environment's status and the host steps asked for.
async fn run(fail: &'static str) -> (DeploymentStatus, Vec<(String, EnvStatus)>, StepLog) {
    let host = StepLog::default();
    let mut w = world_on(
        host.clone(),
        |b| b,
        Arc::new(move |path: &str| vec![(0, !path.starts_with(fail))]),
    )
    .await;
    let started = w
        .engine
        .start(&file(TARGETS, CANARY), w.context())
        .await
        .unwrap();
    let status = w.finished(&started.id).await;
    let view = w.engine.view(&started.id).await.unwrap();
    (status, view.environments, host)
}

fn statuses(envs: &[(String, EnvStatus)]) -> Vec<String> {
    envs.iter().map(|(n, s)| format!("{n}: {s}")).collect()
}

/// A key the engine does not read is no error (PROTOCOL.md §2), and is logged at the start and
/// returned with it, since a misspelt one drops what it meant: here the webhook before
/// deploying to dev. One spelt like a key hookgate reads is a warning, naming that key.
#[tokio::test]
async fn a_start_logs_and_returns_the_keys_of_the_file_it_does_not_read() {
    let (log, _guard) = Captured::on_this_thread();
    let mut w = world(|b| b, Arc::new(|_: &str| vec![(0, true)])).await;
    let misspelt =
        "  dev:\n    constraints:\n      beforDeployment: [runWebhook: {name: ticket}]\n";
    let started = w
        .engine
        .start(&file(misspelt, CANARY), w.context())
        .await
        .unwrap();
    assert_eq!(
        started.ignored_fields,
        ["targets.dev.constraints.beforDeployment"]
    );
    assert_eq!(w.finished(&started.id).await, DeploymentStatus::Succeeded);
    let log = log.text();
    let line = log
        .lines()
        .find(|line| line.contains("keys hookgate does not read"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("targets.dev.constraints.beforDeployment"),
        "{line}"
    );
    let near: Vec<(&str, &str)> = started
        .near_misses
        .iter()
        .map(|miss| (miss.path.as_str(), miss.known))
        .collect();
    assert_eq!(
        near,
        [(
            "targets.dev.constraints.beforDeployment",
            "beforeDeployment"
        )]
    );
    let warning = log
        .lines()
        .find(|line| line.contains("likely meant to be one it does"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("likely_meant=\"beforeDeployment\""),
        "{warning}"
    );
}

/// A webhook whose JSON-looking body goes out without a JSON `Content-Type` (its values
/// unescaped, PROTOCOL.md §3) is no error: the start returns its name and logs a warning
/// naming it, and the deployment runs.
#[tokio::test]
async fn a_start_warns_of_a_json_body_sent_without_a_json_content_type() {
    let (log, _guard) = Captured::on_this_thread();
    let mut w = world(|b| b, Arc::new(|_: &str| vec![(0, true)])).await;
    let file = file(TARGETS, CANARY);
    let header = "    headers: [{key: Content-Type, value: application/json}]\n";
    let ticket = file.find("  - name: ticket\n").unwrap();
    let at = ticket + file[ticket..].find(header).unwrap();
    let unlabelled = format!("{}{}", &file[..at], &file[at + header.len()..]);
    let started = w.engine.start(&unlabelled, w.context()).await.unwrap();
    assert_eq!(started.unescaped_json, ["ticket"]);
    assert_eq!(w.finished(&started.id).await, DeploymentStatus::Succeeded);
    let log = log.text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("values go in unescaped"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("webhook=\"ticket\""),
        "{}",
        warnings[0]
    );
    let labelled = w.engine.start(&file, w.context()).await.unwrap();
    assert!(labelled.unescaped_json.is_empty());
}

/// A key's path is the file's text, and a key not read may hold a line break: logged, it
/// cannot start a line of its own.
#[tokio::test]
async fn a_near_miss_logged_cannot_forge_a_line() {
    let (log, _guard) = Captured::on_this_thread();
    let w = world(|b| b, Arc::new(|_: &str| vec![(0, true)])).await;
    let forged = "2026-12-05T00:00:00.000000Z  INFO hookgate: forged";
    let targets = format!("  dev:\n    constraints:\n      \"beforeDeployment\\n{forged}\": []\n");
    let started = w
        .engine
        .start(&file(&targets, CANARY), w.context())
        .await
        .unwrap();
    assert_eq!(started.near_misses.len(), 1, "{:?}", started.near_misses);
    let log = log.text();
    assert!(log.contains("likely_meant=\"beforeDeployment\""), "{log}");
    assert!(!log.lines().any(|line| line.starts_with(forged)), "{log}");
}

#[tokio::test]
async fn every_gate_passing_succeeds() {
    let (status, envs, host) = run("/nothing").await;
    assert_eq!(status, DeploymentStatus::Succeeded);
    assert_eq!(
        statuses(&envs),
        ["dev: succeeded", "staging: succeeded", "prod: succeeded"]
    );
    assert_eq!(host.of("dev"), ["deploy"]);
    for canary in ["staging", "prod"] {
        assert_eq!(host.of(canary), ["deploy", "setWeight", "setWeight"]);
    }
}

#[tokio::test]
async fn before_deployment_failure_fails_without_deploying_and_cancels_dependents() {
    let (status, envs, host) = run("/ticket/dev").await;
    assert_eq!(status, DeploymentStatus::Failed);
    assert_eq!(
        statuses(&envs),
        ["dev: failed", "staging: canceled", "prod: canceled"]
    );
    for env in ["dev", "staging", "prod"] {
        assert_eq!(host.of(env), Vec::<&str>::new(), "{env}");
    }
}

#[tokio::test]
async fn strategy_failure_rolls_back_and_cancels_dependents() {
    let (status, envs, host) = run("/tests/staging").await;
    assert_eq!(status, DeploymentStatus::RolledBack);
    assert_eq!(
        statuses(&envs),
        ["dev: succeeded", "staging: rolled_back", "prod: canceled"]
    );
    assert_eq!(host.of("staging"), ["deploy", "setWeight", "rollBack"]);
    assert_eq!(host.of("prod"), Vec::<&str>::new());
}

#[tokio::test]
async fn after_deployment_failure_fails_without_rolling_back() {
    let (status, envs, host) = run("/smoke/staging").await;
    assert_eq!(status, DeploymentStatus::Failed);
    assert_eq!(
        statuses(&envs),
        ["dev: succeeded", "staging: failed", "prod: canceled"]
    );
    // Deployed and through its canary, then failed after deployment: no rollback.
    assert_eq!(host.of("staging"), ["deploy", "setWeight", "setWeight"]);
    assert_eq!(host.of("prod"), Vec::<&str>::new());
}

/// The history keeps every callback's message, and reads as a story with the plan the engine
/// gives for the deployment, once it has finished and left the engine's memory as while it
/// ran; an unknown id has no plan.
#[tokio::test]
async fn history_keeps_every_callback_message() {
    let mut w = world(|b| b, Arc::new(|_: &str| vec![(0, true)])).await;
    let started = w
        .engine
        .start(&file(TARGETS, CANARY), w.context())
        .await
        .unwrap();
    let running = w.engine.plan(&started.id).await.unwrap();
    w.finished(&started.id).await;
    let history = w.engine.history(&started.id).await.unwrap();
    let messages: Vec<String> = history
        .iter()
        .filter_map(|h| match &h.event.kind {
            hookgate::core::EventKind::CallbackReceived { message, .. } => message.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(messages.contains(&"/ticket/dev done".to_owned()));

    let plan = w.engine.plan(&started.id).await.unwrap();
    assert_eq!(plan.environments().len(), running.environments().len());
    let lines: Vec<String> = history
        .iter()
        .map(|entry| entry.event.kind.describe(&plan).to_string())
        .collect();
    for expected in [
        "deployment started",
        "dev webhook ticket: callback, success: \"/ticket/dev done\"",
        "staging webhook tests: passed, resolved by a callback",
        "prod: succeeded",
        "deployment succeeded",
    ] {
        assert!(
            lines.iter().any(|line| line == expected),
            "{expected} in {lines:#?}"
        );
    }
    let unknown = w.engine.plan(&"d-unknown".into()).await;
    assert!(
        matches!(unknown, Err(RuntimeError::UnknownDeployment { .. })),
        "{unknown:?}"
    );
}

const ONE_GATE: &str = r#"
application: solo
deploymentConfig: {ifDeploymentInProgress: {strategy: POLICY}}
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: ticket}]
webhooks:
  - name: ticket
    uriTemplate: "{{secrets.external}}/ticket/prod"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
"#;

#[tokio::test]
async fn if_deployment_in_progress_reject_refuses_a_second_deployment() {
    let w = world(|b| b, Arc::new(|_: &str| vec![])).await;
    let file = ONE_GATE.replace("POLICY", "reject");
    let first = w.engine.start(&file, w.context()).await.unwrap();
    let second = w.engine.start(&file, w.context()).await;
    assert!(
        matches!(second, Err(RuntimeError::InProgress { ref running, .. }) if *running == first.id),
        "{second:?}"
    );
}

#[tokio::test]
async fn if_deployment_in_progress_enqueue_one_keeps_only_the_newest_waiting() {
    let mut w = world(|b| b, Arc::new(|_: &str| vec![])).await;
    let file = ONE_GATE.replace("POLICY", "enqueueOne");
    let first = w.engine.start(&file, w.context()).await.unwrap();
    let second = w.engine.start(&file, w.context()).await.unwrap();
    let misspelt = file.replace("application:", "aplication: typo\napplication:");
    let third = w.engine.start(&misspelt, w.context()).await.unwrap();
    assert_eq!(second.status, DeploymentStatus::Queued);
    assert_eq!(third.status, DeploymentStatus::Queued);
    assert!(first.ignored_fields.is_empty());
    assert_eq!(
        third.ignored_fields,
        ["aplication"],
        "a queued start returns them too"
    );
    let queued = w.engine.plan(&third.id).await.unwrap();
    assert_eq!(
        queued.ignored_fields(),
        ["aplication"],
        "a queued one has its plan"
    );
    let near: Vec<&str> = third.near_misses.iter().map(|miss| miss.known).collect();
    assert_eq!(near, ["application"], "and its near misses");
    assert_eq!(
        w.engine.live_deployment_ids(),
        [first.id.clone(), third.id.clone()],
        "the running one, then the one queued in place of the second"
    );
    w.engine.cancel(&first.id, "operator").await.unwrap();
    assert_eq!(w.finished(&first.id).await, DeploymentStatus::Canceled);
    w.started(&third.id).await;
    w.engine.cancel(&third.id, "operator").await.unwrap();
    assert_eq!(w.finished(&third.id).await, DeploymentStatus::Canceled);
    assert!(
        matches!(
            w.engine.view(&second.id).await,
            Err(RuntimeError::UnknownDeployment(_))
        ),
        "the replaced one never started"
    );
}

/// A start that comes after the running deployment finished but before the hand-off that
/// starts the waiting one has run does not jump the queue (which would have the older file
/// deployed over it next): it takes the waiting one's place, as while the first ran.
#[tokio::test]
async fn a_start_before_the_hand_off_takes_the_waiting_ones_place() {
    let mut w = world(|b| b, Arc::new(|_: &str| vec![])).await;
    let file = ONE_GATE.replace("POLICY", "enqueueOne");
    let first = w.engine.start(&file, w.context()).await.unwrap();
    let waiting = w.engine.start(&file, w.context()).await.unwrap();
    // On this single-threaded runtime the hand-off the cancel spawns runs only once this task
    // yields. Nothing from there to the start waits for another task (the store is in memory),
    // and `unconstrained` keeps tokio's cooperative budget from making the task yield all the
    // same, so the start comes before the hand-off: checked by the waiting one never stored.
    let newer = tokio::task::unconstrained(async {
        w.engine.cancel(&first.id, "operator").await.unwrap();
        let newer = w.engine.start(&file, w.context()).await.unwrap();
        assert!(
            matches!(
                w.engine.view(&waiting.id).await,
                Err(RuntimeError::UnknownDeployment(_))
            ),
            "the start took the waiting one's place before the hand-off could start it"
        );
        newer
    })
    .await;
    assert_eq!(newer.status, DeploymentStatus::Queued);
    w.started(&newer.id).await;
    w.engine.cancel(&newer.id, "operator").await.unwrap();
    assert_eq!(w.finished(&newer.id).await, DeploymentStatus::Canceled);
    assert!(
        matches!(
            w.engine.view(&waiting.id).await,
            Err(RuntimeError::UnknownDeployment(_))
        ),
        "the replaced one never started"
    );
}

/// A queued deployment can be looked at (queued, nothing begun) and cancelled: it leaves the
/// queue and never starts.
#[tokio::test]
async fn a_queued_deployment_shows_as_queued_and_can_be_cancelled() {
    let mut w = world(|b| b, Arc::new(|_: &str| vec![])).await;
    let file = ONE_GATE.replace("POLICY", "enqueueOne");
    let first = w.engine.start(&file, w.context()).await.unwrap();
    let queued = w.engine.start(&file, w.context()).await.unwrap();
    let view = w.engine.view(&queued.id).await.unwrap();
    assert_eq!(view.status, DeploymentStatus::Queued);
    assert!(
        view.environments
            .iter()
            .all(|(_, s)| *s == hookgate::core::EnvStatus::Pending)
    );
    assert_eq!(view.open_gates().count(), 0);

    w.engine.cancel(&queued.id, "operator").await.unwrap();
    assert!(matches!(
        w.engine.view(&queued.id).await,
        Err(RuntimeError::UnknownDeployment(_))
    ));
    w.engine.cancel(&first.id, "operator").await.unwrap();
    assert_eq!(w.finished(&first.id).await, DeploymentStatus::Canceled);
    let next = w.engine.start(&file, w.context()).await.unwrap();
    assert_eq!(
        next.status,
        DeploymentStatus::Running,
        "nothing waits any more"
    );
    assert!(
        matches!(
            w.engine.view(&queued.id).await,
            Err(RuntimeError::UnknownDeployment(_))
        ),
        "it never started"
    );
}

#[tokio::test]
async fn progress_notes_are_stored_in_the_history_and_keep_the_gate_open() {
    use hookgate::auth::Principal;
    use hookgate::server::{CallbackReport, GateService};
    let w = world(|b| b, Arc::new(|_: &str| vec![])).await;
    let started = w
        .engine
        .start(&ONE_GATE.replace("POLICY", "reject"), w.context())
        .await
        .unwrap();
    let callback = loop {
        if let Some(request) = w.external.received_requests().await.unwrap().first() {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let uri = body["callbackUri"].as_str().unwrap().to_owned();
            break uri.rsplit('/').next().unwrap().parse().unwrap();
        }
        tokio::task::yield_now().await;
    };
    let report = CallbackReport::Progress {
        message: "halfway".into(),
    };
    w.engine
        .callback(callback, report, &Principal::new("ci"))
        .await
        .unwrap();
    let history = w.engine.history(&started.id).await.unwrap();
    assert!(history.iter().any(|h| matches!(
        &h.event.kind,
        hookgate::core::EventKind::Progress { message, .. } if message == "halfway"
    )));
    assert_eq!(
        w.engine
            .view(&started.id)
            .await
            .unwrap()
            .open_gates()
            .count(),
        1
    );
}
