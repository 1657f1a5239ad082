//! Several engines sharing one in-memory store as replicas: exactly-once callbacks and host
//! steps whichever replica a callback reaches, and fail-over when a replica stops. The same
//! scenarios run on PostgreSQL from `tests/store_postgres.rs` (its `replicas` module).
#![cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "reqwest",
    feature = "receiver",
    feature = "test-util"
))]

mod replicas;
mod support;
mod two_calls;

use std::sync::Arc;

use hookgate::store::{DynStore, MemoryStore};

/// One webhook gate, whose call the recording transport answers at once.
const ONE_GATE: &str = r#"
application: one-gate
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;

/// Replicas `a` and `b` on `store` and one manual clock, recovered.
async fn replicas_on_a_manual_clock(
    store: &Arc<DynStore>,
) -> (
    hookgate::runtime::Engine,
    hookgate::runtime::Engine,
    hookgate::test_util::ManualClock,
) {
    use chrono::{TimeZone, Utc};
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
    use hookgate::test_util::{ManualClock, RecordingTransport};

    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
    let external = RecordingTransport::new();
    let replica = |name: &str| {
        Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(Arc::clone(store))
        .clock(clock.clone())
        .replica(ReplicaOptions::new(name))
        .build()
    };
    let (a, b) = (replica("a"), replica("b"));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    (a, b, clock)
}

/// Replicas with hour-long leases on one memory store, whose webhook calls a recording
/// transport answers at once: only a release at shutdown lets another replica in soon.
struct LongLeases {
    store: Arc<DynStore>,
    external: hookgate::test_util::RecordingTransport,
}

impl LongLeases {
    fn new() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            external: hookgate::test_util::RecordingTransport::new(),
        }
    }

    fn replica(&self, name: &str) -> hookgate::runtime::Engine {
        use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};

        let dispatcher = self.external.dispatcher("https://gates.example").unwrap();
        Engine::builder(dispatcher, SimulatedHost)
            .shared_store(Arc::clone(&self.store))
            .replica(ReplicaOptions::new(name).lease(std::time::Duration::from_secs(3600)))
            .build()
    }

    /// Starts [`ONE_GATE`] on `replica` (for `tenant`, if one is named) and waits until its
    /// gate waits for its callback; returns the deployment and the callback id its call
    /// carried.
    async fn waiting_gate(
        &self,
        replica: &hookgate::runtime::Engine,
        tenant: Option<&str>,
    ) -> (hookgate::core::DeploymentId, hookgate::core::CallbackId) {
        let context = std::collections::BTreeMap::new();
        let started = match tenant {
            Some(tenant) => replica.start_for_tenant(ONE_GATE, context, tenant).await,
            None => replica.start(ONE_GATE, context).await,
        };
        let id = started.unwrap().id;
        replicas::eventually(|| async {
            matches!(
                replica.view(&id).await.unwrap().gates[0].state,
                hookgate::core::GateState::AwaitingCallback { .. }
            )
        })
        .await;
        let uri = String::from_utf8(self.external.requests()[0].body.to_vec()).unwrap();
        (id, uri.rsplit('/').next().unwrap().parse().unwrap())
    }
}

/// A host that aborts its scheduler's task and starts another: the new loop still hears of
/// the other replicas' writes, and takes up at once the step another replica's callback left
/// for it (the hour-long leases keep upkeep from doing it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_still_hears_the_other_replicas_writes() {
    let l = LongLeases::new();
    let (a, b) = (l.replica("a"), l.replica("b"));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    // Polled once, which takes the notices, and dropped, as an aborted task's future is.
    let first = futures_util::FutureExt::now_or_never(a.run_scheduler());
    assert!(first.is_none(), "the scheduler runs until shutdown");
    let scheduler = tokio::spawn({
        let a = a.clone();
        async move { a.run_scheduler().await }
    });
    let (id, callback) = l.waiting_gate(&a, None).await;

    let passed = hookgate::server::CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let by = hookgate::auth::Principal::new("external");
    hookgate::server::GateService::callback(&b, callback, passed, &by)
        .await
        .unwrap();
    replicas::eventually(|| async {
        l.store.load(&id).await.unwrap().unwrap().status
            == hookgate::core::DeploymentStatus::Succeeded
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
    scheduler.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_apply_each_callback_once_and_run_each_step_once() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    replicas::two_replica_storm(store, 500).await;
}

#[tokio::test]
async fn a_second_engine_under_a_replicas_name_makes_the_first_shut_down() {
    replicas::a_second_engine_under_one_name(Arc::new(MemoryStore::new())).await;
}

/// An engine whose recovery failed under a running replica's name records nothing: the one
/// running keeps the name, and the deployments are not left to an engine that may exit.
#[tokio::test]
async fn a_failed_recovery_under_a_replicas_name_leaves_the_running_one_be() {
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let store: Arc<DynStore> = faulty.clone();
    let external = RecordingTransport::new();
    let replica = || {
        Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(Arc::clone(&store))
        .replica(ReplicaOptions::new("same").lease(std::time::Duration::from_secs(3600)))
        .build()
    };
    let live = replica();
    live.recover().await.unwrap();
    live.start(ONE_GATE, Default::default()).await.unwrap();
    let failing = replica();
    faulty.fail_loads(1);
    assert!(failing.recover().await.is_err());
    assert!(
        live.maintain_leases().await.is_ok(),
        "the live engine goes on"
    );
    assert!(!live.is_shut_down());
    live.shutdown().await;
}

/// A later engine that records itself under a replica's name just as the engine before it
/// gives its leases up at shutdown (a rolling restart) keeps them: the store looks for the
/// run recorded and releases in one step. Without a later engine, the same shutdown releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_engine_recorded_as_the_earlier_one_releases_keeps_the_leases() {
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let store: Arc<DynStore> = faulty.clone();
    let external = RecordingTransport::new();
    let replica = |name: &str| {
        Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            SimulatedHost,
        )
        .shared_store(Arc::clone(&store))
        .replica(ReplicaOptions::new(name).lease(std::time::Duration::from_secs(3600)))
        .build()
    };
    let earlier = replica("same");
    earlier.recover().await.unwrap();
    earlier.start(ONE_GATE, Default::default()).await.unwrap();
    faulty.record_run_before_release("a later run");
    earlier.shutdown().await;
    let other = replica("other");
    assert_eq!(other.recover().await.unwrap().resumed, 0, "still leased");
    assert_eq!(other.maintain_leases().await.unwrap().taken_over, 0);

    let later = replica("same");
    assert_eq!(later.recover().await.unwrap().resumed, 1);
    later.shutdown().await;
    assert_eq!(
        other.maintain_leases().await.unwrap().taken_over,
        1,
        "released by the run recorded last"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replicas_deployments_are_taken_over_after_its_leases_end() {
    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    replicas::failover(store).await;
}

/// A replica that shut down gives its leases up and refuses inputs (`503`, so the sender
/// retries); another replica takes its deployments over at once and applies the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_shut_down_refuses_inputs_and_another_takes_over_at_once() {
    use hookgate::auth::Principal;
    use hookgate::core::CallbackAck;
    use hookgate::server::{CallbackReport, GateError, GateService};

    let world = LongLeases::new();
    let a = world.replica("a");
    a.recover().await.unwrap();
    let (id, callback) = world.waiting_gate(&a, None).await;
    let outcome = || CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let by = Principal::new("external");

    a.shutdown().await;
    let refused = a.callback(callback, outcome(), &by).await;
    assert!(
        matches!(refused, Err(GateError::Unavailable(_))),
        "{refused:?}"
    );

    let b = world.replica("b");
    let recovered = b.recover().await.unwrap();
    assert_eq!(
        recovered.resumed, 1,
        "the released deployment is taken over at once"
    );
    assert_eq!(
        b.callback(callback, outcome(), &by).await.unwrap(),
        CallbackAck::Applied
    );
    let outcomes = replicas::wait_finished(
        &world.store,
        std::slice::from_ref(&id),
        std::time::Duration::from_secs(20),
    )
    .await;
    assert_eq!(outcomes[&id], hookgate::core::DeploymentStatus::Succeeded);
    b.shutdown().await;
}

/// A callback from another tenant's principal is refused before the replica it reaches takes
/// over the deployment it names: taking over would act on the deployment (resume it, ask again
/// for its calls) for a caller then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_callback_does_not_make_a_replica_take_the_deployment_over() {
    use hookgate::auth::Principal;
    use hookgate::server::{CallbackReport, GateError, GateService};
    use hookgate::store::Lease;

    let world = LongLeases::new();
    let a = world.replica("a");
    a.recover().await.unwrap();
    let (id, callback) = world.waiting_gate(&a, Some("payments")).await;
    a.shutdown().await;
    let calls = world.external.count();

    let b = world.replica("b");
    let refused = b
        .callback(
            callback,
            CallbackReport::Outcome {
                success: true,
                message: None,
            },
            &Principal::new("intruder").with_tenant("other"),
        )
        .await;
    assert!(
        matches!(refused, Err(GateError::Forbidden(_))),
        "{refused:?}"
    );
    assert_eq!(b.live_deployments(), 0, "b did not take it over");
    assert_eq!(
        world.external.count(),
        calls,
        "nor asked for its call again"
    );
    let lease = Lease::new("c", chrono::Utc::now(), std::time::Duration::from_secs(60));
    assert!(
        world.store.claim(&id, &lease).await.unwrap(),
        "its lease is free for whichever replica may drive it"
    );
    b.shutdown().await;
}

/// A deployment queued on one replica (`enqueueOne`) behind one another replica drives is
/// started by its own replica's upkeep once that one finished there: the replica it waits on
/// never hears of it.
#[tokio::test]
async fn a_deployment_queued_behind_another_replicas_starts_when_that_one_finishes() {
    use std::collections::BTreeMap;

    use chrono::TimeDelta;
    use hookgate::core::DeploymentStatus;

    let store: Arc<DynStore> = Arc::new(MemoryStore::new());
    let (a, b, clock) = replicas_on_a_manual_clock(&store).await;
    let file = r#"
application: queued
deploymentConfig: {ifDeploymentInProgress: {strategy: enqueueOne}}
targets:
  prod:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}]
"#;
    let running = a.start(file, BTreeMap::new()).await.unwrap();
    let queued = b.start(file, BTreeMap::new()).await.unwrap();
    assert_eq!(queued.status, DeploymentStatus::Queued);
    assert_eq!(
        b.maintain_leases().await.unwrap().queued_started,
        0,
        "a's still runs"
    );

    clock.advance(TimeDelta::minutes(2));
    a.fire_due().await;
    assert_eq!(
        a.view(&running.id).await.unwrap().status,
        DeploymentStatus::Succeeded
    );

    assert_eq!(b.maintain_leases().await.unwrap().queued_started, 1);
    assert_eq!(
        b.view(&queued.id).await.unwrap().status,
        DeploymentStatus::Running
    );
}

/// A round of lease upkeep under way when shutdown begins ends before the leases are given up:
/// otherwise it claims them again once released, and another replica cannot take the
/// deployment over until that lease ends.
#[tokio::test]
async fn shutdown_gives_the_leases_up_only_after_a_round_of_upkeep_under_way() {
    use std::collections::BTreeMap;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};
    use hookgate::store::{Lease, Store};
    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let store: Arc<DynStore> = faulty.clone();
    let external = RecordingTransport::new();
    let a = Engine::builder(
        external.dispatcher("https://gates.example").unwrap(),
        SimulatedHost,
    )
    .shared_store(Arc::clone(&store))
    .replica(ReplicaOptions::new("a").lease(std::time::Duration::from_secs(3600)))
    .build();
    a.recover().await.unwrap();
    let id = a.start(ONE_GATE, BTreeMap::new()).await.unwrap().id;

    faulty.slow_renews(true);
    let mut cx = Context::from_waker(Waker::noop());
    let mut round = pin!(a.maintain_leases());
    assert!(round.as_mut().poll(&mut cx).is_pending(), "renewing");
    let mut down = pin!(a.shutdown());
    assert!(
        matches!(down.as_mut().poll(&mut cx), Poll::Pending),
        "shutdown waits for the round"
    );
    round.await.unwrap();
    down.await;

    let b = Lease::new("b", a.now(), std::time::Duration::from_secs(3600));
    assert!(
        store.claim(&id, &b).await.unwrap(),
        "the lease was given up after the round, not taken again by it"
    );
}

/// `replica` recovered, and the deployment of [`ONE_GATE`] it then started.
async fn recovered_and_started(
    replica: &hookgate::runtime::Engine,
) -> hookgate::core::DeploymentId {
    replica.recover().await.unwrap();
    replica
        .start(ONE_GATE, std::collections::BTreeMap::new())
        .await
        .unwrap()
        .id
}

/// Replicas with minute-long leases on one faulty memory store and one manual clock, and a
/// way to leave deployments orphaned there.
struct Orphans {
    faulty: Arc<hookgate::test_util::FaultyStore>,
    store: Arc<DynStore>,
    clock: hookgate::test_util::ManualClock,
    external: hookgate::test_util::RecordingTransport,
}

impl Orphans {
    fn new() -> Self {
        use chrono::{TimeZone, Utc};
        use hookgate::test_util::{FaultyStore, ManualClock, RecordingTransport};

        let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
        Self {
            store: faulty.clone(),
            faulty,
            clock: ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()),
            external: RecordingTransport::new(),
        }
    }

    fn replica(&self, name: &str) -> hookgate::runtime::Engine {
        self.replica_with(name, hookgate::runtime::SimulatedHost)
    }

    /// [`Orphans::replica`], whose host steps `host` performs.
    fn replica_with(
        &self,
        name: &str,
        host: impl hookgate::runtime::Host,
    ) -> hookgate::runtime::Engine {
        let options =
            hookgate::runtime::ReplicaOptions::new(name).lease(std::time::Duration::from_secs(60));
        self.replica_of(options, host)
    }

    /// A replica with `options` on the store and clock, whose host steps `host` performs.
    fn replica_of(
        &self,
        options: hookgate::runtime::ReplicaOptions,
        host: impl hookgate::runtime::Host,
    ) -> hookgate::runtime::Engine {
        hookgate::runtime::Engine::builder(
            self.external.dispatcher("https://gates.example").unwrap(),
            host,
        )
        .shared_store(Arc::clone(&self.store))
        .clock(self.clock.clone())
        .replica(options)
        .build()
    }

    /// A deployment whose replica stopped without giving its lease up, once the lease ended.
    async fn orphan(&self) -> hookgate::core::DeploymentId {
        self.orphan_of(ONE_GATE).await
    }

    /// [`Orphans::orphan`], of the deployment file `plan`.
    async fn orphan_of(&self, plan: &str) -> hookgate::core::DeploymentId {
        let stopped = self.replica("stopped");
        stopped.recover().await.unwrap();
        let id = stopped
            .start(plan, std::collections::BTreeMap::new())
            .await
            .unwrap()
            .id;
        drop(stopped);
        self.clock.advance(chrono::TimeDelta::minutes(2));
        id
    }

    /// Passes, through `replica`, the gate whose call the external system got last.
    async fn pass_last_called_gate(&self, replica: &hookgate::runtime::Engine) {
        let ack = self.callback_to_last_called_gate(replica).await;
        assert!(ack.is_ok(), "{ack:?}");
    }

    /// The callback, through `replica`, that passes the gate whose call the external system
    /// got last.
    async fn callback_to_last_called_gate(
        &self,
        replica: &hookgate::runtime::Engine,
    ) -> Result<hookgate::core::CallbackAck, hookgate::server::GateError> {
        use hookgate::auth::Principal;
        use hookgate::server::{CallbackReport, GateService};

        let uri =
            String::from_utf8(self.external.requests().last().unwrap().body.to_vec()).unwrap();
        let callback = uri.rsplit('/').next().unwrap().parse().unwrap();
        let report = CallbackReport::Outcome {
            success: true,
            message: None,
        };
        GateService::callback(replica, callback, report, &Principal::new("external")).await
    }

    /// Whether another replica could claim `id` now: nobody holds it.
    async fn unclaimed(&self, id: &hookgate::core::DeploymentId) -> bool {
        use hookgate::store::{Lease, Store};

        let lease = Lease::new(
            "another",
            hookgate::clock::Clock::now(&self.clock),
            std::time::Duration::from_secs(60),
        );
        self.store.claim(id, &lease).await.unwrap()
    }
}

/// A lease set shorter than `ReplicaOptions::MIN_LEASE` lasts that long: a zero lease would end
/// as it is taken, and another replica take the deployment over while this one drives it.
#[tokio::test]
async fn a_zero_lease_lasts_the_shortest_lease() {
    use hookgate::runtime::{ReplicaOptions, SimulatedHost};

    let o = Orphans::new();
    let a = o.replica_of(
        ReplicaOptions::new("a").lease(std::time::Duration::ZERO),
        SimulatedHost,
    );
    let id = recovered_and_started(&a).await;
    o.clock.advance(chrono::TimeDelta::milliseconds(900));
    assert!(!o.unclaimed(&id).await, "held for the shortest lease");
    o.clock.advance(chrono::TimeDelta::milliseconds(200));
    assert!(o.unclaimed(&id).await, "and no longer");
}

/// A decision for a gate that can never take one (one the plan does not have, a webhook gate),
/// on a deployment another replica left, is refused without taking the deployment over:
/// taking it up would claim its lease and ask again for its call, which a refused request must
/// not make happen.
#[tokio::test]
async fn a_decision_no_gate_could_take_does_not_take_an_orphan_over() {
    use hookgate::auth::Principal;
    use hookgate::config::GateId;
    use hookgate::core::{CoreError, Decision};
    use hookgate::server::{GateError, GateService};

    let o = Orphans::new();
    let id = o.orphan().await;
    let a = o.replica("a");
    let calls = o.external.count();
    for (gate, refused) in [
        (u32::MAX, CoreError::UnknownGate(GateId(u32::MAX))),
        (0, CoreError::NotAwaitingDecision(GateId(0))),
    ] {
        let decided = GateService::decide(
            &a,
            &id,
            GateId(gate),
            Decision::approve("someone", Vec::<String>::new()),
            &Principal::new("approver"),
        )
        .await;
        assert!(
            matches!(&decided, Err(GateError::Core(e)) if *e == refused),
            "{decided:?}"
        );
    }
    assert_eq!(a.live_deployments(), 0, "not taken up");
    assert_eq!(o.external.count(), calls, "its call not asked for again");
    assert!(o.unclaimed(&id).await, "its lease not claimed");
}

/// A callback to a gate that takes none (its webhook has `disableCallback`), on a deployment
/// another replica left, is refused as the core refuses it, without taking the deployment over;
/// once a callback the deployment takes has taken it up, the same callback gets the same answer.
#[tokio::test]
async fn a_callback_the_deployment_refuses_does_not_take_an_orphan_over() {
    use hookgate::auth::Principal;
    use hookgate::core::CallbackId;
    use hookgate::server::{CallbackReport, GateError, GateService};

    const QUICK_AND_SLOW: &str = r#"
application: two-gates
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: quick}
        - runWebhook: {name: slow}
webhooks:
  - name: quick
    uriTemplate: https://quick.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
    disableCallback: true
  - name: slow
    uriTemplate: https://slow.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;
    let o = Orphans::new();
    let id = o.orphan_of(QUICK_AND_SLOW).await;
    let callback_of = |host: &str| -> CallbackId {
        let requests = o.external.requests();
        let call = requests
            .iter()
            .find(|r| r.uri.host() == Some(host))
            .expect("the gate was called");
        let uri = String::from_utf8(call.body.to_vec()).unwrap();
        uri.rsplit('/').next().unwrap().parse().unwrap()
    };
    let (quick, slow) = (callback_of("quick.example"), callback_of("slow.example"));
    let a = o.replica("a");
    let calls = o.external.count();
    let by = Principal::new("external");
    let report = || CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let refused = GateService::callback(&a, quick, report(), &by).await;
    let Err(GateError::Core(refused)) = refused else {
        panic!("a gate without callbacks takes none: {refused:?}")
    };
    assert_eq!(a.live_deployments(), 0, "not taken up");
    assert_eq!(o.external.count(), calls, "its calls not asked for again");
    assert!(o.unclaimed(&id).await, "its lease not claimed");

    // The lease `unclaimed` took lapses.
    o.clock.advance(chrono::TimeDelta::minutes(2));
    GateService::callback(&a, slow, report(), &by)
        .await
        .unwrap();
    let taken_up = GateService::callback(&a, quick, report(), &by).await;
    assert!(
        matches!(&taken_up, Err(GateError::Core(e)) if *e == refused),
        "{taken_up:?} against {refused:?}"
    );
}

/// A decision by someone holding none of an approval's `requiresRoles`, which that gate refuses
/// whatever its state, on a deployment another replica left, is refused without taking the
/// deployment over; one holding a role is applied.
#[tokio::test]
async fn a_decision_lacking_the_approvals_roles_does_not_take_an_orphan_over() {
    use hookgate::auth::Principal;
    use hookgate::config::GateId;
    use hookgate::core::{CoreError, Decision};
    use hookgate::server::{GateError, GateService};

    const ROLE_GATED: &str = "application: g\ntargets: {prod: {constraints: {beforeDeployment: [pause: {untilApproved: true, requiresRoles: [release-manager]}]}}}";
    let o = Orphans::new();
    let id = o.orphan_of(ROLE_GATED).await;
    let a = o.replica("a");
    let approver = Principal::new("approver");
    let decide = |roles: &[&str]| {
        GateService::decide(
            &a,
            &id,
            GateId(0),
            Decision::approve("someone", roles.to_vec()),
            &approver,
        )
    };
    let decided = decide(&["developer"]).await;
    assert!(
        matches!(&decided, Err(GateError::Core(CoreError::MissingRole { required })) if required == &["release-manager"]),
        "{decided:?}"
    );
    assert_eq!(a.live_deployments(), 0, "not taken up");
    assert!(o.unclaimed(&id).await, "its lease not claimed");

    decide(&["developer", "release-manager"]).await.unwrap();
    let view = a.view(&id).await.unwrap();
    assert!(
        matches!(
            view.gates[0].state,
            hookgate::core::GateState::Passed(hookgate::core::Resolution::Approved)
        ),
        "{:?}",
        view.gates[0].state
    );
}

/// A replica's `recover` still under way when shutdown begins claims no orphan after it: the
/// leases shutdown gave up stay given up, rather than be held by the stopped replica until
/// they end.
#[tokio::test]
async fn a_recovery_racing_shutdown_claims_nothing_after_it() {
    use std::pin::pin;

    use hookgate::runtime::RuntimeError;

    let o = Orphans::new();
    let id = o.orphan().await;
    let a = o.replica("a");
    o.faulty.slow_renews(true);
    let mut recovery = pin!(a.recover());
    assert!(
        futures_util::poll!(recovery.as_mut()).is_pending(),
        "renewing"
    );
    a.shutdown().await;
    let recovered = recovery.await;
    assert!(
        matches!(recovered, Err(RuntimeError::ShuttingDown)),
        "{recovered:?}"
    );
    assert!(
        o.unclaimed(&id).await,
        "the stopped replica claimed nothing"
    );
}

/// An input that takes a deployment over from a stopped replica, and whose claim is under way
/// when shutdown begins, is waited for: the leases are given up after its claim, not before it
/// (which left the claim holding the lease for the stopped replica until it ended).
#[tokio::test]
async fn a_claim_under_way_when_shutdown_begins_is_given_up_after_it() {
    use std::pin::pin;
    use std::task::{Context, Waker};

    let o = Orphans::new();
    let a = o.replica("a");
    a.recover().await.unwrap();
    let id = o.orphan().await;
    o.faulty.slow_claims(true);
    let mut cx = Context::from_waker(Waker::noop());
    let mut cancel = pin!(a.cancel(&id, "operator"));
    assert!(cancel.as_mut().poll(&mut cx).is_pending(), "claiming");
    let mut down = pin!(a.shutdown());
    assert!(
        down.as_mut().poll(&mut cx).is_pending(),
        "shutdown waits for the claim"
    );
    let _ = cancel.await;
    down.await;
    assert!(
        o.unclaimed(&id).await,
        "the lease was given up after the claim"
    );
}

/// Replica `a` with hour-long leases on `faulty`, its calls recorded by `external`, recovered.
async fn hour_lease_replica(
    faulty: &Arc<hookgate::test_util::FaultyStore>,
    external: &hookgate::test_util::RecordingTransport,
) -> hookgate::runtime::Engine {
    recovered_replica(faulty, external, std::time::Duration::from_secs(3600)).await
}

/// Replica "a" over `faulty`, with leases of `lease`, its calls answered by `external`,
/// recovered.
async fn recovered_replica(
    faulty: &Arc<hookgate::test_util::FaultyStore>,
    external: &hookgate::test_util::RecordingTransport,
    lease: std::time::Duration,
) -> hookgate::runtime::Engine {
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};

    let a = Engine::builder(
        external.dispatcher("https://gates.example").unwrap(),
        SimulatedHost,
    )
    .shared_store(faulty.clone())
    .replica(ReplicaOptions::new("a").lease(lease))
    .build();
    a.recover().await.unwrap();
    a
}

/// A deployment that started after a round of upkeep read the leases, and whose claim in that
/// round then failed on a store error, is still this replica's: a failed claim tells nothing,
/// and letting go would have the next round resume it, asking again for work under way.
#[tokio::test]
async fn a_claim_that_fails_on_a_store_error_does_not_let_the_deployment_go() {
    use std::collections::BTreeMap;
    use std::pin::pin;

    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let external = RecordingTransport::new();
    let a = hour_lease_replica(&faulty, &external).await;

    faulty.late_renew_answers(true);
    let mut round = pin!(a.maintain_leases());
    assert!(
        futures_util::poll!(round.as_mut()).is_pending(),
        "the round has read the leases"
    );
    a.start(ONE_GATE, BTreeMap::new()).await.unwrap();
    let calls = external.count();
    faulty.fail_claims(1);
    let upkeep = round.await.unwrap();

    assert_eq!(upkeep.lost, 0);
    assert_eq!(a.live_deployments(), 1, "still driven here");
    faulty.late_renew_answers(false);
    a.maintain_leases().await.unwrap();
    assert_eq!(external.count(), calls, "its call was not asked for again");
    a.shutdown().await;
}

/// A round of lease upkeep between a start's create and its start putting the deployment in
/// memory finds the new lease this replica's and the deployment not in memory: it leaves it to
/// the start, rather than resume it and perform its first call, whose events would then reach
/// subscribers before the start's own.
#[tokio::test]
async fn upkeep_leaves_a_deployment_being_started_to_its_start() {
    use std::collections::BTreeMap;
    use std::pin::pin;

    use hookgate::core::EventKind;
    use hookgate::runtime::EngineEvent;
    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let external = RecordingTransport::new();
    let a = hour_lease_replica(&faulty, &external).await;
    let mut events = a.subscribe();

    faulty.late_create_answers(true);
    let mut start = pin!(a.start(ONE_GATE, BTreeMap::new()));
    assert!(
        futures_util::poll!(start.as_mut()).is_pending(),
        "the deployment is stored, its create not yet answered"
    );
    let upkeep = a.maintain_leases().await.unwrap();
    assert_eq!(upkeep.renewed, 1, "its lease is this replica's");
    assert_eq!(external.count(), 0, "the upkeep performed nothing of it");
    let id = start.await.unwrap().id;

    assert_eq!(external.count(), 1, "the start performed its call");
    let mut kinds = Vec::new();
    while let Ok(EngineEvent::Deployment { id: of, event }) = events.try_recv() {
        assert_eq!(of, id);
        kinds.push(event.kind);
    }
    assert!(
        matches!(kinds.first(), Some(EventKind::DeploymentStarted)),
        "the start's events come first: {kinds:?}"
    );
    a.shutdown().await;
}

/// Two replicas starting the same application at the same moment: both find none of it
/// running, and the store, which checks again as it writes, lets one start it. The other's
/// start follows `ifDeploymentInProgress`: refused by default, queued with `enqueueOne` and
/// started by its replica's upkeep once the first one finished.
#[tokio::test]
async fn two_replicas_starting_one_application_at_once_start_it_once() {
    use std::collections::BTreeMap;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use chrono::TimeDelta;
    use hookgate::core::DeploymentStatus;
    use hookgate::runtime::{RuntimeError, Started};
    use hookgate::store::Store;
    use hookgate::test_util::FaultyStore;

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let store: Arc<DynStore> = faulty.clone();
    let (a, b, clock) = replicas_on_a_manual_clock(&store).await;
    // Each create waits once, so that both starts have looked for a running deployment, and
    // found none, before either is stored.
    faulty.slow_creates(true);
    let both = |file: String| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let mut cx = Context::from_waker(Waker::noop());
            let (mut first, mut second) = (
                pin!(a.start(&file, BTreeMap::new())),
                pin!(b.start(&file, BTreeMap::new())),
            );
            assert!(first.as_mut().poll(&mut cx).is_pending());
            assert!(second.as_mut().poll(&mut cx).is_pending());
            (first.await, second.await)
        }
    };
    let winner =
        |results: &(Result<Started, RuntimeError>, Result<Started, RuntimeError>)| match results {
            (Ok(won), _) if won.status == DeploymentStatus::Running => won.id.clone(),
            (_, Ok(won)) if won.status == DeploymentStatus::Running => won.id.clone(),
            other => panic!("one start runs: {other:?}"),
        };

    let refused = r#"
application: once
targets:
  prod:
    constraints:
      beforeDeployment: [pause: {duration: 1, unit: minutes}]
"#;
    let results = both(refused.to_owned()).await;
    let running = winner(&results);
    let other = match &results {
        (Ok(s), other) | (other, Ok(s)) if s.id == running => other,
        _ => unreachable!(),
    };
    assert!(
        matches!(other, Err(RuntimeError::InProgress { running: r, .. }) if *r == running),
        "{other:?}"
    );
    assert_eq!(
        store.running_for_application("once").await.unwrap(),
        [running]
    );

    let queued = refused.replace(
        "application: once",
        "application: queued\ndeploymentConfig: {ifDeploymentInProgress: {strategy: enqueueOne}}",
    );
    let results = both(queued).await;
    let running = winner(&results);
    let waiting = match &results {
        (Ok(s), Ok(w)) | (Ok(w), Ok(s)) if s.id == running => w.clone(),
        other => panic!("the other is queued: {other:?}"),
    };
    assert_eq!(waiting.status, DeploymentStatus::Queued);
    assert_eq!(
        store.running_for_application("queued").await.unwrap().len(),
        1
    );

    clock.advance(TimeDelta::minutes(2));
    a.fire_due().await;
    b.fire_due().await;
    let started = a.maintain_leases().await.unwrap().queued_started
        + b.maintain_leases().await.unwrap().queued_started;
    assert_eq!(started, 1, "the queued one starts once the first finished");
    assert_eq!(
        store.running_for_application("queued").await.unwrap(),
        [waiting.id]
    );

    // The caller of the start that loses goes away before it learns so: the deployment is
    // queued all the same.
    let dropped = refused.replace(
        "application: once",
        "application: dropped\ndeploymentConfig: {ifDeploymentInProgress: {strategy: enqueueOne}}",
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut first = pin!(a.start(&dropped, BTreeMap::new()));
    {
        let mut second = pin!(b.start(&dropped, BTreeMap::new()));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(first.await.unwrap().status, DeploymentStatus::Running);
    // The abandoned start goes on in a task, which these yields let run: it finds the first
    // one stored, and queues itself.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    clock.advance(TimeDelta::minutes(2));
    a.fire_due().await;
    assert_eq!(
        b.maintain_leases().await.unwrap().queued_started,
        1,
        "the dropped start was queued, and starts once the first finished"
    );
}

/// An owner whose write was stored but answered with a failure, and whose look at the row
/// failed too, reloads the deployment after another replica wrote over it. The steps that
/// replica left pending for the owner are among the work in flight the owner asks for again:
/// dropped first, each step is run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsure_owner_reloading_another_replicas_write_runs_each_step_once() {
    use std::collections::BTreeMap;

    use hookgate::auth::Principal;
    use hookgate::core::{CallbackAck, CallbackId, DeploymentStatus};
    use hookgate::runtime::{Engine, ReplicaOptions};
    use hookgate::server::{CallbackReport, GateService};
    use hookgate::test_util::{FaultyStore, RecordingTransport};

    const TWO_GATES: &str = r#"
application: two-gates
targets:
  x: {constraints: {beforeDeployment: [runWebhook: {name: gate}]}}
  y: {constraints: {beforeDeployment: [runWebhook: {name: gate}]}}
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.environmentName}} {{armory.callbackUri}}'}
"#;
    let store: Arc<FaultyStore> = Arc::new(FaultyStore::default());
    let shared: Arc<DynStore> = store.clone();
    let external = RecordingTransport::new();
    let host = replicas::CountingHost::default();
    let replica = |name: &str| {
        Engine::builder(
            external.dispatcher("https://gates.example").unwrap(),
            host.clone(),
        )
        .shared_store(Arc::clone(&shared))
        .replica(ReplicaOptions::new(name).lease(std::time::Duration::from_secs(3600)))
        .build()
    };
    let (a, b) = (replica("a"), replica("b"));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    let id = a.start(TWO_GATES, BTreeMap::new()).await.unwrap().id;
    replicas::eventually(|| async { external.count() == 2 }).await;
    let gate_of = |env: &str| -> CallbackId {
        let body = external
            .requests()
            .iter()
            .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
            .find(|b| b.starts_with(&format!("{env} ")))
            .unwrap();
        body.rsplit('/').next().unwrap().parse().unwrap()
    };
    let passed = || CallbackReport::Outcome {
        success: true,
        message: None,
    };
    let by = Principal::new("external");

    store.lose_save_answers(1);
    store.fail_loads(1);
    assert!(
        a.callback(gate_of("x"), passed(), &by).await.is_err(),
        "x's write is stored, but its owner cannot tell"
    );
    assert_eq!(
        b.callback(gate_of("y"), passed(), &by).await.unwrap(),
        CallbackAck::Applied,
        "y's step is left pending in the store for the owner"
    );
    assert!(host.runs().is_empty());

    let scheduler = tokio::spawn({
        let a = a.clone();
        async move { a.run_scheduler().await }
    });
    let outcomes = replicas::wait_finished(
        &shared,
        std::slice::from_ref(&id),
        std::time::Duration::from_secs(20),
    )
    .await;
    assert_eq!(outcomes[&id], DeploymentStatus::Succeeded);
    let mut steps: Vec<_> = host
        .runs()
        .into_iter()
        .map(|((_, env, _), runs)| (env, runs))
        .collect();
    steps.sort();
    assert_eq!(
        steps,
        [("x".to_owned(), 1), ("y".to_owned(), 1)],
        "one step each"
    );

    a.shutdown().await;
    b.shutdown().await;
    scheduler.await.unwrap();
}

/// A host that never answers: its steps stay in flight until the engine stops.
struct SilentHost;

#[async_trait::async_trait]
impl hookgate::runtime::Host for SilentHost {
    async fn run_step(
        &self,
        _: &hookgate::runtime::StepContext,
        _: &hookgate::core::HostStep,
    ) -> hookgate::core::StepOutcome {
        std::future::pending().await
    }

    async fn roll_back(&self, _: &hookgate::runtime::StepContext) -> hookgate::core::StepOutcome {
        std::future::pending().await
    }
}

/// A replica whose `takeover_batch` field was set to zero still takes orphans over in its
/// upkeep rounds, a deployment at a time, as its recovery does.
#[tokio::test]
async fn upkeep_with_a_zero_takeover_batch_still_takes_orphans_over() {
    use hookgate::runtime::{Engine, ReplicaOptions, SimulatedHost};

    let o = Orphans::new();
    let mut options = ReplicaOptions::new("a").lease(std::time::Duration::from_secs(60));
    options.takeover_batch = 0;
    let a = Engine::builder(
        o.external.dispatcher("https://gates.example").unwrap(),
        SimulatedHost,
    )
    .shared_store(Arc::clone(&o.store))
    .clock(o.clock.clone())
    .replica(options)
    .build();
    a.recover().await.unwrap();
    let id = o.orphan().await;

    let upkeep = a.maintain_leases().await.unwrap();
    assert_eq!(upkeep.taken_over, 1, "{upkeep:?}");
    assert!(!o.unclaimed(&id).await, "held by `a`");
}

/// A replica whose lease lapsed while another took its deployment over, moved it on and gave
/// it up with a step in flight, claims it back without knowing of that step: it resumes the
/// deployment from the store, which asks for the step again, rather than go on with its own
/// copy, where nothing would.
#[tokio::test]
async fn a_lease_taken_back_after_another_replica_held_it_asks_again_for_its_work() {
    use hookgate::core::DeploymentStatus;

    let o = Orphans::new();
    let a = o.replica("a");
    let id = recovered_and_started(&a).await;
    o.clock.advance(chrono::TimeDelta::minutes(2));

    let b = o.replica_with("b", SilentHost);
    b.recover().await.unwrap();
    o.pass_last_called_gate(&b).await;
    b.shutdown().await;

    let upkeep = a.maintain_leases().await.unwrap();
    assert_eq!(upkeep.taken_over, 1, "{upkeep:?}");
    replicas::eventually(|| async {
        a.view(&id).await.unwrap().status == DeploymentStatus::Succeeded
    })
    .await;
}

/// A replica whose lease lapsed, before it learns so, applies a callback and starts the step it
/// leads to, then stops with the step unfinished. The replica that took the deployment over
/// takes that write up and asks for the step again, rather than leave it in flight for good:
/// nobody else would, since the write left it no pending action and it holds the lease.
#[tokio::test]
async fn a_step_a_lapsed_replica_started_is_asked_for_again_by_the_holder() {
    use hookgate::core::DeploymentStatus;

    let o = Orphans::new();
    let a = o.replica_with("a", SilentHost);
    let id = recovered_and_started(&a).await;
    o.clock.advance(chrono::TimeDelta::minutes(2));
    let b = o.replica("b");
    assert_eq!(b.recover().await.unwrap().resumed, 1, "b takes it over");

    o.pass_last_called_gate(&a).await;
    a.shutdown().await;

    b.maintain_leases().await.unwrap();
    replicas::eventually(|| async {
        b.view(&id).await.unwrap().status == DeploymentStatus::Succeeded
    })
    .await;
}

/// An upkeep round dropped while it stores a deployment another replica moved on (a timeout
/// around it) still carries that write to its end: the actions the other replica left for the
/// owner, taken out of the deployment for the write, are performed rather than lost, which
/// left the deployment waiting for good.
#[tokio::test]
async fn an_upkeep_round_dropped_while_taking_up_another_replicas_change_still_finishes_it() {
    use std::pin::pin;

    use hookgate::core::DeploymentStatus;

    let o = Orphans::new();
    let (a, b) = (o.replica("a"), o.replica("b"));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    let id = a
        .start(ONE_GATE, std::collections::BTreeMap::new())
        .await
        .unwrap()
        .id;
    // Stored by the replica that does not drive it, with the deploy step left for the owner.
    o.pass_last_called_gate(&b).await;

    o.faulty.slow_saves(true);
    {
        let mut round = pin!(a.maintain_leases());
        assert!(
            futures_util::poll!(round.as_mut()).is_pending(),
            "the round's write of the change waits"
        );
    }
    o.faulty.slow_saves(false);
    replicas::eventually(|| async {
        a.view(&id).await.unwrap().status == DeploymentStatus::Succeeded
    })
    .await;
}

/// An upkeep round that claims an orphan, whose row another replica writes between the claim's
/// read and the resumption: resuming that out-of-date row asks for nothing (its write fails on
/// the version), and the next round resumes the deployment from its current row, asking once
/// for the call in flight there.
#[tokio::test]
async fn an_orphan_written_again_after_its_claim_read_it_is_resumed_from_its_current_row() {
    use hookgate::auth::Principal;
    use hookgate::server::{CallbackReport, GateService};
    use hookgate::store::{Lease, Store};

    let o = Orphans::new();
    let a = o.replica("a");
    a.recover().await.unwrap();
    let c = o.replica("c");
    c.recover().await.unwrap();

    // Stored by a replica that stopped: `first`'s call sent, `second`'s in flight.
    let now = hookgate::clock::Clock::now(&o.clock);
    let (d, first, second) = two_calls::stored(&*o.store, now, false).await;
    let stopped = Lease::new("stopped", now, std::time::Duration::from_secs(60));
    assert!(o.store.claim(d.id(), &stopped).await.unwrap());
    o.clock.advance(chrono::TimeDelta::minutes(2));
    let sent_for_second = || two_calls::sent_for(&o.external, &second);

    o.faulty.late_list_answers(true);
    let mut round = std::pin::pin!(a.maintain_leases());
    assert!(
        futures_util::poll!(round.as_mut()).is_pending(),
        "the claim has read the row and not answered yet"
    );
    // `c`, not the holder, records a progress note for `first` in the store meanwhile.
    let note = CallbackReport::Progress {
        message: "half way".into(),
    };
    GateService::callback(&c, first.callback_id, note, &Principal::new("ci"))
        .await
        .expect("recorded");
    let upkeep = round.await.unwrap();
    assert_eq!(upkeep.taken_over, 0, "{upkeep:?}");
    assert_eq!(
        sent_for_second(),
        0,
        "nothing asked for from the out-of-date row"
    );
    assert_eq!(a.live_deployments(), 0);

    o.faulty.late_list_answers(false);
    a.maintain_leases().await.unwrap();
    assert_eq!(sent_for_second(), 1, "asked for once, from the current row");
    assert_eq!(a.live_deployments(), 1);
    assert!(!o.unclaimed(d.id()).await, "held by `a`");
}

/// A replica's write of a callback is stored but answered with a failure, and its look at the
/// row fails too: it puts the deployment back as it was, asks for nothing, and answers the
/// sender that the store is unavailable. It stops before it learns more. The replica that takes
/// the deployment over resumes it from the row, where the callback is applied, and asks for
/// the deploy step that write led to; the sender's retry finds the callback applied.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_taken_over_with_its_work_asked_for_again() {
    let o = Orphans::new();
    let host = replicas::CountingHost::default();
    let a = o.replica_with("a", host.clone());
    let id = recovered_and_started(&a).await;
    let before = stored_version(&o, &id).await;

    o.faulty.lose_save_answers(1);
    o.faulty.fail_loads(1);
    let ack = o.callback_to_last_called_gate(&a).await;
    assert!(
        matches!(ack, Err(hookgate::server::GateError::Unavailable(_))),
        "{ack:?}"
    );
    assert_eq!(
        stored_version(&o, &id).await,
        before + 1,
        "the callback's write is stored"
    );
    assert!(host.runs().is_empty(), "a asks for no step");
    drop(a);
    o.clock.advance(chrono::TimeDelta::minutes(2));

    let b = o.replica_with("b", host.clone());
    assert_eq!(b.recover().await.unwrap().resumed, 1, "b takes it over");
    finishes_on(&b, &id).await;
    assert_eq!(host.runs().into_values().collect::<Vec<_>>(), [1]);
    let retry = o.callback_to_last_called_gate(&b).await;
    assert_eq!(retry.unwrap(), hookgate::core::CallbackAck::Duplicate);
}

/// As above, but the replica whose write lost its answer goes on running: its lease lapses
/// before it looks at the row again, and another replica takes the deployment over and
/// finishes it. The first replica's next round of upkeep finds the lease gone and lets its
/// copy go, with the look it had due a second after the failure: the deploy step is performed
/// once, by the holder, and the first replica's view is the store's.
#[tokio::test]
async fn a_replica_unsure_of_a_write_lets_it_go_to_the_replica_that_took_it_over() {
    let o = Orphans::new();
    let host = replicas::CountingHost::default();
    let a = o.replica_with("a", host.clone());
    let id = recovered_and_started(&a).await;

    o.faulty.lose_save_answers(1);
    o.faulty.fail_loads(1);
    assert!(o.callback_to_last_called_gate(&a).await.is_err());
    o.clock.advance(chrono::TimeDelta::minutes(2));

    let b = o.replica_with("b", host.clone());
    assert_eq!(b.recover().await.unwrap().resumed, 1, "b takes it over");
    finishes_on(&b, &id).await;

    let upkeep = a.maintain_leases().await.unwrap();
    assert_eq!(upkeep.lost, 1, "{upkeep:?}");
    assert_eq!(a.live_deployments(), 0, "a's copy is let go");
    o.clock.advance(chrono::TimeDelta::seconds(2));
    a.fire_due().await;
    assert_eq!(
        host.runs().into_values().collect::<Vec<_>>(),
        [1],
        "the deploy step runs once"
    );
    assert_eq!(
        a.view(&id).await.unwrap().status,
        hookgate::core::DeploymentStatus::Succeeded
    );
}

/// The version of `id`'s row, read past the store's faults.
async fn stored_version(o: &Orphans, id: &hookgate::core::DeploymentId) -> u64 {
    use hookgate::store::Store;

    o.faulty.inner().load(id).await.unwrap().unwrap().version
}

/// Waits until `replica` sees `id` succeeded.
async fn finishes_on(replica: &hookgate::runtime::Engine, id: &hookgate::core::DeploymentId) {
    replicas::eventually(|| async {
        replica.view(id).await.unwrap().status == hookgate::core::DeploymentStatus::Succeeded
    })
    .await;
}

/// A host that takes `step` of the clock to take each step on and then never answers, and
/// before each looks, as replica `b`, for deployments whose lease has ended: what another
/// replica's upkeep would take over at that moment.
#[derive(Clone)]
struct SlowToTakeOn {
    clock: hookgate::test_util::ManualClock,
    step: chrono::TimeDelta,
    store: Arc<DynStore>,
    taken_by_b: Arc<std::sync::Mutex<Vec<hookgate::core::DeploymentId>>>,
}

impl SlowToTakeOn {
    fn new(o: &Orphans, step: chrono::TimeDelta) -> Self {
        Self {
            clock: o.clock.clone(),
            step,
            store: Arc::clone(&o.store),
            taken_by_b: Arc::default(),
        }
    }

    fn taken_by_b(&self) -> usize {
        self.taken_by_b.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl hookgate::runtime::Host for SlowToTakeOn {
    async fn run_step(
        &self,
        _: &hookgate::runtime::StepContext,
        _: &hookgate::core::HostStep,
    ) -> hookgate::core::StepOutcome {
        use hookgate::clock::Clock;
        use hookgate::store::Lease;

        let b = Lease::new("b", self.clock.now(), std::time::Duration::from_secs(60));
        let taken = self.store.claim_orphans(&b, 100).await.unwrap();
        self.taken_by_b
            .lock()
            .unwrap()
            .extend(taken.deployments.into_iter().map(|stored| stored.id));
        self.clock.advance(self.step);
        std::future::pending().await
    }

    async fn roll_back(&self, _: &hookgate::runtime::StepContext) -> hookgate::core::StepOutcome {
        std::future::pending().await
    }
}

/// Twenty deployments of a replica that stopped, each with its deploy step in flight, once its
/// lease (a minute) ended.
async fn twenty_orphans_taking_steps(o: &Orphans) {
    let stopped = o.replica_with("stopped", SilentHost);
    stopped.recover().await.unwrap();
    for i in 0..20 {
        let plan = format!("application: app-{i}\ntargets: {{prod: {{}}}}\n");
        stopped
            .start(&plan, std::collections::BTreeMap::new())
            .await
            .unwrap();
    }
    drop(stopped);
    o.clock.advance(chrono::TimeDelta::minutes(2));
}

/// Deployments an upkeep round takes over keep their leases while it resumes them one after
/// another, however long that takes: each resumption here asks again for a deploy step, which
/// the host takes a tenth of the lease to take on, so the twenty take two leases' time. Another
/// replica looking for ended leases meanwhile finds none of them.
#[tokio::test]
async fn leases_taken_over_in_a_round_are_renewed_while_it_resumes_them() {
    let o = Orphans::new();
    let host = SlowToTakeOn::new(&o, chrono::TimeDelta::seconds(6));
    let a = o.replica_with("a", host.clone());
    a.recover().await.unwrap();
    twenty_orphans_taking_steps(&o).await;

    let upkeep = a.maintain_leases().await.unwrap();
    assert_eq!(upkeep.taken_over, 20, "{upkeep:?}");
    assert_eq!(host.taken_by_b(), 0, "b took deployments a was driving");
}

/// The same for a recovery, which takes the orphans over in batches.
#[tokio::test]
async fn leases_taken_over_in_a_recovery_are_renewed_while_it_resumes_them() {
    let o = Orphans::new();
    let host = SlowToTakeOn::new(&o, chrono::TimeDelta::seconds(6));
    twenty_orphans_taking_steps(&o).await;

    let a = o.replica_with("a", host.clone());
    assert_eq!(a.recover().await.unwrap().resumed, 20);
    assert_eq!(host.taken_by_b(), 0, "b took deployments a was driving");
}

/// A deployment whose create took longer than a lease (a slow store) has its lease renewed
/// before it is driven: another replica looking for ended leases right after finds nothing.
#[tokio::test]
async fn a_deployment_whose_create_outlasted_its_lease_is_not_taken_over() {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use hookgate::store::Lease;

    let o = Orphans::new();
    let a = o.replica("a");
    a.recover().await.unwrap();
    o.faulty.slow_creates(true);
    let mut start = pin!(a.start(ONE_GATE, std::collections::BTreeMap::new()));
    assert!(
        start
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending(),
        "creating"
    );
    o.clock.advance(chrono::TimeDelta::minutes(2));
    let id = start.await.unwrap().id;

    let b = Lease::new("b", a.now(), std::time::Duration::from_secs(60));
    let taken = o.store.claim_orphans(&b, 100).await.unwrap();
    assert!(taken.deployments.is_empty(), "b took {id} over");
}

/// A replica keeps a deploy step's result whose write failed; before its deadline, another
/// replica stores a callback from its own copy. The owner's upkeep takes that change up with
/// the kept result recorded into it: both environments deploy, and the step whose result was
/// kept is not asked for again.
#[tokio::test]
async fn a_result_kept_after_a_failed_write_is_recorded_with_another_replicas_change() {
    use hookgate::core::{DeploymentStatus, StepOutcome};
    use hookgate::test_util::ScriptedHost;

    const TWO_TARGETS: &str = r#"
application: kept
targets:
  staging: {}
  prod:
    constraints:
      beforeDeployment: [runWebhook: {name: gate}]
webhooks:
  - name: gate
    uriTemplate: https://external.example/run
    bodyTemplate: {inline: '{{armory.callbackUri}}'}
"#;
    let o = Orphans::new();
    let host = ScriptedHost::new();
    let (a, b) = (o.replica_with("a", host.clone()), o.replica("b"));
    a.recover().await.unwrap();
    b.recover().await.unwrap();
    let id = a
        .start(TWO_TARGETS, std::collections::BTreeMap::new())
        .await
        .unwrap()
        .id;
    let asked = |env: &str| {
        host.waiting()
            .iter()
            .filter(|s| s.context.environment() == env)
            .count()
    };
    assert_eq!(asked("staging"), 1, "staging deploys at once");

    o.faulty.fail_saves(0, 1);
    let staging = |s: &hookgate::test_util::AskedStep| s.context.environment() == "staging";
    assert!(host.answer(staging, StepOutcome::Succeeded).is_some());
    let retry = hookgate::clock::Clock::now(&o.clock) + chrono::TimeDelta::seconds(1);
    replicas::eventually(|| async { a.next_deadline() == Some(retry) }).await;

    o.pass_last_called_gate(&b).await;
    a.maintain_leases().await.unwrap();
    replicas::eventually(|| async { asked("prod") == 1 }).await;
    assert_eq!(asked("staging"), 0, "staging is not asked for again");
    assert!(host.answer(|_| true, StepOutcome::Succeeded).is_some());
    replicas::eventually(|| async {
        a.view(&id).await.unwrap().status == DeploymentStatus::Succeeded
    })
    .await;
}

/// A round of lease upkeep that panics (a `Store` implementation's bug) ends that round, not
/// the scheduler's loop: the rounds after it renew the leases.
#[tokio::test]
async fn a_round_of_upkeep_that_panics_is_tried_again_at_the_next() {
    use std::collections::BTreeMap;

    use hookgate::test_util::{FaultyStore, RecordingTransport};

    let faulty = Arc::new(FaultyStore::new(MemoryStore::new()));
    let external = RecordingTransport::new();
    // Upkeep every 100 ms: a third of the lease.
    let a = recovered_replica(&faulty, &external, std::time::Duration::from_millis(300)).await;
    a.start(ONE_GATE, BTreeMap::new()).await.unwrap();

    faulty.panic_renews(1);
    let renewed = faulty.renews();
    let scheduler = tokio::spawn({
        let a = a.clone();
        async move { a.run_scheduler().await }
    });
    let wait = async {
        while faulty.renews() < renewed + 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect("two rounds of upkeep after the one that panicked");
    assert!(!scheduler.is_finished(), "the scheduler's loop goes on");
    a.shutdown().await;
    scheduler.await.expect("ended by shutdown, not a panic");
}
