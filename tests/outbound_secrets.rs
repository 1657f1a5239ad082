//! Secret hygiene of the outbound path: whatever fails, a secret used in the URL, a header and
//! the body never shows up in a result, an event, a `Debug`, an error or a log line.
#![cfg(feature = "reqwest")]

mod log_capture;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{
    Action, CallResult, CallbackId, Deployment, DeploymentId, IdSource, StartOptions,
};
use hookgate::outbound::Dispatcher;
use hookgate::secrets::{MemorySecrets, SecretSource, fetch_all};
use hookgate::template::RenderValues;
use hookgate::transport::{HttpTransport, ReqwestTransport, TransportRegistry};
use log_capture::Captured;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "s3cr3t-Hunter2-token";

/// The token in the query, a header and the body; the server written in the template, or (for
/// `secret_base`) from a secret.
fn plan(base: &str, extra_header: &str) -> Arc<Plan> {
    let yaml = format!(
        r#"
application: checkout
context: {{base: "{base}"}}
targets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}
webhooks:
  - name: hook
    uriTemplate: "{uri_base}/hook?token={{{{secrets.token}}}}"
    headers:
      - {{key: X-Api-Key, value: "{{{{secrets.token}}}}"}}
      - {{key: Content-Type, value: application/json}}
      {extra_header}
    bodyTemplate: {{inline: '{{"token": "{{{{secrets.token}}}}", "cb": "{{{{armory.callbackUri}}}}"}}'}}
    retryCount: 0
"#,
        uri_base = if base.is_empty() {
            "{{secrets.base}}"
        } else {
            base
        },
    );
    Arc::new(Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}")))
}

struct Ids;

impl IdSource for Ids {
    fn callback_id(&mut self) -> CallbackId {
        CallbackId([7; 16])
    }
}

/// Everything one failing call leaves behind, as text.
struct Traces {
    texts: Vec<String>,
    log: String,
}

impl Traces {
    fn assert_hides(&self, secret: &str) {
        for text in &self.texts {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
        assert!(
            !self.log.contains(secret),
            "{secret} leaked into the log:\n{}",
            self.log
        );
    }
}

/// Runs the deployment's one call through a dispatcher with `secrets`, capturing the TRACE
/// log, and collects every text it produced: the result, the events, the `Debug` of the
/// prepared call, the dispatcher, the rendered request and its header map, and the transport's
/// own error.
async fn call(plan: Arc<Plan>, secrets: MemorySecrets) -> Traces {
    call_reading(plan, secrets, 64 * 1024).await
}

/// [`call`], reading at most `max_response_bytes` of the answer.
async fn call_reading(
    plan: Arc<Plan>,
    secrets: MemorySecrets,
    max_response_bytes: usize,
) -> Traces {
    let (captured, _guard) = Captured::on_this_thread();

    let transport = ReqwestTransport::new().unwrap();
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(transport.clone()),
        Arc::new(secrets.clone()),
        "https://hg.example",
    )
    .max_response_bytes(max_response_bytes)
    .build()
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    let options = StartOptions::default();
    let mut d = Deployment::start(
        plan.clone(),
        DeploymentId::from("d1"),
        options,
        &mut Ids,
        now,
    );
    let Some(Action::CallWebhook(call)) = d.poll_action() else {
        panic!("expected a call")
    };

    let prepared = dispatcher.prepare(&d, &call, None);
    let result = dispatcher.send(&prepared).await;
    let CallResult::Failed(failure) = &result else {
        panic!("expected a failure, got {result:?}")
    };
    d.handle_call_result(now, call.gate, call.attempt, result.clone())
        .unwrap();
    let mut texts = vec![
        failure.reason.clone(),
        format!("{result:?}"),
        format!("{prepared:?}"),
        format!("{dispatcher:?}"),
        format!("{secrets:?}"),
    ];
    texts.extend(std::iter::from_fn(|| d.poll_event()).map(|e| format!("{e:?}")));

    // The layers below, used directly: the secret source, the renderer and the transport.
    let webhook = &plan.webhooks()[0];
    let fetched = match fetch_all(&secrets, webhook.request.secret_names()).await {
        Ok(fetched) => fetched,
        Err(error) => {
            texts.push(format!("{error} {error:?}"));
            BTreeMap::new()
        }
    };
    if let Err(error) = secrets.get("absent").await {
        texts.push(format!("{error} {error:?}"));
    }
    let values = RenderValues::new(prepared.armory(), prepared.context(), &fetched);
    match webhook.request.render(&values) {
        Ok(rendered) => {
            texts.push(format!("{rendered:?}"));
            // As `http` prints it: header values marked sensitive print as `Sensitive`.
            let request = http::Request::<bytes::Bytes>::from(rendered);
            texts.push(format!("{:?}", request.headers()));
            if let Err(error) = transport.send(request).await {
                texts.push(format!("{error} {error:?}"));
            }
        }
        Err(error) => texts.push(format!("{error} {error:?}")),
    }
    let log = captured.text();
    assert!(
        log.contains("webhook call failed"),
        "the log was captured:\n{log}"
    );
    Traces { texts, log }
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[tokio::test]
async fn a_refused_connection_leaves_no_trace_of_the_secret() {
    let secrets = MemorySecrets::new().with("token", TOKEN);
    let traces = call(plan(&closed_port(), ""), secrets).await;
    traces.assert_hides(TOKEN);
    // The token is only in the query, which no message quotes: the URL stays visible.
    assert!(
        traces.texts[0].contains("could not connect for POST http://127.0.0.1:"),
        "{}",
        traces.texts[0]
    );
}

#[tokio::test]
async fn a_server_echoing_the_secret_has_it_redacted_from_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!(
            "invalid token {TOKEN} (expected a different one than {})\n",
            TOKEN.to_ascii_uppercase()
        )))
        .mount(&server)
        .await;
    let secrets = MemorySecrets::new().with("token", TOKEN);
    let traces = call(plan(&server.uri(), ""), secrets).await;
    traces.assert_hides(TOKEN);
    traces.assert_hides(&TOKEN.to_ascii_uppercase());
    assert!(
        traces.texts[0].starts_with(
            "HTTP 500: invalid token [redacted] (expected a different one than [redacted])"
        ),
        "{}",
        traces.texts[0]
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// The read limit cuts the echoed secret: what was read ends with its start, which no whole
/// spelling of it matches.
#[tokio::test]
async fn a_secret_cut_by_the_read_limit_leaves_no_start_of_it_in_the_reason() {
    let server = MockServer::start().await;
    let before = "invalid token ";
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(format!("{before}{TOKEN} is not ours")),
        )
        .mount(&server)
        .await;
    let kept = 12;
    let secrets = MemorySecrets::new().with("token", TOKEN);
    let traces = call_reading(plan(&server.uri(), ""), secrets, before.len() + kept).await;
    traces.assert_hides(&TOKEN[..kept]);
    assert!(
        traces.texts[0].starts_with("HTTP 500: invalid token"),
        "{}",
        traces.texts[0]
    );
}

/// Echoed by another encoder (Python's `quote` keeps `/`, escapes `+` and `=`) and cut by the
/// read limit inside its escapes: the start is cut in that spelling too, with the escape the
/// limit left unfinished.
#[tokio::test]
async fn a_secret_cut_by_the_read_limit_in_another_encoders_spelling_leaves_no_start_of_it() {
    const SECRET: &str = "Zm9v/YmFyQmF6/cXV4+YmF6==";
    let before = "bad key ";
    let server = answering(401, |_| {
        "bad key Zm9v/YmFyQmF6/cXV4%2BYmF6%3D%3D is not ours".to_owned()
    })
    .await;
    for kept in ["Zm9v/YmFyQmF6/cXV4%2BYm", "Zm9v/YmFyQmF6/cXV4%2BYmF6%3"] {
        let secrets = MemorySecrets::new().with("token", SECRET);
        let traces =
            call_reading(plan(&server.uri(), ""), secrets, before.len() + kept.len()).await;
        traces.assert_hides("YmFyQmF6");
        assert_eq!(traces.texts[0], "HTTP 401: bad key", "kept {kept}");
    }
}

#[tokio::test]
async fn a_missing_second_secret_fails_without_the_first_ones_value() {
    let server = MockServer::start().await;
    let secrets = MemorySecrets::new().with("token", TOKEN);
    let extra = r#"- {key: X-Other, value: "{{secrets.other}}"}"#;
    let traces = call(plan(&server.uri(), extra), secrets).await;
    traces.assert_hides(TOKEN);
    assert!(
        traces.texts[0].contains("secret `other` not found"),
        "{}",
        traces.texts[0]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// A server answering every request `404` with `page` of the request it got.
async fn answering_404(page: fn(&wiremock::Request) -> String) -> MockServer {
    answering(404, page).await
}

/// A server answering every request `status` with `page` of the request it got.
async fn answering(status: u16, page: fn(&wiremock::Request) -> String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(move |request: &wiremock::Request| {
            ResponseTemplate::new(status).set_body_string(page(request))
        })
        .mount(&server)
        .await;
    server
}

/// A webhook whose whole URL is the secret `url`, as Slack-style webhook URLs are given.
fn secret_url_plan() -> Arc<Plan> {
    let yaml = r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: hook}]}}}
webhooks:
  - {name: hook, uriTemplate: "{{secrets.url}}", retryCount: 0}
"#;
    Arc::new(Plan::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}")))
}

/// The traces of the call when its base URL comes from a secret and the server answers `404`
/// with `page` of the request it got.
async fn secret_base_url_echoed(page: fn(&wiremock::Request) -> String) -> Traces {
    let server = answering_404(page).await;
    let base = format!("{}/services/T0001/B0002/XsecretPath", server.uri());
    let secrets = MemorySecrets::new()
        .with("token", TOKEN)
        .with("base", base.as_str());
    call(plan("", ""), secrets).await
}

/// A URL starting with a secret and carrying hundreds of query values (each a context value,
/// hidden as a part of the secret URL) has each of them hidden wherever the answer quotes it,
/// in whichever encoding; they are looked for all at once, so an answer nearly spelling them
/// over and over costs one pass, not one per value (`benches/outbound.rs`, `failed_send_`).
#[tokio::test]
async fn hundreds_of_hidden_query_values_are_each_hidden_in_any_encoding() {
    let server = answering(500, |request| {
        let query = request.url.query().unwrap_or_default().to_owned();
        let values: Vec<&str> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(_, v)| v)
            .collect();
        // As sent, form-decoded, and with only the spaces encoded (Python's `quote` keeps `/`).
        let form = values[7].replace("%20", "+");
        let decoded = percent_encoding::percent_decode_str(values[150])
            .decode_utf8_lossy()
            .into_owned();
        let spaces = decoded.replace(' ', "%20");
        format!(
            "refused {} and {form} and {spaces} and {decoded}",
            values[0]
        )
    })
    .await;
    let (query, context): (Vec<String>, Vec<String>) = (0..300)
        .map(|i| {
            (
                format!("k{i}={{{{context.v{i}}}}}"),
                format!("v{i}: 'value/{i:03} of the order {}'", "x".repeat(16)),
            )
        })
        .unzip();
    let yaml = format!(
        "application: a\ncontext: {{{}}}\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}\nwebhooks:\n  - {{name: hook, uriTemplate: \"{{{{secrets.base}}}}/hook?{}\", retryCount: 0}}\n",
        context.join(", "),
        query.join("&")
    );
    let plan = Arc::new(Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}")));
    let secrets = MemorySecrets::new().with("base", server.uri().as_str());

    let traces = call(plan, secrets).await;

    let reason = &traces.texts[0];
    assert!(
        reason.ends_with("refused [redacted] and [redacted] and [redacted] and [redacted]"),
        "{reason}"
    );
}

/// Credentials in the URL (`user:token@host`, as Jenkins URLs carry them) go as
/// `Authorization: Basic`, as HTTP clients send them; a server echoing the header it refused
/// has them hidden, in the encoding they were sent in.
#[tokio::test]
async fn credentials_in_the_url_go_as_basic_auth_and_their_echo_is_hidden() {
    let server = answering_404(|request| {
        let sent = request.headers.get("authorization");
        format!("no job for {:?}", sent.and_then(|v| v.to_str().ok()))
    })
    .await;
    let base = server
        .uri()
        .replacen("http://", "http://ci-bot:{{secrets.token}}@", 1);
    let yaml = format!(
        r#"
application: checkout
targets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}
webhooks:
  - name: hook
    uriTemplate: "{base}/job/deploy"
    retryCount: 0
"#
    );
    let plan = Arc::new(Plan::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}")));
    let traces = call(plan, MemorySecrets::new().with("token", TOKEN)).await;

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{TOKEN}"));
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 2, "the dispatcher's and the transport's own");
    for request in &sent {
        assert_eq!(
            request.headers.get("authorization").unwrap(),
            &format!("Basic {basic}")
        );
        assert_eq!(request.url.path(), "/job/deploy");
    }
    traces.assert_hides(TOKEN);
    traces.assert_hides(&basic);
    assert!(
        traces.texts[0].contains("HTTP 404: no job for"),
        "{}",
        traces.texts[0]
    );
}

/// An `Authorization` header written in the file, not from a secret, is a credential too: a
/// server echoing the header it refused has it hidden, and the request's header map does not
/// print it.
#[tokio::test]
async fn an_authorization_header_not_from_a_secret_is_hidden_when_echoed() {
    const LITERAL: &str = "lit3ral-t0ken-XYZ";
    let server = answering_404(|request| {
        let sent = request.headers.get("authorization");
        format!("refused {:?}", sent.and_then(|v| v.to_str().ok()))
    })
    .await;
    let header = format!(r#"- {{key: Authorization, value: "Bearer {LITERAL}"}}"#);
    let traces = call(
        plan(&server.uri(), &header),
        MemorySecrets::new().with("token", TOKEN),
    )
    .await;
    traces.assert_hides(LITERAL);
    assert!(
        traces.texts[0].contains("HTTP 404: refused"),
        "{}",
        traces.texts[0]
    );
}

/// The user info of a URL a secret gives whole goes as `Authorization: Basic`; a server
/// quoting the credentials it decoded from it has them hidden, and the password alone.
#[tokio::test]
async fn credentials_of_a_secret_url_echoed_as_decoded_are_hidden() {
    let server = answering_404(|request| {
        let sent = request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        let encoded = sent.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let pair = String::from_utf8(decoded).unwrap();
        let password = pair.split_once(':').unwrap().1.to_owned();
        format!("bad credentials {pair}; password {password}")
    })
    .await;
    let base = server
        .uri()
        .replacen("http://", "http://ci:apit0ken-XYZ@", 1);
    let secrets = MemorySecrets::new()
        .with("token", TOKEN)
        .with("base", base.as_str());
    let traces = call(plan("", ""), secrets).await;
    traces.assert_hides("apit0ken-XYZ");
    assert!(
        traces.texts[0].contains("HTTP 404: bad credentials"),
        "{}",
        traces.texts[0]
    );
}

/// A server that echoes only part of a secret URL (a 404 page quoting the path) does not leak
/// it: the parts of the URL the request went to are hidden too, not only the whole.
#[tokio::test]
async fn the_parts_of_a_url_from_a_secret_are_hidden_when_a_server_echoes_them() {
    let traces = secret_base_url_echoed(|request| {
        format!(
            "Cannot POST {} (query {})",
            request.url.path(),
            request.url.query().unwrap_or_default(),
        )
    })
    .await;
    traces.assert_hides("XsecretPath");
    traces.assert_hides("services/T0001");
    assert!(
        traces.texts[0].contains("404"),
        "the failure still says what happened: {}",
        traces.texts[0]
    );
}

/// A PHP server escapes `/` in the JSON it answers with: the parts of a URL from a secret,
/// echoed that way, are hidden too.
#[tokio::test]
async fn a_secret_url_echoed_with_escaped_slashes_is_hidden() {
    let traces = secret_base_url_echoed(|request| {
        format!(
            r#"{{"url":"{}"}}"#,
            request.url.as_str().replace('/', "\\/")
        )
    })
    .await;
    traces.assert_hides("XsecretPath");
}

/// A signed URL kept whole in a secret carries its credential percent-encoded in the query; a
/// server that echoes the query decoded must not give it away.
#[tokio::test]
async fn a_secret_url_s_query_is_hidden_when_echoed_decoded() {
    let server = answering_404(|request| {
        let query = request.url.query_pairs().map(|(k, v)| format!("{k}={v}"));
        format!("no such upload: {}", query.collect::<Vec<_>>().join("&"))
    })
    .await;
    let yaml = r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: hook}]}}}
webhooks:
  - {name: hook, uriTemplate: "{{secrets.upload}}", retryCount: 0}
"#;
    let plan = Arc::new(Plan::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}")));
    let upload = format!("{}/put?sig=Ab%2Bcd%2Fef%3D", server.uri());
    let traces = call(plan, MemorySecrets::new().with("upload", upload.as_str())).await;
    traces.assert_hides("Ab+cd/ef=");
    assert!(traces.texts[0].contains("404"), "{}", traces.texts[0]);
}

/// A receiver that names the query value it refused, as FastAPI's `422` does, does not give
/// away the key that a secret URL carries in its query, though the rest of the URL is not in
/// the answer.
#[tokio::test]
async fn a_query_value_of_a_secret_url_echoed_alone_is_hidden() {
    let server = answering(422, |request| {
        let (name, value) = request.url.query_pairs().next().unwrap();
        format!(r#"{{"detail":[{{"loc":["query","{name}"],"input":"{value}"}}]}}"#)
    })
    .await;
    let url = format!("{}/hook?api_key=k3yABCDEF123456", server.uri());
    let traces = call(
        secret_url_plan(),
        MemorySecrets::new().with("url", url.as_str()),
    )
    .await;
    traces.assert_hides("k3yABCDEF123456");
    assert!(
        traces.texts[0].starts_with(
            r#"HTTP 422: {"detail":[{"loc":["query","api_key"],"input":"[redacted]"}]}"#
        ),
        "{}",
        traces.texts[0]
    );
}

/// A Slack-style URL, whose last path segment is its credential: a `401` page that links back
/// to the path percent-encoded, or names the segment alone, has them hidden, while the short
/// segments around it (`services`, the team's id) stay readable.
#[tokio::test]
async fn a_secret_url_s_path_echoed_encoded_or_its_long_segment_alone_is_hidden() {
    let server = answering(401, |request| {
        let path = request.url.path();
        let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        let token = path.rsplit('/').next().unwrap();
        format!(r#"<a href="/login?next={next}">Sign in</a>: no hook {token} for team T0"#)
    })
    .await;
    let url = format!("{}/services/T0/B0/XYZ0123456789abcdef", server.uri());
    let traces = call(
        secret_url_plan(),
        MemorySecrets::new().with("url", url.as_str()),
    )
    .await;
    traces.assert_hides("XYZ0123456789abcdef");
    assert!(
        traces.texts[0].starts_with(
            r#"HTTP 401: <a href="/login?next=[redacted]">Sign in</a>: no hook [redacted] for team T0"#
        ),
        "{}",
        traces.texts[0]
    );
}

/// ASP.NET Core's JSON (System.Text.Json's default encoder) writes `+` and the quotes as `\u`
/// escapes: a secret quoted in its validation error is hidden all the same.
#[tokio::test]
async fn a_secret_quoted_by_an_asp_net_core_validation_error_is_hidden() {
    let server = answering(400, |_| {
        r#"{"errors":{"Token":["The value \u0027Zm9v\u002BYmFy/abc=\u0027 is not valid."]}}"#
            .to_owned()
    })
    .await;
    let secrets = MemorySecrets::new().with("token", "Zm9v+YmFy/abc=");
    let traces = call(plan(&server.uri(), ""), secrets).await;
    traces.assert_hides("YmFy");
    assert!(
        traces.texts[0].starts_with(
            r#"HTTP 400: {"errors":{"Token":["The value \u0027[redacted]\u0027 is not valid."]}}"#
        ),
        "{}",
        traces.texts[0]
    );
}

/// Encoders differ in which characters they percent-encode: a secret echoed through Python's
/// `quote` (which keeps `/`) or Go's `url.PathEscape` (which keeps `+` and `=`) is hidden as
/// well as in hookgate's own spelling.
#[tokio::test]
async fn a_secret_echoed_percent_encoded_by_another_encoder_is_hidden() {
    let pages: [fn(&wiremock::Request) -> String; 2] = [
        |_| "bad key Zm9v/YmFy%2BYmF6%3d%3D".to_owned(),
        |_| "bad key Zm9v%2fYmFy+YmF6==".to_owned(),
    ];
    for page in pages {
        let server = answering(401, page).await;
        let secrets = MemorySecrets::new().with("token", "Zm9v/YmFy+YmF6==");
        let traces = call(plan(&server.uri(), ""), secrets).await;
        traces.assert_hides("YmFy");
        assert!(
            traces.texts[0].starts_with("HTTP 401: bad key [redacted]"),
            "{}",
            traces.texts[0]
        );
    }
}

/// A secret read from a file keeps its line break, which the receiver trims before quoting it
/// back in its own JSON (PHP escapes `/`): the trimmed value is hidden in every spelling the
/// whole one is.
#[tokio::test]
async fn a_secret_trimmed_by_the_receiver_is_hidden_in_its_escaped_echo() {
    let server = answering(400, |_| r#"{"error":"bad token tok\/en+1"}"#.to_owned()).await;
    let yaml = r#"
application: checkout
targets: {prod: {constraints: {beforeDeployment: [runWebhook: {name: hook}]}}}
webhooks:
  - name: hook
    uriTemplate: "URI/hook"
    headers: [{key: Content-Type, value: application/json}]
    bodyTemplate: {inline: '{"token": "{{secrets.token}}"}'}
    retryCount: 0
"#
    .replace("URI", &server.uri());
    let plan = Arc::new(Plan::from_yaml(&yaml).unwrap());
    let secrets = MemorySecrets::new().with("token", "tok/en+1\n");
    let traces = call(plan, secrets).await;
    traces.assert_hides(r"tok\/en+1");
    assert!(
        traces.texts[0].starts_with(r#"HTTP 400: {"error":"bad token [redacted]"}"#),
        "{}",
        traces.texts[0]
    );
}

/// Hosts are case-insensitive, and servers and proxies echo URLs in their own spelling: the
/// parts of a URL from a secret are hidden in any ASCII case.
#[tokio::test]
async fn the_parts_of_a_url_from_a_secret_are_hidden_when_echoed_in_another_case() {
    let traces = secret_base_url_echoed(|request| {
        format!("NO ROUTE FOR {}", request.url.as_str().to_ascii_uppercase())
    })
    .await;
    traces.assert_hides("XSECRETPATH");
    traces.assert_hides("SERVICES/T0001");
    assert!(
        traces.texts[0].contains("NO ROUTE FOR"),
        "{}",
        traces.texts[0]
    );
}

#[tokio::test]
async fn a_base_url_from_a_secret_is_hidden_when_the_connection_fails() {
    // Shaped like a Slack incoming-webhook URL, whose path is the secret.
    let origin = closed_port();
    let base = format!("{origin}/services/T0001/B0002/XsecretPath");
    let secrets = MemorySecrets::new()
        .with("token", TOKEN)
        .with("base", base.as_str());
    let traces = call(plan("", ""), secrets).await;
    // The transport's own error (the last text) names the origin it could not reach, never the
    // path; everything the dispatcher produced hides the origin too.
    let (transport_error, dispatcher_texts) = traces.texts.split_last().unwrap();
    assert!(
        transport_error.contains(&origin) && !transport_error.contains("XsecretPath"),
        "{transport_error}"
    );
    for text in dispatcher_texts {
        assert!(
            !text.contains("XsecretPath"),
            "the base URL leaked into: {text}"
        );
    }
    assert!(!traces.log.contains("XsecretPath"), "{}", traces.log);
    assert!(
        traces.texts[0].contains("could not connect for POST [redacted]"),
        "{}",
        traces.texts[0]
    );
}

/// A receiver that refuses the call and echoes the request back does not put the gate's
/// callback id, which resolves the gate with any callback token, in the reason, the events or
/// the log: as sent in the body, and percent-encoded.
#[tokio::test]
async fn a_callback_uri_echoed_by_a_refusing_receiver_is_hidden() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|request: &wiremock::Request| {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            let encoded: String = url::form_urlencoded::byte_serialize(body.as_bytes()).collect();
            ResponseTemplate::new(503)
                .set_body_string(format!("invalid payload: {body} ({encoded})"))
        })
        .mount(&server)
        .await;
    let secrets = MemorySecrets::new().with("token", TOKEN);
    let traces = call(plan(&server.uri(), ""), secrets).await;
    let id = CallbackId([7; 16]).to_string();
    traces.assert_hides(&id);
    traces.assert_hides(&id.to_ascii_uppercase());
    assert!(
        traces.texts[0].starts_with("HTTP 503: invalid payload: {"),
        "the failure still says what happened: {}",
        traces.texts[0]
    );
    assert!(
        traces.texts[0].contains("https://hg.example/callbacks/[redacted]"),
        "{}",
        traces.texts[0]
    );
}
