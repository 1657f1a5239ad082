//! `AddressPolicy` enforced by `PolicyTransport` (and `PolicyResolver`) against a loopback
//! server: refused requests never reach it.
#![cfg(feature = "reqwest")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use hookgate::transport::{
    AddressPolicy, HttpTransport, PolicyResolver, PolicyTransport, RequestOptions,
    ReqwestTransport, TransportError,
};
use http::{Request, Response};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

/// A server that answers 200 to anything, and must be called exactly `expect` times.
async fn server(expect: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(expect)
        .mount(&server)
        .await;
    server
}

fn post(uri: String) -> Request<Bytes> {
    Request::post(uri).body(Bytes::new()).unwrap()
}

fn guarded(policy: AddressPolicy) -> PolicyTransport<ReqwestTransport> {
    PolicyTransport::new(ReqwestTransport::new().unwrap(), policy)
}

/// A transport that counts the requests that reach it.
fn counting(count: Arc<AtomicUsize>) -> impl HttpTransport {
    move |_request: Request<Bytes>| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, TransportError>(Response::new(Bytes::new())) }
    }
}

fn assert_refused(error: &TransportError, needles: &[&str]) {
    assert!(
        matches!(error, TransportError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let text = error.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

#[tokio::test]
async fn denied_network_refuses_the_call_before_it_reaches_the_server() {
    let server = server(0).await;
    let policy = AddressPolicy::new().deny("127.0.0.0/8".parse().unwrap());
    let uri = format!("{}/services/T0/p4thkey?token=s3cr3t", server.uri());
    let error = guarded(policy).send(post(uri)).await.unwrap_err();
    assert_refused(&error, &["127.0.0.1", "`deny 127.0.0.0/8`"]);
    // A path may be a secret too (a chat webhook's key): neither it nor the query is quoted.
    for secret in ["s3cr3t", "p4thkey", "/services"] {
        assert!(!error.to_string().contains(secret), "{error}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }
}

#[tokio::test]
async fn allowed_network_lets_the_call_through() {
    let server = server(1).await;
    let policy = AddressPolicy::deny_internal().allow_net("127.0.0.0/8".parse().unwrap());
    let response = guarded(policy)
        .send(post(format!("{}/hook", server.uri())))
        .await
        .unwrap();
    assert_eq!(response.body(), "ok");
}

#[tokio::test]
async fn allow_list_refuses_what_it_does_not_name() {
    let server = server(0).await;
    let policy = AddressPolicy::new().allow_net("10.0.0.0/8".parse().unwrap());
    let error = guarded(policy)
        .send(post(format!("{}/hook", server.uri())))
        .await
        .unwrap_err();
    assert_refused(&error, &["127.0.0.1", "allow-list"]);
}

#[tokio::test]
async fn metadata_address_is_refused_by_the_default_deny_set_without_traffic() {
    let count = Arc::new(AtomicUsize::new(0));
    let transport = PolicyTransport::new(counting(count.clone()), AddressPolicy::deny_internal());
    for uri in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fe80::1]:8080/",
        // Azure's WireServer, Oracle Cloud Classic's metadata, Google's over IPv6, and the EKS
        // Pod Identity Agent's credentials over IPv6.
        "http://168.63.129.16/machine?comp=goalstate",
        "http://192.0.0.192/latest/meta-data/",
        "http://[fd20:ce::254]/computeMetadata/v1/",
        "http://[fd00:ec2::23]/v1/credentials",
    ] {
        let error = transport.send(post(uri.to_owned())).await.unwrap_err();
        assert_refused(&error, &["address policy rule `deny "]);
    }
    let error = transport
        .send(post("http://169.254.169.254/".to_owned()))
        .await
        .unwrap_err();
    assert_refused(&error, &["169.254.169.254", "`deny 169.254.0.0/16`"]);
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allow_list_by_host_name() {
    let server = server(1).await;
    let port = server.address().port();
    let transport = guarded(AddressPolicy::deny_internal().allow_host("LocalHost"));
    // `localhost` is allowed by name; the same server by address is not on the list.
    let response = transport
        .send(post(format!("http://localhost:{port}/hook")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let error = transport
        .send(post(format!("http://127.0.0.1:{port}/hook")))
        .await
        .unwrap_err();
    assert_refused(&error, &["host 127.0.0.1", "allow-list"]);
}

#[tokio::test]
async fn host_name_resolving_to_a_denied_address_is_refused() {
    let server = server(0).await;
    let port = server.address().port();
    let policy = AddressPolicy::deny_internal().deny_loopback();
    let error = guarded(policy)
        .send(post(format!("http://localhost:{port}/hook?sig=abc")))
        .await
        .unwrap_err();
    // `localhost` may resolve to 127.0.0.1 or ::1 first; either is denied.
    assert_refused(&error, &["host localhost", "`deny "]);
    assert!(!error.to_string().contains("sig=abc"), "{error}");
}

#[tokio::test]
async fn ipv6_literals_are_checked_as_addresses() {
    let count = Arc::new(AtomicUsize::new(0));
    let deny = PolicyTransport::new(
        counting(count.clone()),
        AddressPolicy::new().deny_loopback(),
    );
    let error = deny
        .send(post("http://[::1]:8080/hook".to_owned()))
        .await
        .unwrap_err();
    assert_refused(&error, &["host [::1]", "address ::1", "`deny ::1/128`"]);
    let error = deny
        .send(post("http://[::ffff:127.0.0.1]/".to_owned()))
        .await
        .unwrap_err();
    assert_refused(&error, &["address 127.0.0.1", "`deny 127.0.0.0/8`"]);
    assert_eq!(count.load(Ordering::SeqCst), 0);

    let allow = PolicyTransport::new(
        counting(count.clone()),
        AddressPolicy::new().allow_net("2001:db8::/32".parse().unwrap()),
    );
    allow
        .send(post("https://[2001:db8::7]/hook".to_owned()))
        .await
        .unwrap();
    let error = allow
        .send(post("https://[2001:db9::7]/hook".to_owned()))
        .await
        .unwrap_err();
    assert_refused(&error, &["address 2001:db9::7", "allow-list"]);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn deny_loopback_refuses_a_loopback_server_reached_through_the_unspecified_address() {
    let server = server(1).await;
    let port = server.address().port();
    let through_unspecified = format!("http://0.0.0.0:{port}/hook");
    // Without a policy the call arrives: `0.0.0.0` is this machine.
    let response = ReqwestTransport::new()
        .unwrap()
        .send(post(through_unspecified.clone()))
        .await
        .unwrap();
    assert_eq!(response.body(), "ok");

    let policy = AddressPolicy::deny_internal().deny_loopback();
    let error = guarded(policy.clone())
        .send(post(through_unspecified))
        .await
        .unwrap_err();
    assert_refused(&error, &["address 0.0.0.0", "`deny 0.0.0.0/8`"]);
    let count = Arc::new(AtomicUsize::new(0));
    let transport = PolicyTransport::new(counting(count.clone()), policy);
    for (uri, rule) in [
        (format!("http://[::]:{port}/"), "`deny ::/128`"),
        (
            format!("http://[::ffff:0.0.0.0]:{port}/"),
            "`deny 0.0.0.0/8`",
        ),
    ] {
        let error = transport.send(post(uri)).await.unwrap_err();
        assert_refused(&error, &[rule]);
    }
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_attempt_is_checked() {
    let count = Arc::new(AtomicUsize::new(0));
    let transport = PolicyTransport::new(counting(count.clone()), AddressPolicy::deny_internal());
    for _ in 0..3 {
        assert!(
            transport
                .send(post("http://169.254.169.254/".to_owned()))
                .await
                .is_err()
        );
        transport
            .send(post("http://192.0.2.1/".to_owned()))
            .await
            .unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn relative_uri_is_refused_without_a_lookup() {
    let count = Arc::new(AtomicUsize::new(0));
    let transport = PolicyTransport::new(counting(count.clone()), AddressPolicy::new());
    let error = transport
        .send(Request::post("/hook").body(Bytes::new()).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, TransportError::InvalidRequest { .. }),
        "{error:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn lookup_time_is_taken_off_the_request_timeout() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        move |request: Request<Bytes>| {
            *seen.lock().unwrap() = request.extensions().get::<RequestOptions>().copied();
            async { Ok::<_, TransportError>(Response::new(Bytes::new())) }
        }
    };
    let transport = PolicyTransport::new(inner, AddressPolicy::deny_internal());
    let mut request = post("http://localhost:9/".to_owned());
    let options = RequestOptions::default().with_timeout(Duration::from_secs(5));
    request.extensions_mut().insert(options);
    transport.send(request).await.unwrap();
    let seen = seen.lock().unwrap().expect("options are passed on");
    assert!(seen.timeout < Duration::from_secs(5), "{seen:?}");
    assert_eq!(seen.max_response_bytes, options.max_response_bytes);
}

/// A transport reporting `defaults` as its own (`None`: it cannot tell), which keeps the
/// options each request reached it with.
struct WithDefaults {
    defaults: Option<RequestOptions>,
    seen: Arc<Mutex<Vec<Option<RequestOptions>>>>,
}

#[async_trait]
impl HttpTransport for WithDefaults {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let options = request.extensions().get::<RequestOptions>().copied();
        self.seen.lock().unwrap().push(options);
        Ok(Response::new(Bytes::new()))
    }

    fn default_options(&self) -> Option<RequestOptions> {
        self.defaults
    }
}

#[tokio::test]
async fn lookup_time_is_taken_off_the_inner_transports_own_timeout_without_options() {
    let defaults = RequestOptions::default()
        .with_timeout(Duration::from_secs(5))
        .with_max_response_bytes(123);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = WithDefaults {
        defaults: Some(defaults),
        seen: Arc::clone(&seen),
    };
    let transport: Arc<dyn HttpTransport> =
        Arc::new(PolicyTransport::new(inner, AddressPolicy::deny_internal()));
    assert_eq!(transport.default_options(), Some(defaults));

    transport
        .send(post("http://localhost:9/".to_owned()))
        .await
        .unwrap();
    // A literal address takes no lookup, so the request goes on as it came.
    transport
        .send(post("http://127.0.0.1:9/".to_owned()))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let looked_up = seen[0].expect("the inner transport's defaults, shortened");
    assert!(looked_up.timeout < defaults.timeout, "{looked_up:?}");
    assert_eq!(looked_up.max_response_bytes, defaults.max_response_bytes);
    assert_eq!(seen[1], None);
}

#[tokio::test]
async fn a_transport_that_does_not_report_its_defaults_gets_requests_unchanged() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = WithDefaults {
        defaults: None,
        seen: Arc::clone(&seen),
    };
    let transport = PolicyTransport::new(inner, AddressPolicy::deny_internal());
    assert_eq!(transport.default_options(), None);
    transport
        .send(post("http://localhost:9/".to_owned()))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [None]);
}

#[test]
fn the_reqwest_transport_reports_the_defaults_it_was_built_with() {
    let transport = ReqwestTransport::builder()
        .timeout(Duration::from_secs(7))
        .max_response_bytes(9)
        .build()
        .unwrap();
    let expected = RequestOptions::default()
        .with_timeout(Duration::from_secs(7))
        .with_max_response_bytes(9);
    assert_eq!(transport.default_options(), Some(expected));
    let shared: Arc<dyn HttpTransport> = Arc::new(transport);
    let boxed: Box<dyn HttpTransport> = Box::new(Arc::clone(&shared));
    assert_eq!(boxed.default_options(), Some(expected));
}

#[tokio::test]
async fn resolver_refuses_denied_names_inside_reqwest() {
    let server = server(0).await;
    let port = server.address().port();
    let policy = Arc::new(AddressPolicy::new().deny_loopback());
    let client = reqwest::Client::builder()
        .dns_resolver(PolicyResolver::new(Arc::clone(&policy)))
        .no_proxy()
        .build()
        .unwrap();
    let error = client
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let chain = error_chain(&error);
    assert!(chain.contains("`deny "), "{chain}");
}

#[tokio::test]
async fn resolver_lets_allowed_names_through() {
    let server = server(1).await;
    let port = server.address().port();
    let client = reqwest::Client::builder()
        .dns_resolver(PolicyResolver::new(AddressPolicy::deny_internal()))
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_reqwest_transport_resolves_names_through_the_policy() {
    let server = server(0).await;
    let policy = Arc::new(AddressPolicy::new().deny_loopback());
    let transport = ReqwestTransport::builder()
        .address_policy(Arc::clone(&policy))
        .build()
        .unwrap();
    let port = server.address().port();
    let refused = transport
        .send(post(format!("http://localhost:{port}/hook")))
        .await
        .unwrap_err();
    // The resolver refuses loopback addresses: the connection is never made, for the policy's
    // reason, and the refusal is final, as a lookup again would be refused the same way.
    assert_refused(&refused, &["host localhost", "`deny "]);
    // Wrapped with the same policy, the refusal comes before any lookup, the same.
    let guarded = PolicyTransport::new(transport, policy);
    let refused = guarded
        .send(post(format!("http://localhost:{port}/hook")))
        .await
        .unwrap_err();
    assert_refused(&refused, &["host localhost", "`deny "]);
}

/// `error` and its sources, one a line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut source = Some(error);
    let mut chain = String::new();
    while let Some(error) = source {
        chain.push_str(&error.to_string());
        chain.push('\n');
        source = error.source();
    }
    chain
}
