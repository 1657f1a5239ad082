//! Signed webhook calls verify at the receiver, with `webhook-id` equal to the
//! `Idempotency-Key` (PROTOCOL.md §8), a dot or a space in it percent-encoded.
#![cfg(all(feature = "reqwest", feature = "signing"))]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hookgate::clock::Clock;
use hookgate::config::Plan;
use hookgate::core::{
    Action, CallResult, CallbackId, Deployment, DeploymentId, IdSource, StartOptions, WebhookCall,
};
use hookgate::outbound::Dispatcher;
use hookgate::secrets::MemorySecrets;
use hookgate::signing::{Signer, SigningSecret, Verifier};
use hookgate::transport::{ReqwestTransport, TransportRegistry};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const GLOBAL: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OWN: &str = "whsec_c2VjcmV0LWZvci10aGUtdGlja2V0LXdlYmhvb2s=";

/// Signing time comes from the injected clock.
struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
    }
}

struct Ids(u128);

impl IdSource for Ids {
    fn callback_id(&mut self) -> CallbackId {
        self.0 += 1;
        CallbackId(self.0.to_be_bytes())
    }
}

/// Two gates in parallel: `smoke` (global signer) and `ticket` (its own signer).
fn calls() -> (Deployment, Vec<WebhookCall>) {
    calls_of("d-7")
}

/// [`calls`] of a deployment with id `id`.
fn calls_of(id: &str) -> (Deployment, Vec<WebhookCall>) {
    let plan = Plan::from_yaml(
        r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: smoke}, runWebhook: {name: ticket}]}}}
webhooks:
  - name: smoke
    uriTemplate: "{{secrets.base}}/smoke"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
  - {name: ticket, uriTemplate: "{{secrets.base}}/ticket", bodyTemplate: {inline: 'plain text'}}
"#,
    )
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let mut d = Deployment::start(
        Arc::new(plan),
        DeploymentId::from(id),
        StartOptions::default(),
        &mut Ids(0),
        now,
    );
    let calls = std::iter::from_fn(|| d.poll_action())
        .filter_map(|a| match a {
            Action::CallWebhook(call) => Some(call),
            _ => None,
        })
        .collect();
    (d, calls)
}

fn secret(text: &str) -> SigningSecret {
    text.parse().unwrap()
}

/// A server answering every POST with 202.
async fn accepting() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// A dispatcher sending to `server`, signing with [`GLOBAL`], and `ticket`'s calls with [`OWN`].
fn dispatcher(server: &MockServer) -> Dispatcher {
    Dispatcher::builder(
        TransportRegistry::new(ReqwestTransport::new().unwrap()),
        Arc::new(MemorySecrets::new().with("base", server.uri())),
        "https://hg.example",
    )
    .clock(Fixed)
    .signer(Signer::new(secret(GLOBAL)))
    .webhook_signer("ticket", Signer::new(secret(OWN)))
    .build()
    .unwrap()
}

#[tokio::test]
async fn signed_calls_verify_and_reuse_the_idempotency_key_as_webhook_id() {
    let server = accepting().await;
    let dispatcher = dispatcher(&server);
    let (deployment, calls) = calls();
    assert_eq!(calls.len(), 2);

    for call in &calls {
        let prepared = dispatcher.prepare(&deployment, call, None);
        assert_eq!(
            dispatcher.send(&prepared).await,
            CallResult::Sent { status: 202 }
        );
    }

    for (route, right, wrong) in [("/smoke", GLOBAL, OWN), ("/ticket", OWN, GLOBAL)] {
        let received = server.received_requests().await.unwrap();
        let request = received
            .iter()
            .find(|r| r.url.path() == route)
            .unwrap_or_else(|| panic!("no request to {route}"));
        let headers = &request.headers;
        assert_eq!(headers["webhook-id"], headers["idempotency-key"], "{route}");
        assert_eq!(headers["webhook-timestamp"], "1893553445", "{route}");
        Verifier::new(secret(right))
            .with_clock(Fixed)
            .verify(headers, &request.body)
            .unwrap_or_else(|e| panic!("{route}: {e}"));
        assert!(
            Verifier::new(secret(wrong))
                .with_clock(Fixed)
                .verify(headers, &request.body)
                .is_err(),
            "{route} is signed with its own secret only"
        );
    }
}

/// A deployment id with a dot, a space or a letter beyond ASCII (a host's own, such as a
/// version) still signs: what Standard Webhooks or the signer refuse in `webhook-id` is
/// percent-encoded there (and `%` with it), and the call verifies at the receiver. The
/// `Idempotency-Key` is encoded the same way, but for the dot, which it may hold.
#[tokio::test]
async fn a_deployment_id_with_a_dot_or_a_space_is_encoded_in_the_webhook_id() {
    for (id, webhook_id, key) in [
        ("checkout-1.4%", "checkout-1%2E4%25:0", "checkout-1.4%25:0"),
        ("release 42", "release%2042:0", "release%2042:0"),
        (
            "déploiement-7",
            "d%C3%A9ploiement-7:0",
            "d%C3%A9ploiement-7:0",
        ),
    ] {
        let server = accepting().await;
        let dispatcher = dispatcher(&server);
        let (deployment, calls) = calls_of(id);
        let smoke = calls.iter().find(|c| c.gate.0 == 0).unwrap();
        let prepared = dispatcher.prepare(&deployment, smoke, None);
        assert_eq!(
            dispatcher.send(&prepared).await,
            CallResult::Sent { status: 202 },
            "{id}"
        );

        let received = server.received_requests().await.unwrap();
        let headers = &received[0].headers;
        assert_eq!(headers["idempotency-key"], key);
        assert_eq!(headers["webhook-id"], webhook_id);
        Verifier::new(secret(GLOBAL))
            .with_clock(Fixed)
            .verify(headers, &received[0].body)
            .unwrap();
    }
}

/// The `ticket` call of [`calls`], sent by a dispatcher whose webhooks' base URL is `base`,
/// configured by `configure`; returns the headers the server at `base` received.
async fn ticket_sent_to(
    server: &MockServer,
    configure: impl FnOnce(
        hookgate::outbound::DispatcherBuilder,
    ) -> hookgate::outbound::DispatcherBuilder,
) -> http::HeaderMap {
    let dispatcher = configure(
        Dispatcher::builder(
            TransportRegistry::new(ReqwestTransport::new().unwrap()),
            Arc::new(MemorySecrets::new().with("base", server.uri())),
            "https://hg.example",
        )
        .clock(Fixed),
    )
    .build()
    .unwrap();
    let (deployment, calls) = calls();
    let ticket = calls.iter().find(|c| c.gate.0 == 1).unwrap();
    let prepared = dispatcher.prepare(&deployment, ticket, None);
    assert_eq!(
        dispatcher.send(&prepared).await,
        CallResult::Sent { status: 202 }
    );
    let received = server.received_requests().await.unwrap();
    received.last().unwrap().headers.clone()
}

/// A key given for a receiver's origin signs calls to that origin only: a deployment file that
/// points the webhook elsewhere gets nothing signed with it, whatever the webhook is named. At
/// the origin it wins over the webhook's own signer.
#[tokio::test]
async fn an_origin_signer_signs_calls_to_its_origin_only() {
    let receiver = accepting().await;
    let elsewhere = accepting().await;
    let origin = url::Url::parse(&receiver.uri()).unwrap();

    let at_receiver = ticket_sent_to(&receiver, |b| {
        b.origin_signer(&origin, Signer::new(secret(OWN)))
    })
    .await;
    let body = receiver.received_requests().await.unwrap()[0].body.clone();
    Verifier::new(secret(OWN))
        .with_clock(Fixed)
        .verify(&at_receiver, &body)
        .expect("signed with the origin's key");

    let sent_elsewhere = ticket_sent_to(&elsewhere, |b| {
        b.origin_signer(&origin, Signer::new(secret(OWN)))
    })
    .await;
    assert!(
        !sent_elsewhere.contains_key("webhook-signature"),
        "a call to another origin is not signed with it: {sent_elsewhere:?}"
    );

    let both = |b: hookgate::outbound::DispatcherBuilder| {
        b.webhook_signer("ticket", Signer::new(secret(GLOBAL)))
            .origin_signer(&origin, Signer::new(secret(OWN)))
    };
    let at_receiver = ticket_sent_to(&receiver, both).await;
    let body = receiver.received_requests().await.unwrap()[1].body.clone();
    Verifier::new(secret(OWN))
        .with_clock(Fixed)
        .verify(&at_receiver, &body)
        .expect("the origin's key comes first");
    let sent_elsewhere = ticket_sent_to(&elsewhere, both).await;
    let body = elsewhere.received_requests().await.unwrap()[1].body.clone();
    Verifier::new(secret(GLOBAL))
        .with_clock(Fixed)
        .verify(&sent_elsewhere, &body)
        .expect("elsewhere, the webhook's own signer");
}

/// A call sent through a remote network agent is not signed with the key of the origin its URL
/// names: the agent's network decides where it goes.
#[tokio::test]
async fn an_origin_signer_does_not_sign_calls_sent_through_an_agent() {
    let receiver = accepting().await;
    let origin = url::Url::parse(&receiver.uri()).unwrap();
    let plan = Plan::from_yaml(
        r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}
webhooks:
  - {name: ticket, uriTemplate: "{{secrets.base}}/ticket", networkMode: remoteNetworkAgent, agentIdentifier: a1}
"#,
    )
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let mut deployment = Deployment::start(
        Arc::new(plan),
        DeploymentId::from("d-8"),
        StartOptions::default(),
        &mut Ids(0),
        now,
    );
    let Some(Action::CallWebhook(call)) = deployment.poll_action() else {
        panic!("the ticket is called first")
    };
    // The agent here passes the request on as it is, to the receiver.
    let transports = TransportRegistry::new(ReqwestTransport::new().unwrap())
        .with_agent("a1", ReqwestTransport::new().unwrap());
    let dispatcher = Dispatcher::builder(
        transports,
        Arc::new(MemorySecrets::new().with("base", receiver.uri())),
        "https://hg.example",
    )
    .clock(Fixed)
    .origin_signer(&origin, Signer::new(secret(OWN)))
    .build()
    .unwrap();
    let prepared = dispatcher.prepare(&deployment, &call, None);
    assert_eq!(
        dispatcher.send(&prepared).await,
        CallResult::Sent { status: 202 }
    );
    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(
        !received[0].headers.contains_key("webhook-signature"),
        "{:?}",
        received[0].headers
    );
}
