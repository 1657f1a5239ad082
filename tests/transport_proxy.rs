//! `ReqwestTransport` and the environment's proxies: requests to this machine's loopback never
//! go through one (a proxy would carry them off the machine, in the clear for plain `http`),
//! nor do those of a transport with an address policy; others do. Its own test binary, since
//! it sets the process's environment.
#![cfg(feature = "reqwest")]

use bytes::Bytes;
use hookgate::transport::{AddressPolicy, HttpTransport, ReqwestTransport};
use http::Request;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn answering(body: &'static str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&server)
        .await;
    server
}

async fn get(transport: &ReqwestTransport, url: &str) -> String {
    let request = Request::get(url).body(Bytes::new()).unwrap();
    let response = transport.send(request).await.expect("an answer");
    String::from_utf8(response.into_body().to_vec()).unwrap()
}

#[tokio::test]
async fn loopback_and_policed_requests_bypass_the_environments_proxy_and_others_use_it() {
    let proxy = answering("through the proxy").await;
    let target = answering("straight to the target").await;
    // SAFETY: this binary's only test, and no other thread of it reads the environment.
    unsafe {
        std::env::set_var("HTTP_PROXY", proxy.uri());
        std::env::set_var("http_proxy", proxy.uri());
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let transport = ReqwestTransport::new().unwrap();

    assert_eq!(
        get(&transport, "http://hookgate-proxy-test.invalid/keys").await,
        "through the proxy",
        "the environment's proxy is in use"
    );
    let port = target.address().port();
    for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
        assert_eq!(
            get(&transport, &format!("http://{host}:{port}/keys")).await,
            "straight to the target",
            "{host}"
        );
    }
    assert_eq!(
        proxy.received_requests().await.unwrap().len(),
        1,
        "only the request to another host went through the proxy"
    );

    // With an address policy, the client connects directly: through the proxy the policy
    // would check the proxy's address, and the proxy would reach the webhook unchecked.
    let checked = ReqwestTransport::builder()
        .address_policy(AddressPolicy::deny_internal())
        .build()
        .unwrap();
    let request = Request::get("http://hookgate-proxy-test.invalid/keys")
        .body(Bytes::new())
        .unwrap();
    assert!(
        checked.send(request).await.is_err(),
        "the name is resolved here, and does not exist"
    );
    assert_eq!(
        proxy.received_requests().await.unwrap().len(),
        1,
        "nothing more went through the proxy"
    );
}
