//! Replica scenarios shared by the memory-store and PostgreSQL test files: several engines
//! sharing one store, each serving callbacks on its own loopback socket.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::TimeDelta;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::core::{DeploymentId, DeploymentStatus, EventKind, GateState, HostStep, StepOutcome};
use hookgate::outbound::Dispatcher;
use hookgate::receiver::{Callback, CallbackClient, CallbackOutcome, ReceivedRequest, StaticToken};
use hookgate::runtime::{Engine, Host, ReplicaOptions, SimulatedHost, StepContext};
use hookgate::secrets::MemorySecrets;
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::DynStore;
use hookgate::test_util::ManualClock;
use hookgate::transport::{TransportError, TransportRegistry};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use tokio::sync::mpsc;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

use crate::support::{Forward, check_first_accepted_decides, transport};

pub const TOKEN: &str = "replica-callback-token";

/// A host step: deployment, environment, step name.
type StepKey = (DeploymentId, String, String);

/// Every host step any replica ran, with how many times.
#[derive(Clone, Default)]
pub struct CountingHost(Arc<Mutex<HashMap<StepKey, usize>>>);

#[async_trait]
impl Host for CountingHost {
    async fn run_step(&self, context: &StepContext, step: &HostStep) -> StepOutcome {
        let key = (
            context.deployment().clone(),
            context.environment().to_owned(),
            step.name().to_owned(),
        );
        *self.0.lock().unwrap().entry(key).or_default() += 1;
        SimulatedHost.run_step(context, step).await
    }

    async fn roll_back(&self, context: &StepContext) -> StepOutcome {
        let key = (
            context.deployment().clone(),
            context.environment().to_owned(),
            "rollback".to_owned(),
        );
        *self.0.lock().unwrap().entry(key).or_default() += 1;
        StepOutcome::Succeeded
    }
}

impl CountingHost {
    pub fn runs(&self) -> HashMap<StepKey, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// A deployment file with a webhook gate before deploying, posting to `/gate/<i>`.
fn gated_file(i: usize) -> String {
    format!(
        r#"
application: replicas-{i}
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {{name: gate}}]
webhooks:
  - name: gate
    uriTemplate: "{{{{secrets.external}}}}/gate/{i}"
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}"}}'}}
"#
    )
}

/// Two replicas on `store`, `deployments` deployments started alternately on each; the
/// external system sends 3–5 callbacks per gate (duplicates and conflicting outcomes, random
/// delays), each to a replica chosen at random. Checks that every gate resolved exactly once,
/// every deployment reached the outcome of the first accepted callback, 200 was answered only
/// for that outcome, and no host step ran twice.
pub async fn two_replica_storm(store: Arc<DynStore>, deployments: usize) {
    let external = MockServer::start().await;
    let (tx, mut webhooks) = mpsc::unbounded_channel();
    Mock::given(method("POST"))
        .respond_with(Forward(tx))
        .mount(&external)
        .await;
    let host = CountingHost::default();
    let mut engines = Vec::new();
    let mut bases = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dispatcher = Dispatcher::builder(
            TransportRegistry::new(Arc::new(transport())),
            Arc::new(MemorySecrets::new().with("external", external.uri())),
            base.clone(),
        )
        .build()
        .unwrap();
        let engine = Engine::builder(dispatcher, host.clone())
            .shared_store(Arc::clone(&store))
            .allow_concurrent_deployments(true)
            // Long leases: no upkeep round runs during the test, so only the store's change
            // notices can wake the replica driving a deployment.
            .replica(ReplicaOptions::new(name).lease(Duration::from_secs(3600)))
            .build();
        engine.recover().await.unwrap();
        let handler = CallbackHandler::new(
            Arc::new(engine.clone()),
            Arc::new(StaticTokens::new().with_token(TOKEN, Principal::new("external"))),
        );
        tokio::spawn(async move {
            axum::serve(listener, router(ServerState::new(handler)))
                .await
                .unwrap()
        });
        let scheduler = engine.clone();
        tokio::spawn(async move { scheduler.run_scheduler().await });
        engines.push(engine);
        bases.push(base);
    }

    // The external system: for each webhook, 3–5 callbacks, the first one's outcome decides,
    // each sent after a random delay to a random replica (as a load balancer would).
    let rng = Arc::new(Mutex::new(Pcg64Mcg::seed_from_u64(6_2026_1129)));
    let planned = Arc::new(Mutex::new(0usize));
    let sent: Arc<Mutex<Vec<(String, bool, CallbackOutcome)>>> = Arc::default();
    // The gate servers are this test's own, on loopback ports it does not know here.
    let client =
        Arc::new(CallbackClient::new(transport(), StaticToken::new(TOKEN)).allow_any_origin());
    {
        let (rng, planned, sent, bases) = (
            Arc::clone(&rng),
            Arc::clone(&planned),
            Arc::clone(&sent),
            bases.clone(),
        );
        tokio::spawn(async move {
            while let Some((path, body)) = webhooks.recv().await {
                let url = ReceivedRequest::new()
                    .with_body(&body)
                    .callback_uri()
                    .expect("the webhook body carries the callback URI");
                let plan: Vec<(u64, bool, usize)> = {
                    let mut rng = rng.lock().unwrap();
                    let first = rng.next_u32().is_multiple_of(2);
                    let sends = 3 + rng.next_u32() % 3;
                    (0..sends)
                        .map(|i| {
                            let success = if i == 0 || !rng.next_u32().is_multiple_of(3) {
                                first
                            } else {
                                !first
                            };
                            let replica = (rng.next_u32() % 2) as usize;
                            (u64::from(rng.next_u32() % 200), success, replica)
                        })
                        .collect()
                };
                *planned.lock().unwrap() += plan.len();
                for (delay, success, replica) in plan {
                    let mut url = url.clone();
                    let target = url::Url::parse(&bases[replica]).unwrap();
                    url.set_port(target.port()).unwrap();
                    let (client, path, sent) =
                        (Arc::clone(&client), path.clone(), Arc::clone(&sent));
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let outcome = client
                            .send(&url, &Callback::outcome(success).with_message("done"))
                            .await
                            .expect("the callback is answered");
                        sent.lock().unwrap().push((path, success, outcome));
                    });
                }
            }
        });
    }

    let mut ids = Vec::new();
    for i in 0..deployments {
        let engine = &engines[i % 2];
        ids.push(
            engine
                .start(&gated_file(i), BTreeMap::new())
                .await
                .unwrap()
                .id,
        );
    }
    let outcomes = wait_finished(&store, &ids, Duration::from_secs(120)).await;
    let all_answered = async {
        loop {
            let expected = *planned.lock().unwrap();
            if sent.lock().unwrap().len() >= expected && expected > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all_answered)
        .await
        .expect("every callback was answered");

    let sent = sent.lock().unwrap().clone();
    let runs = host.runs();
    for (i, id) in ids.iter().enumerate() {
        let path = format!("/gate/{i}");
        let mine: Vec<_> = sent.iter().filter(|(p, _, _)| *p == path).collect();
        let history = store.history(id).await.unwrap();
        let expected = check_first_accepted_decides(id, &mine, outcomes[id], &history);
        let deployed = runs
            .iter()
            .filter(|((d, _, _), _)| d == id)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>();
        assert!(
            deployed.iter().all(|n| *n == 1),
            "{id}: a host step ran twice: {deployed:?}"
        );
        if expected == DeploymentStatus::Succeeded {
            assert!(
                !deployed.is_empty(),
                "{id}: a succeeded deployment ran its steps"
            );
        }
    }
    for engine in &engines {
        engine.shutdown().await;
    }
}

/// Polls the store until every deployment finished; returns the outcomes.
pub async fn wait_finished(
    store: &Arc<DynStore>,
    ids: &[DeploymentId],
    within: Duration,
) -> BTreeMap<DeploymentId, DeploymentStatus> {
    let wait = async {
        loop {
            let mut done = BTreeMap::new();
            for id in ids {
                let stored = store.load(id).await.unwrap().expect("a stored deployment");
                if stored.status.is_terminal() {
                    done.insert(id.clone(), stored.status);
                }
            }
            if done.len() == ids.len() {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("every deployment finished in time")
}

/// A transport that answers `/wait/*` with 202 at once, and never answers `/hang/*` while
/// `hang` is set; it counts every request by path.
#[derive(Clone, Default)]
pub struct ScriptedTransport {
    pub hang: bool,
    pub calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl ScriptedTransport {
    pub fn registry(&self) -> TransportRegistry {
        let me = self.clone();
        TransportRegistry::new(Arc::new(move |request: http::Request<Bytes>| {
            let me = me.clone();
            async move {
                let path = request.uri().path().to_owned();
                *me.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
                if me.hang && path.starts_with("/hang/") {
                    std::future::pending::<()>().await;
                }
                Ok::<_, TransportError>(
                    http::Response::builder()
                        .status(202)
                        .body(Bytes::new())
                        .unwrap(),
                )
            }
        }))
    }

    pub fn count(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn failover_file(kind: &str, i: usize) -> String {
    format!(
        r#"
application: failover-{kind}-{i}
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {{name: gate}}]
webhooks:
  - name: gate
    uriTemplate: "https://external.invalid/{kind}/{i}"
    callbackTimeout: {{duration: 1, unit: minutes}}
"#
    )
}

/// Replica A starts deployments whose gates wait for a callback (a pending deadline) or whose
/// calls never return (in flight), then stops without shutting down. Replica B takes nothing
/// while A's leases last; once they ended it takes every deployment over, performs each
/// in-flight call once, and fires each deadline once.
pub async fn failover(store: Arc<DynStore>) {
    let clock = ManualClock::new(chrono::Utc::now());
    let lease = Duration::from_secs(30);
    let engine = |name: &str, transport: &ScriptedTransport| {
        let dispatcher = Dispatcher::builder(
            transport.registry(),
            Arc::new(MemorySecrets::new()),
            "https://gates.example",
        )
        .build()
        .unwrap();
        Engine::builder(dispatcher, SimulatedHost)
            .shared_store(Arc::clone(&store))
            .clock(clock.clone())
            .allow_concurrent_deployments(true)
            .replica(ReplicaOptions::new(name).lease(lease))
            .build()
    };
    let a_transport = ScriptedTransport {
        hang: true,
        ..Default::default()
    };
    let b_transport = ScriptedTransport::default();
    let a = engine("a", &a_transport);
    let b = engine("b", &b_transport);
    a.recover().await.unwrap();
    b.recover().await.unwrap();

    let mut waiting = Vec::new();
    let mut hanging = Vec::new();
    for i in 0..5 {
        waiting.push(
            a.start(&failover_file("wait", i), BTreeMap::new())
                .await
                .unwrap()
                .id,
        );
        hanging.push(
            a.start(&failover_file("hang", i), BTreeMap::new())
                .await
                .unwrap()
                .id,
        );
    }
    // A's calls to /wait answered; its gates now wait for callbacks until a deadline.
    eventually(|| async {
        let mut armed = true;
        for id in &waiting {
            let view = a.view(id).await.unwrap();
            armed &= view
                .open_gates()
                .all(|g| matches!(g.state, GateState::AwaitingCallback { .. }));
        }
        armed
    })
    .await;
    assert_eq!(a.armed_deadlines(), 5);
    drop(a);

    clock.advance(TimeDelta::seconds(20));
    let early = b.maintain_leases().await.unwrap();
    assert_eq!(early.taken_over, 0, "A's leases still last");
    assert_eq!(b.live_deployments(), 0);

    clock.advance(TimeDelta::seconds(11));
    let upkeep = b.maintain_leases().await.unwrap();
    assert_eq!(upkeep.taken_over, 10, "every deployment of A is taken over");
    eventually(|| async { (0..5).all(|i| b_transport.count(&format!("/hang/{i}")) == 1) }).await;
    // Every gate waits for its callback again, each with its deadline armed at B.
    eventually(|| async { b.armed_deadlines() == 10 }).await;
    for i in 0..5 {
        assert_eq!(
            a_transport.count(&format!("/hang/{i}")),
            1,
            "A had sent it once"
        );
        assert_eq!(
            b_transport.count(&format!("/wait/{i}")),
            0,
            "an answered call is not repeated"
        );
    }

    clock.advance(TimeDelta::seconds(61));
    b.fire_due().await;
    let all: Vec<_> = waiting.iter().chain(&hanging).cloned().collect();
    let outcomes = wait_finished(&store, &all, Duration::from_secs(20)).await;
    for id in &all {
        assert_eq!(
            outcomes[id],
            DeploymentStatus::Failed,
            "{id}: the callback timed out"
        );
        let timeouts = store
            .history(id)
            .await
            .unwrap()
            .iter()
            .filter(|h| matches!(h.event.kind, EventKind::GateFailed { .. }))
            .count();
        assert_eq!(timeouts, 1, "{id}: its gate failed once");
    }
    for i in 0..5 {
        assert_eq!(
            b_transport.count(&format!("/hang/{i}")),
            1,
            "B performed A's call once"
        );
    }
    b.shutdown().await;
}

/// Waits (at most 20 s of real time) until `check` holds.
pub async fn eventually<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let wait = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the condition held in time");
}

/// A second engine given a running replica's name: the first learns so at its next round of
/// lease upkeep and shuts down, keeping the leases of that name for the second, which drives
/// their deployments on; a replica restarted under its name after a shutdown is not refused.
pub async fn a_second_engine_under_one_name(store: Arc<DynStore>) {
    use hookgate::runtime::RuntimeError;
    use hookgate::test_util::RecordingTransport;

    const APPROVAL: &str = "application: one-name\ntargets: {prod: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}}";
    let external = RecordingTransport::new();
    let replica = |name: &str| {
        Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(Arc::clone(&store))
        .replica(ReplicaOptions::new(name).lease(Duration::from_secs(3600)))
        .build()
    };
    let first = replica("same");
    first.recover().await.unwrap();
    let id = first.start(APPROVAL, BTreeMap::new()).await.unwrap().id;
    assert!(
        first.maintain_leases().await.is_ok(),
        "alone under its name"
    );

    let second = replica("same");
    let recovered = second.recover().await.unwrap();
    assert_eq!(recovered.resumed, 1, "the name's deployment");
    match first.maintain_leases().await {
        Err(RuntimeError::ReplicaNameTaken { name }) => assert_eq!(name, "same"),
        other => panic!("expected ReplicaNameTaken, got {other:?}"),
    }
    assert!(
        matches!(
            first.start(APPROVAL, BTreeMap::new()).await,
            Err(RuntimeError::ShuttingDown)
        ),
        "the first has shut down"
    );
    assert!(first.is_shut_down());
    assert!(!second.is_shut_down());

    // The lease stayed with the name: no other replica takes the deployment as an orphan.
    let other = replica("other");
    other.recover().await.unwrap();
    assert_eq!(other.maintain_leases().await.unwrap().taken_over, 0);
    let upkeep = second.maintain_leases().await.unwrap();
    assert_eq!(upkeep.renewed, 1, "the second holds it");
    assert_eq!(
        second.view(&id).await.unwrap().status,
        DeploymentStatus::Running
    );

    second.shutdown().await;
    let restarted = replica("same");
    assert_eq!(restarted.recover().await.unwrap().resumed, 1);
    assert!(restarted.maintain_leases().await.is_ok());

    // An engine asked to shut down before it recovered takes nothing from the one running.
    let stillborn = replica("same");
    stillborn.shutdown().await;
    assert!(matches!(
        stillborn.recover().await,
        Err(RuntimeError::ShuttingDown)
    ));
    assert!(restarted.maintain_leases().await.is_ok());

    // An older engine shut down in the ordinary way after a later one took the name, before
    // an upkeep round told it so (a rolling restart), leaves the leases to the later one.
    let later = replica("same");
    assert_eq!(later.recover().await.unwrap().resumed, 1);
    restarted.shutdown().await;
    assert_eq!(other.maintain_leases().await.unwrap().taken_over, 0);
    assert_eq!(later.maintain_leases().await.unwrap().renewed, 1);
    later.shutdown().await;
    other.shutdown().await;
}
