//! A real core deployment driven through a `Dispatcher` against loopback servers: retries,
//! fail-fast statuses, `retryableStatusCodes`, `Retry-After`, request timeouts and
//! remote-agent routing.
#![cfg(feature = "reqwest")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hookgate::config::{GateId, Plan};
use hookgate::core::{
    Action, CallResult, CallbackId, Deployment, DeploymentId, EventKind, GateState, IdSource,
    StartOptions, StepOutcome,
};
use hookgate::outbound::{Dispatcher, OutboundError, PreparedCall};
use hookgate::secrets::MemorySecrets;
use hookgate::transport::{
    HttpTransport, RequestOptions, ReqwestTransport, TransportError, TransportRegistry,
};
use http::{Request, Uri};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod raw_peer;
use raw_peer::{ACCEPTED, OK_CUT_SHORT, RawPeer, Turn, UNAVAILABLE_CUT_SHORT};

struct Ids(u128);

impl IdSource for Ids {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

const GATE: GateId = GateId(0);

/// One target whose beforeDeployment gate calls `hook`, with the given extra webhook fields.
fn plan(webhook: &str) -> Arc<Plan> {
    let yaml = format!(
        r#"
application: checkout
targets: {{prod: {{account: acct-1, constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}
webhooks:
  - {{name: hook, uriTemplate: "{{{{secrets.base}}}}/hook", {webhook}}}
"#
    );
    Arc::new(Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}")))
}

/// Plays the host on simulated time: the deployment, its clock and a dispatcher.
struct Host {
    deployment: Deployment,
    now: DateTime<Utc>,
    dispatcher: Dispatcher,
    events: Vec<EventKind>,
}

impl Host {
    fn start(plan: Arc<Plan>, registry: TransportRegistry, base: &str) -> Self {
        Self::start_as("d1", plan, registry, base)
    }

    /// [`Host::start`] with the deployment id `id`.
    fn start_as(id: &str, plan: Arc<Plan>, registry: TransportRegistry, base: &str) -> Self {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let secrets = MemorySecrets::new().with("base", base);
        let dispatcher = Dispatcher::builder(registry, Arc::new(secrets), "https://hg.example")
            .build()
            .unwrap();
        let deployment = Deployment::start(
            plan,
            DeploymentId::from(id),
            StartOptions::default().with_seed(7),
            &mut Ids(0),
            now,
        );
        Self {
            deployment,
            now,
            dispatcher,
            events: Vec::new(),
        }
    }

    /// Takes the first pending action, a webhook call, and prepares it.
    fn prepare_first_call(&mut self) -> PreparedCall {
        let Some(Action::CallWebhook(call)) = self.deployment.poll_action() else {
            panic!("expected a call")
        };
        self.dispatcher.prepare(&self.deployment, &call, None)
    }

    /// Sends the first pending action, a webhook call, and returns what came of it without
    /// recording it.
    async fn send_first_call(&mut self) -> CallResult {
        let prepared = self.prepare_first_call();
        self.dispatcher.send(&prepared).await
    }

    /// Performs every pending action once: webhook calls through the dispatcher, host steps
    /// as successes.
    async fn perform(&mut self) {
        while let Some(action) = self.deployment.poll_action() {
            match action {
                Action::CallWebhook(call) => {
                    let prepared = self.dispatcher.prepare(&self.deployment, &call, None);
                    let result = self.dispatcher.send(&prepared).await;
                    self.deployment
                        .handle_call_result(self.now, call.gate, call.attempt, result)
                        .unwrap();
                }
                Action::RunStep(step) => self
                    .deployment
                    .handle_step_result(self.now, step.op, StepOutcome::Succeeded)
                    .unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
        self.events
            .extend(std::iter::from_fn(|| self.deployment.poll_event()).map(|e| e.kind));
    }

    /// Performs actions and jumps to each retry until the gate stops retrying.
    async fn run(&mut self) {
        loop {
            self.perform().await;
            let GateState::RetryWaiting { at, .. } = self.deployment.gate_state(GATE) else {
                return;
            };
            self.now = at;
            self.deployment.handle_timeout(at);
        }
    }

    fn failure_message(&self) -> &str {
        self.events
            .iter()
            .find_map(|e| match e {
                EventKind::GateFailed { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .expect("the gate failed")
    }
}

/// Each failed attempt's event: whether it is retried, and why it failed.
fn failures(events: &[EventKind]) -> Vec<(bool, &str)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::WebhookFailed {
                reason, retry_at, ..
            } => Some((retry_at.is_some(), reason.as_str())),
            _ => None,
        })
        .collect()
}

fn direct() -> TransportRegistry {
    TransportRegistry::new(ReqwestTransport::new().unwrap())
}

async fn server_answering(statuses: &[u16]) -> MockServer {
    let server = MockServer::start().await;
    for (i, status) in statuses.iter().enumerate() {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(*status).set_body_string("try later"))
            .up_to_n_times(1)
            .with_priority(u8::try_from(i + 1).unwrap())
            .mount(&server)
            .await;
    }
    server
}

async fn idempotency_keys(server: &MockServer) -> Vec<String> {
    let received = server.received_requests().await.unwrap();
    received
        .iter()
        // Lossily: a key sent with bytes beyond ASCII is still shown, not a panic.
        .map(|r| String::from_utf8_lossy(r.headers["idempotency-key"].as_bytes()).into_owned())
        .collect()
}

#[tokio::test]
async fn unavailable_answers_are_retried_with_one_idempotency_key_until_sent() {
    let server = server_answering(&[503, 503, 502, 200]).await;
    let mut host = Host::start(plan("retryCount: 3"), direct(), &server.uri());

    host.run().await;

    assert_eq!(idempotency_keys(&server).await, ["d1:0"; 4]);
    assert!(matches!(
        host.deployment.gate_state(GATE),
        GateState::AwaitingCallback { .. }
    ));
    let failed = host
        .events
        .iter()
        .filter(|e| matches!(e, EventKind::WebhookFailed { .. }))
        .count();
    assert_eq!(failed, 3);
}

/// A host's deployment ids may hold spaces, tabs or letters beyond ASCII, which servers read
/// differently or refuse in a header: the key goes percent-encoded, `%` with it so that no two
/// ids share a key, and the same on every attempt. Visible ASCII goes as it is.
#[tokio::test]
async fn a_deployment_id_beyond_visible_ascii_is_percent_encoded_in_the_idempotency_key() {
    for (id, key) in [
        ("déploiement-7", "d%C3%A9ploiement-7:0"),
        ("release 42", "release%2042:0"),
        ("tab\tbed", "tab%09bed:0"),
        ("50%", "50%25:0"),
        ("50%25", "50%2525:0"),
        ("checkout-1.4.0+b/7", "checkout-1.4.0+b/7:0"),
    ] {
        let server = server_answering(&[503, 200]).await;
        let mut host = Host::start_as(id, plan("retryCount: 1"), direct(), &server.uri());

        host.run().await;

        assert_eq!(idempotency_keys(&server).await, [key; 2], "{id}");
    }
}

#[tokio::test]
async fn exhausted_retries_fail_the_gate_naming_the_last_status() {
    let server = server_answering(&[503, 500, 429]).await;
    let mut host = Host::start(plan("retryCount: 2"), direct(), &server.uri());

    host.run().await;

    assert_eq!(idempotency_keys(&server).await.len(), 3);
    assert!(matches!(
        host.deployment.gate_state(GATE),
        GateState::Failed(_)
    ));
    assert_eq!(
        host.failure_message(),
        "the call to webhook \"hook\" failed after 3 attempts; last: HTTP 429: try later"
    );
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    for status in [400, 404] {
        let server = server_answering(&[status, 200]).await;
        let mut host = Host::start(plan("retryCount: 3"), direct(), &server.uri());

        host.run().await;

        assert_eq!(idempotency_keys(&server).await.len(), 1, "{status}");
        assert_eq!(
            host.failure_message(),
            format!("the call to webhook \"hook\" failed: HTTP {status}: try later")
        );
    }
}

#[tokio::test]
async fn a_webhooks_retryable_status_codes_decide_which_answers_are_retried() {
    let server = server_answering(&[409, 503, 200]).await;
    let mut host = Host::start(
        plan("retryCount: 3, retryableStatusCodes: [409]"),
        direct(),
        &server.uri(),
    );

    host.run().await;

    assert_eq!(idempotency_keys(&server).await, ["d1:0"; 2]);
    assert_eq!(
        failures(&host.events),
        [
            (true, "HTTP 409: try later"),
            (false, "HTTP 503: try later")
        ]
    );
    assert_eq!(
        host.failure_message(),
        "the call to webhook \"hook\" failed after 2 attempts; last: HTTP 503: try later"
    );

    let server = server_answering(&[503]).await;
    let mut host = Host::start(plan("retryableStatusCodes: []"), direct(), &server.uri());
    let CallResult::Failed(failure) = host.send_first_call().await else {
        panic!("expected a failure")
    };
    assert!(
        !failure.retryable,
        "what the dispatcher returns agrees with the deployment"
    );
}

#[tokio::test]
async fn a_request_rendered_larger_than_the_limit_fails_the_gate_unsent() {
    let server = server_answering(&[200]).await;
    let mut host = Host::start(
        plan(r#"bodyTemplate: {inline: "{{context.note}}"}, retryCount: 3"#),
        direct(),
        &server.uri(),
    );
    host.deployment = Deployment::start(
        Arc::clone(host.deployment.plan()),
        DeploymentId::from("d1"),
        StartOptions::default()
            .with_seed(7)
            .with_context("note", "n".repeat(100_000)),
        &mut Ids(0),
        host.now,
    );
    let secrets = MemorySecrets::new().with("base", server.uri());
    host.dispatcher = Dispatcher::builder(direct(), Arc::new(secrets), "https://hg.example")
        .max_request_bytes(64 * 1024)
        .build()
        .unwrap();

    host.run().await;

    assert!(
        idempotency_keys(&server).await.is_empty(),
        "nothing was sent"
    );
    let message = host.failure_message();
    assert!(message.contains("larger than 65536 bytes"), "{message}");
}

#[tokio::test]
async fn retry_after_sets_the_next_attempts_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "2"))
        .mount(&server)
        .await;
    let mut host = Host::start(plan("retryCount: 1"), direct(), &server.uri());

    host.perform().await;

    assert_eq!(
        host.deployment.gate_state(GATE),
        GateState::RetryWaiting {
            attempt: 2,
            at: host.now + TimeDelta::seconds(2)
        }
    );
}

#[tokio::test]
async fn a_server_slower_than_the_request_timeout_is_retried_as_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        // Far beyond the request timeout: the attempt is abandoned at the timeout, so the
        // test does not wait for this.
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .with_priority(2)
        .mount(&server)
        .await;
    // Room for a loaded machine to carry the retry's quick answer within the same timeout.
    let webhook = "retryCount: 1, requestTimeout: {duration: 5, unit: seconds}";
    let mut host = Host::start(plan(webhook), direct(), &server.uri());

    let began = std::time::Instant::now();
    host.run().await;
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "the slow attempt was abandoned at the timeout, not waited for: {:?}",
        began.elapsed()
    );

    let reasons: Vec<&str> = host
        .events
        .iter()
        .filter_map(|e| match e {
            EventKind::WebhookFailed { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("timed out after 5s"), "{}", reasons[0]);
    assert!(matches!(
        host.deployment.gate_state(GATE),
        GateState::AwaitingCallback { .. }
    ));
}

/// PROTOCOL.md §4: each call has its own request timeout, 30 s by default. A webhook without
/// `requestTimeout`, sent by a dispatcher not told otherwise, carries `RequestOptions` with a
/// 30 s timeout to its transport, and the whole attempt is bounded by twice that.
#[tokio::test]
async fn the_request_timeout_defaults_to_30_seconds() {
    assert_eq!(RequestOptions::default().timeout, Duration::from_secs(30));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let transport = {
        let seen = Arc::clone(&seen);
        move |request: Request<Bytes>| {
            let options = request.extensions().get::<RequestOptions>().copied();
            seen.lock().unwrap().push(options.map(|o| o.timeout));
            async {
                let mut response = http::Response::new(Bytes::new());
                *response.status_mut() = http::StatusCode::ACCEPTED;
                Ok::<_, TransportError>(response)
            }
        }
    };
    let mut host = Host::start(
        plan(""),
        TransportRegistry::new(transport),
        "https://ci.example",
    );
    assert_eq!(
        host.deployment.plan().webhooks()[0].request_timeout,
        None,
        "the webhook sets no requestTimeout"
    );
    let prepared = host.prepare_first_call();
    assert_eq!(
        host.dispatcher.attempt_limit(&prepared),
        Duration::from_secs(60)
    );

    assert_eq!(
        host.dispatcher.send(&prepared).await,
        CallResult::Sent { status: 202 }
    );
    assert_eq!(*seen.lock().unwrap(), [Some(Duration::from_secs(30))]);
}

/// Stands in for a remote network agent: whatever the URL says, the request goes to `agent`.
fn agent_transport(agent: &MockServer) -> impl HttpTransport + 'static {
    let address = agent.address().to_string();
    let inner = ReqwestTransport::new().unwrap();
    move |mut request: Request<Bytes>| {
        let inner = inner.clone();
        let mut parts = request.uri().clone().into_parts();
        parts.authority = Some(address.parse().unwrap());
        *request.uri_mut() = Uri::from_parts(parts).unwrap();
        async move { inner.send(request).await }
    }
}

#[tokio::test]
async fn remote_agent_webhooks_go_through_the_agents_transport() {
    let direct_server = server_answering(&[]).await;
    for (webhook, agent) in [
        (
            "networkMode: remoteNetworkAgent, agentIdentifier: agent-7",
            "agent-7",
        ),
        // Without `agentIdentifier`, the target's account names the agent.
        ("networkMode: remoteNetworkAgent", "acct-1"),
    ] {
        let agent_server = server_answering(&[202]).await;
        let registry = direct().with_agent(agent, agent_transport(&agent_server));
        let mut host = Host::start(plan(webhook), registry, &direct_server.uri());
        host.dispatcher
            .check_agents(host.deployment.plan())
            .unwrap();

        host.run().await;

        assert_eq!(idempotency_keys(&agent_server).await, ["d1:0"], "{agent}");
    }
    assert!(idempotency_keys(&direct_server).await.is_empty());
}

#[tokio::test]
async fn an_agent_without_transport_is_refused_before_start_and_fails_the_call() {
    let server = server_answering(&[]).await;
    let webhook = "networkMode: remoteNetworkAgent, agentIdentifier: agent-9, retryCount: 3";
    let mut host = Host::start(plan(webhook), direct(), &server.uri());

    let error = host
        .dispatcher
        .check_agents(host.deployment.plan())
        .unwrap_err();
    assert!(
        matches!(&error, OutboundError::Transport(TransportError::UnknownAgents { agents }) if agents == &["agent-9"]),
        "{error:?}"
    );
    assert!(error.to_string().contains("agent-9"), "{error}");

    host.run().await;
    assert!(idempotency_keys(&server).await.is_empty());
    let message = host.failure_message();
    assert!(
        message.starts_with("the call to webhook \"hook\" failed: no transport is registered for remote network agent(s) agent-9"),
        "{message}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut host = Host::start(plan("retryCount: 1"), direct(), &closed);

    host.run().await;

    let failures = failures(&host.events);
    assert_eq!(failures.len(), 2);
    assert!(failures[0].0, "the first attempt is retried");
    assert!(
        failures[1].1.contains("could not connect"),
        "{}",
        failures[1].1
    );
}

#[tokio::test]
async fn a_connection_reset_mid_request_is_retried_and_sent_on_the_second_attempt() {
    for broken in [Turn::Reset, Turn::Close] {
        let peer = RawPeer::start(&[broken, Turn::Write(ACCEPTED)]).await;
        let mut host = Host::start(plan("retryCount: 1"), direct(), &peer.base);

        host.run().await;

        assert_eq!(peer.accepted(), 2, "{broken:?}");
        let failures = failures(&host.events);
        assert_eq!(failures.len(), 1, "{broken:?}: {failures:?}");
        assert!(failures[0].0, "{broken:?}: the first attempt is retried");
        assert!(
            failures[0].1.contains("closed or reset"),
            "{}",
            failures[0].1
        );
        assert!(
            matches!(
                host.deployment.gate_state(GATE),
                GateState::AwaitingCallback { .. }
            ),
            "{broken:?}: {:?}",
            host.deployment.gate_state(GATE)
        );
    }
}

#[tokio::test]
async fn a_2xx_whose_body_breaks_off_counts_as_sent() {
    let peer = RawPeer::start(&[Turn::Write(OK_CUT_SHORT)]).await;
    let mut host = Host::start(plan("retryCount: 3"), direct(), &peer.base);

    assert_eq!(
        host.send_first_call().await,
        CallResult::Sent { status: 200 }
    );
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn a_503_whose_body_breaks_off_keeps_its_retry_after() {
    let peer = RawPeer::start(&[Turn::Write(UNAVAILABLE_CUT_SHORT)]).await;
    let mut host = Host::start(plan("retryCount: 3"), direct(), &peer.base);

    let CallResult::Failed(failure) = host.send_first_call().await else {
        panic!("expected a failure")
    };
    assert!(failure.retryable);
    assert_eq!(failure.status, Some(503));
    assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn results_of_a_closure_transport_map_like_real_ones() {
    let unavailable = |_request: Request<Bytes>| async {
        let mut response = http::Response::new(Bytes::from_static(b"busy"));
        *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        response
            .headers_mut()
            .insert("retry-after", http::HeaderValue::from_static("7"));
        Ok::<_, TransportError>(response)
    };
    let mut host = Host::start(
        plan("retryCount: 1"),
        TransportRegistry::new(unavailable),
        "https://ci.example",
    );
    let CallResult::Failed(failure) = host.send_first_call().await else {
        panic!("expected a failure")
    };
    assert!(failure.retryable);
    assert_eq!(failure.status, Some(429));
    assert_eq!(failure.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(failure.reason, "HTTP 429: busy");
}

#[tokio::test]
async fn a_call_prepared_with_another_deployment_fails_instead_of_panicking() {
    let two_webhooks = Arc::new(
        Plan::from_yaml(
            r#"
application: a
targets:
  one: {constraints: {beforeDeployment: [runWebhook: {name: w1}]}}
  two: {constraints: {beforeDeployment: [runWebhook: {name: w2}]}}
webhooks: [{name: w1, uriTemplate: "https://1.example"}, {name: w2, uriTemplate: "https://2.example"}]
"#,
        )
        .unwrap(),
    );
    let other = Host::start(two_webhooks, direct(), "https://ci.example");
    let host = Host::start(plan(""), direct(), "https://ci.example");
    let mut other = other.deployment;
    let calls: Vec<_> = std::iter::from_fn(|| other.poll_action())
        .filter_map(|a| match a {
            Action::CallWebhook(call) => Some(call),
            _ => None,
        })
        .collect();
    let foreign = calls.last().expect("two calls");

    let prepared = host.dispatcher.prepare(&host.deployment, foreign, None);
    let CallResult::Failed(failure) = host.dispatcher.send(&prepared).await else {
        panic!("expected a failure")
    };
    assert!(!failure.retryable);
    assert!(
        failure.reason.contains("not in the plan"),
        "{}",
        failure.reason
    );
}
