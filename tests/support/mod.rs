//! A loopback world for engine tests: hookgate's router on a real socket, an external system
//! (wiremock) that answers webhooks at once and calls back through the receiver SDK.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::core::{DeploymentId, DeploymentStatus, EventKind, HostStep, StepOutcome};
use hookgate::outbound::Dispatcher;
use hookgate::receiver::{Callback, CallbackClient, CallbackOutcome, ReceivedRequest, StaticToken};
use hookgate::runtime::{Engine, EngineBuilder, EngineEvent, Host, SimulatedHost, StepContext};
use hookgate::secrets::MemorySecrets;
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::HistoryEntry;
use hookgate::transport::{ReqwestTransport, TransportRegistry};
use tokio::sync::{broadcast, mpsc};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const TOKEN: &str = "callback-token-for-tests";

/// What the external system does with a webhook it received at `path`: the callbacks it sends,
/// each after a delay in milliseconds (none: it never calls back).
pub type Decide = Arc<dyn Fn(&str) -> Vec<(u64, bool)> + Send + Sync>;

/// Every callback the external system sent: the webhook path, what it said, the answer.
pub type Sent = Arc<std::sync::Mutex<Vec<(String, bool, CallbackOutcome)>>>;

pub struct World {
    pub engine: Engine,
    pub base: String,
    pub external: MockServer,
    pub sent: Sent,
    events: broadcast::Receiver<EngineEvent>,
}

/// A wiremock responder that answers 202 and hands each request's path and body on.
pub struct Forward(pub mpsc::UnboundedSender<(String, Vec<u8>)>);

impl Respond for Forward {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let _ = self
            .0
            .send((request.url.path().to_owned(), request.body.clone()));
        ResponseTemplate::new(202)
    }
}

pub fn transport() -> ReqwestTransport {
    ReqwestTransport::builder()
        .build()
        .expect("a reqwest client")
}

/// A [`SimulatedHost`] that keeps, in order, every step it was asked for: the environment and
/// the step's name (`rollBack` for a rollback). The engine's history says what it decided; this
/// says what reached the host. A step is logged when first polled, which the engine does as it
/// starts the step, right after publishing the events of the write that asked for it: on a
/// single-threaded runtime a step is in the log before a test can see the deployment finish.
#[derive(Clone, Default)]
pub struct StepLog(Arc<std::sync::Mutex<Vec<(String, &'static str)>>>);

#[async_trait]
impl Host for StepLog {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        self.record(context, step.name());
        SimulatedHost.run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        self.record(context, "rollBack");
        SimulatedHost.roll_back(context).await
    }
}

impl StepLog {
    fn record(&self, context: &StepContext, step: &'static str) {
        let mut steps = self.0.lock().unwrap();
        steps.push((context.environment().to_owned(), step));
    }

    /// The steps asked for in `environment`, in order.
    pub fn of(&self, environment: &str) -> Vec<&'static str> {
        let steps = self.0.lock().unwrap();
        steps
            .iter()
            .filter(|(env, _)| env == environment)
            .map(|(_, step)| *step)
            .collect()
    }
}

/// Starts the world with a [`SimulatedHost`]. `decide` says, per webhook path, which callbacks
/// the external system sends ([`Decide`]).
pub async fn world(
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    decide: Decide,
) -> World {
    world_on(SimulatedHost, configure, decide).await
}

/// Starts the world with `host` doing the host steps; see [`world`].
pub async fn world_on(
    host: impl Host,
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    decide: Decide,
) -> World {
    let external = MockServer::start().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    Mock::given(method("POST"))
        .respond_with(Forward(tx))
        .mount(&external)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(transport())),
        Arc::new(MemorySecrets::new().with("external", external.uri())),
        base.clone(),
    )
    .build()
    .unwrap();
    let engine = configure(Engine::builder(dispatcher, host)).build();
    let handler = CallbackHandler::new(
        Arc::new(engine.clone()),
        Arc::new(StaticTokens::new().with_token(TOKEN, Principal::new("external-ci"))),
    );
    tokio::spawn(async move {
        axum::serve(listener, router(ServerState::new(handler)))
            .await
            .unwrap()
    });
    // The gate servers are this test's own, on loopback ports it does not know here.
    let client =
        Arc::new(CallbackClient::new(transport(), StaticToken::new(TOKEN)).allow_any_origin());
    let sent: Sent = Arc::default();
    let record = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Some((path, body)) = rx.recv().await {
            let url = ReceivedRequest::new()
                .with_body(&body)
                .callback_uri()
                .expect("the webhook body carries the callback URI");
            for (delay, success) in decide(&path) {
                let (client, url, path, record) = (
                    Arc::clone(&client),
                    url.clone(),
                    path.clone(),
                    Arc::clone(&record),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let outcome = client
                        .send(
                            &url,
                            &Callback::outcome(success).with_message(format!("{path} done")),
                        )
                        .await
                        .expect("the callback is answered");
                    record.lock().unwrap().push((path, success, outcome));
                });
            }
        }
    });
    let events = engine.subscribe();
    let scheduler = engine.clone();
    tokio::spawn(async move { scheduler.run_scheduler().await });
    World {
        engine,
        base,
        external,
        sent,
        events,
    }
}

impl World {
    pub fn context(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("team".to_owned(), "payments".to_owned())])
    }

    /// Waits (at most 20 s of real time) for the deployment to start.
    pub async fn started(&mut self, id: &DeploymentId) {
        let wait = async {
            loop {
                match self.events.recv().await {
                    Ok(EngineEvent::Deployment { id: got, event })
                        if &got == id && event.kind == EventKind::DeploymentStarted =>
                    {
                        return;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("event stream ended: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("the deployment started in time");
    }

    /// Waits (at most 20 s of real time) for the deployment to finish; returns its outcome.
    pub async fn finished(&mut self, id: &DeploymentId) -> DeploymentStatus {
        self.all_finished(std::slice::from_ref(id)).await[id]
    }

    /// Waits (at most 60 s of real time) for every deployment to finish; returns the outcomes.
    pub async fn all_finished(
        &mut self,
        ids: &[DeploymentId],
    ) -> BTreeMap<DeploymentId, DeploymentStatus> {
        let mut done = BTreeMap::new();
        let wait = async {
            while done.len() < ids.len() {
                match self.events.recv().await {
                    Ok(EngineEvent::Deployment { id, event }) if ids.contains(&id) => {
                        if let EventKind::DeploymentFinished { status } = event.kind {
                            done.insert(id, status);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for id in ids {
                            let view = self.engine.view(id).await.expect("a known deployment");
                            if view.status.is_terminal() {
                                done.insert(id.clone(), view.status);
                            }
                        }
                    }
                    Err(e) => panic!("event stream ended: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("the deployments finished in time");
        done
    }
}

/// A deployment file whose webhooks post to the external system (its base URL is the secret
/// `external`) at `/<webhook>/<env>`.
pub fn file(targets: &str, strategies: &str) -> String {
    format!(
        r#"
application: shop
targets:
{targets}
strategies:
{strategies}
webhooks:
  - name: ticket
    uriTemplate: "{{{{secrets.external}}}}/ticket/{{{{armory.environmentName}}}}"
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}/callback"}}'}}
  - name: tests
    uriTemplate: "{{{{secrets.external}}}}/tests/{{{{armory.environmentName}}}}"
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}"}}'}}
  - name: smoke
    uriTemplate: "{{{{secrets.external}}}}/smoke/{{{{armory.environmentName}}}}"
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"client_payload": {{"callbackUri": "{{{{armory.callbackUri}}}}/callback"}}}}'}}
"#
    )
}

/// The storm's promises for one deployment, given the callbacks the external system sent for
/// its gate, the outcome it reached and its history: 200 was answered for one outcome only, the
/// opposite one got 409, the first accepted callback decided, exactly one callback was applied.
/// Returns the outcome.
pub fn check_first_accepted_decides(
    id: &DeploymentId,
    mine: &[&(String, bool, CallbackOutcome)],
    outcome: DeploymentStatus,
    history: &[HistoryEntry],
) -> DeploymentStatus {
    let accepted: Vec<bool> = mine
        .iter()
        .filter(|(_, _, o)| *o == CallbackOutcome::Delivered)
        .map(|(_, s, _)| *s)
        .collect();
    assert!(!accepted.is_empty(), "{id}: some callback was accepted");
    assert!(
        accepted.iter().all(|s| *s == accepted[0]),
        "{id}: 200 was only ever answered for one outcome: {mine:?}"
    );
    for (_, success, answer) in mine {
        if *success != accepted[0] {
            assert!(
                matches!(answer, CallbackOutcome::Conflict { .. }),
                "{id}: the opposite outcome is 409, not {answer:?}"
            );
        }
    }
    let expected = if accepted[0] {
        DeploymentStatus::Succeeded
    } else {
        DeploymentStatus::Failed
    };
    assert_eq!(
        outcome, expected,
        "{id}: the first accepted callback decides"
    );
    let applied = history
        .iter()
        .filter(|h| matches!(h.event.kind, EventKind::CallbackReceived { .. }))
        .count();
    assert_eq!(applied, 1, "{id}: exactly one callback was applied");
    expected
}
