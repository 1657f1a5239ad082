//! Hostile input at every entry point that takes bytes from outside (issue 8): the callback
//! endpoint, deployment files, templates, callback-URI extraction, token answers, token
//! requests, JWTs and signature verification. Arbitrary bytes and structured-but-hostile input (deep nesting, huge numbers,
//! odd unicode, `{{`-heavy text) must give a typed error or a documented HTTP status, never a
//! panic. The fuzz targets in `fuzz/` explore the same entry points for longer.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use hookgate::Secret;
use hookgate::auth::{Principal, StaticTokens};
use hookgate::config::{ConfigError, Plan};
use hookgate::core::{Action, CallResult, Deployment, DeploymentId, StartOptions};
use hookgate::ids::RandomIds;
use hookgate::receiver::{CALLBACK_URI_HEADER, CallbackUriError, ReceivedRequest};
use hookgate::server::{CallbackHandler, MemoryGates};
use hookgate::template::{
    ArmoryValues, ArmoryVar, Escape, RenderValues, RequestTemplate, Template, TemplateError,
    Variable,
};
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Enough cases to meet each kind of hostile input many times, few enough to keep the file
/// well under its time budget in debug builds.
fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Runs a future to its end on a fresh current-thread runtime (with timers, for retries).
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// `depth` opening brackets or braces (as `{"a":`), closed only when `closed`.
fn nested_json(depth: usize, objects: bool, closed: bool) -> String {
    let (open, close) = if objects {
        (r#"{"a":"#, "}")
    } else {
        ("[", "]")
    };
    let mut text = open.repeat(depth);
    if closed {
        text.push('1');
        text.push_str(&close.repeat(depth));
    }
    text
}

/// Text that hurts parsers: arbitrary unicode, control characters and bidi overrides,
/// `{{`-heavy fragments, huge or odd numbers, and deep nesting, open or closed.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}a-z.\\\\\"%/ ]{0,64}",
        "[\\x00-\\x1f\u{7f}\u{85}\u{200b}\u{202e}\u{feff}\u{fffd}\u{10ffff}é𝄞]{0,32}",
        prop_oneof![
            Just("1e999999".to_owned()),
            Just("-0".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("9".repeat(400)),
            Just("0.000000000000000000000000000001e-400".to_owned()),
            Just("NaN".to_owned()),
        ],
        (1usize..300, any::<bool>(), any::<bool>())
            .prop_map(|(depth, objects, closed)| nested_json(depth, objects, closed)),
    ]
}

/// Bytes: hostile text, or anything at all (invalid UTF-8 included).
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        hostile_text().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

// ---------------------------------------------------------------------------------------------
// The callback endpoint
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "5b0a8c3e9d2f4a7b8c1d0e6f3a2b9c8d";

const PLAN: &str = r#"
application: checkout
targets:
  dev:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
        - pause: {untilApproved: true, requiresRoles: [release-manager]}
webhooks:
  - {name: ticket, uriTemplate: "https://tickets.example/x"}
"#;

/// The statuses PROTOCOL.md §5 answers with.
const DOCUMENTED: [u16; 10] = [200, 400, 401, 403, 404, 405, 409, 410, 413, 415];

/// A handler over deployment `d1`, whose webhook was sent and waits for its callback; also
/// returns that callback's path.
fn handler() -> (CallbackHandler, String) {
    let plan = Arc::new(Plan::from_yaml(PLAN).expect("a valid plan"));
    let now = Utc::now();
    let mut deployment = Deployment::start(
        plan,
        DeploymentId::from("d1"),
        StartOptions::default(),
        &mut RandomIds,
        now,
    );
    let mut callback = None;
    while let Some(action) = deployment.poll_action() {
        if let Action::CallWebhook(call) = action {
            deployment
                .handle_call_result(
                    now,
                    call.gate,
                    call.attempt,
                    CallResult::Sent { status: 202 },
                )
                .expect("the call was pending");
            callback = Some(call.callback_id);
        }
    }
    let callback = callback.expect("the plan calls a webhook first");
    let gates = Arc::new(MemoryGates::new(hookgate::clock::SystemClock));
    gates.insert(deployment);
    let principal = Principal::new("ci").with_roles(["release-manager"]);
    let tokens = StaticTokens::new().with_token(TOKEN, principal);
    let handler = CallbackHandler::new(gates, Arc::new(tokens));
    (handler, format!("/callbacks/{callback}/callback"))
}

/// A request with the valid token when `token`; `None` when `http` refuses the path.
fn request(
    method: Method,
    path: &str,
    token: bool,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Option<Request<Full<Bytes>>> {
    let mut request = Request::builder().method(method).uri(path);
    if token {
        request = request.header(AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        request = request.header(CONTENT_TYPE, value);
    }
    request.body(Full::new(Bytes::copy_from_slice(body))).ok()
}

/// A documented status, a JSON body saying what happened, and a challenge on 401.
fn check_answer(response: &Response<Bytes>) -> Result<(), TestCaseError> {
    let status = response.status();
    prop_assert!(DOCUMENTED.contains(&status.as_u16()), "status {}", status);
    if status == StatusCode::UNAUTHORIZED {
        prop_assert!(response.headers().contains_key(WWW_AUTHENTICATE));
    }
    let json: Value = serde_json::from_slice(response.body())
        .map_err(|e| TestCaseError::fail(format!("the answer is not JSON: {e}")))?;
    let field = |name: &str| json[name].as_str().is_some_and(|text| !text.is_empty());
    if status == StatusCode::OK {
        prop_assert!(field("status"), "{}", json);
    } else {
        prop_assert!(field("error") && field("message"), "{}", json);
    }
    Ok(())
}

/// Where a hostile request is sent: the open gate, an approval, or any path at all.
fn hostile_path() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (any::<u32>(), any::<bool>(), "[a-z0-9%]{0,12}").prop_map(|(gate, approve, id)| {
            let action = if approve { "approve" } else { "reject" };
            Some(format!("/deployments/{id}/gates/{gate}/{action}"))
        }),
        "/[\\x21-\\x7e]{0,48}".prop_map(Some),
        "/callbacks/[0-9a-fA-F%]{0,40}(/callback)?".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn the_callback_endpoint_answers_any_request_with_a_documented_status(
        body in hostile_bytes(),
        path in hostile_path(),
        post in proptest::bool::weighted(0.9),
        token in proptest::bool::weighted(0.8),
        content_type in proptest::option::of(prop_oneof![
            Just(b"application/json".to_vec()),
            Just(b"application/vnd.x+json; charset=utf-8".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..24),
        ]),
    ) {
        let (handler, gate) = handler();
        let method = if post { Method::POST } else { Method::PUT };
        let path = path.unwrap_or(gate);
        // Paths `http` refuses never reach a server.
        if let Some(request) = request(method, &path, token, content_type.as_deref(), &body) {
            let response = block_on(handler.handle(request));
            check_answer(&response)?;
            if !token {
                prop_assert_ne!(response.status(), StatusCode::OK);
            }
        }
    }

    #[test]
    fn a_valid_callback_with_a_hostile_message_is_applied(
        message in hostile_text(),
        success in any::<bool>(),
    ) {
        let (handler, gate) = handler();
        let body = json!({"success": success, "mdMessage": message}).to_string();
        let request = request(Method::POST, &gate, true, Some(b"application/json"), body.as_bytes())
            .expect("a valid request");
        let response = block_on(handler.handle(request));
        check_answer(&response)?;
        prop_assert_eq!(response.status(), StatusCode::OK);
    }
}

#[test]
fn deeply_nested_and_numeric_callback_bodies_are_bad_requests() {
    let bodies = [
        // Under the 64 KiB body limit, so the parser (not the limit) meets them.
        nested_json(10_000, false, false),
        nested_json(10_000, true, true),
        r#"{"success": 1e999999}"#.to_owned(),
        format!(r#"{{"success": {}}}"#, "9".repeat(10_000)),
        r#"{"success": "true"}"#.to_owned(),
        r#"{"inProgress": true}"#.to_owned(),
        "\u{feff}{\"success\": true}".to_owned(),
    ];
    for body in bodies {
        let (handler, gate) = handler();
        let request = request(Method::POST, &gate, true, None, body.as_bytes()).unwrap();
        let response = block_on(handler.handle(request));
        check_answer(&response).unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{}",
            &body[..body.len().min(40)]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment files
// ---------------------------------------------------------------------------------------------

/// A plausible deployment file with hostile values where a person would type text or numbers.
/// Most cases keep the parts the validator checks (durations, retry counts, the URI's start,
/// header names) within what it accepts, so that many files give a plan carrying the hostile
/// strings; the others put hostile values there too.
fn hostile_plan() -> impl Strategy<Value = Value> {
    let uri = prop_oneof![
        4 => hostile_text().prop_map(|t| format!("https://h.example/{t}")),
        1 => hostile_text(),
    ];
    let header = prop_oneof![4 => Just("X-Hostile".to_owned()), 1 => hostile_text()];
    let duration = prop_oneof![4 => 0i64..=366 * 86_400, 1 => any::<i64>()];
    let retries = prop_oneof![4 => 0u64..=100, 1 => any::<u64>()];
    (
        (hostile_text(), hostile_text(), hostile_text(), hostile_text()),
        (uri, header, duration, retries),
    )
        .prop_map(
            |((application, target, webhook, template), (uri, header, duration, retries))| {
                json!({
                    "application": application,
                    "targets": {
                        target: {
                            "constraints": {
                                "beforeDeployment": [
                                    {"runWebhook": {"name": webhook.clone(), "context": {"k": template.clone()}}},
                                    {"pause": {"duration": duration, "unit": "seconds"}},
                                ],
                            },
                        },
                    },
                    "webhooks": [{
                        "name": webhook,
                        "uriTemplate": uri,
                        "headers": [{"key": header, "value": template.clone()}],
                        "bodyTemplate": {"inline": template},
                        "retryCount": retries,
                    }],
                })
            },
        )
}

fn check_plan(result: Result<Plan, hookgate::config::ConfigError>) -> Result<(), TestCaseError> {
    if let Err(error) = result {
        prop_assert!(!error.to_string().is_empty(), "{:?}", error);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_text_gives_a_plan_or_an_explained_error(source in hostile_text()) {
        check_plan(Plan::from_yaml(&source))?;
        check_plan(Plan::from_json(&source))?;
    }
}

/// Counts the files accepted, so that a generator whose every file is refused (the plan
/// branch never taken) fails here rather than passing unseen.
#[test]
fn hostile_values_in_a_plausible_file_give_a_plan_or_an_explained_error() {
    use std::cell::Cell;

    use proptest::test_runner::TestRunner;

    let (tried, accepted) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..cases()
    });
    runner
        .run(&hostile_plan(), |file| {
            tried.set(tried.get() + 1);
            let text = file.to_string();
            let from_json = Plan::from_json(&text);
            if let Ok(plan) = &from_json {
                accepted.set(accepted.get() + 1);
                let (application, target) = file["targets"]
                    .as_object()
                    .and_then(|t| t.keys().next())
                    .map(|t| (file["application"].as_str().unwrap_or_default(), t))
                    .expect("one target");
                prop_assert_eq!(plan.application(), application, "carried as it is");
                prop_assert!(plan.environment_by_name(target).is_some(), "{:?}", target);
            }
            check_plan(from_json)?;
            // JSON is YAML too, and the YAML reader is the one files usually go through.
            check_plan(Plan::from_yaml(&text))
        })
        .unwrap();
    // About 40% are accepted (95 to 115 of 258 in six runs): 1 in 16 is far below any run's.
    assert!(
        accepted.get() * 16 >= tried.get(),
        "only {} of {} files gave a plan",
        accepted.get(),
        tried.get()
    );
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused() {
    let laughs = (1..=9).fold(
        "a0: &a0 [x, x, x, x, x, x, x, x, x]\n".to_owned(),
        |doc, i| {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 9].join(", ");
            format!("{doc}a{i}: &a{i} [{items}]\n")
        },
    );
    // Each refused for its depth or size, not for the shape a deployment file has: as JSON,
    // by serde_json's own recursion limit (or as not JSON at all); as YAML, by the reader's.
    let recursion = |e: &ConfigError| matches!(e, ConfigError::Syntax { message, .. } if message.contains("recursion limit"));
    let not_json = |e: &ConfigError| matches!(e, ConfigError::Syntax { .. });
    let too_large = |what: &'static str| move |e: &ConfigError| matches!(e, ConfigError::TooLarge { what: w, .. } if *w == what);
    let too_deep = too_large("nesting depth");
    let too_many_nodes = too_large("nodes (maps, lists and values)");
    type Why<'a> = &'a dyn Fn(&ConfigError) -> bool;
    let cases: [(String, Why, Why); 5] = [
        (nested_json(100_000, false, false), &recursion, &recursion),
        (nested_json(100_000, true, true), &recursion, &too_deep),
        (nested_json(200, false, true), &recursion, &too_deep),
        ("- ".repeat(10_000), &not_json, &too_deep),
        // Valid but for the bomb, so only the reader's node budget can refuse it.
        (
            laughs + "application: x\ntargets: {dev: {}}\n",
            &not_json,
            &too_many_nodes,
        ),
    ];
    for (source, as_json, as_yaml) in cases {
        let e = Plan::from_json(&source).expect_err("refused as JSON");
        assert!(as_json(&e), "{e:?}");
        let e = Plan::from_yaml(&source).expect_err("refused as YAML");
        assert!(as_yaml(&e), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// `{{`-heavy template text: braces, variable names, dots and spaces in any order.
fn template_text() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_text(),
        proptest::collection::vec(
            prop_oneof![
                Just("{{"),
                Just("}}"),
                Just("{"),
                Just("}"),
                Just("{{{"),
                Just(" "),
                Just("armory."),
                Just("armory.callbackUri"),
                Just("armory.preview."),
                Just("context."),
                Just("secrets."),
                Just("k"),
                Just("é"),
                Just("https://h.example/"),
                Just("\""),
                Just("\n"),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// Values for every variable `templates` use, all set to `value`.
struct Values {
    armory: ArmoryValues,
    context: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl Values {
    fn new<'a>(templates: impl IntoIterator<Item = &'a Template>, value: &str) -> Self {
        let mut values = Self {
            armory: {
                let mut armory = ArmoryValues::default();
                armory.callback_uri = value.to_owned();
                armory.deployment_id = value.to_owned();
                armory.application_name = value.to_owned();
                armory.environment_name = value.to_owned();
                armory.account_name = value.to_owned();
                armory.namespace = value.to_owned();
                armory.replica_set_name = Some(value.to_owned());
                armory.preview = BTreeMap::new();
                armory
            },
            context: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        for variable in templates.into_iter().flat_map(Template::variables) {
            match variable {
                Variable::Context(key) => {
                    values.context.insert(key.clone(), value.to_owned());
                }
                Variable::Secret(name) => {
                    values.secrets.insert(name.clone(), Secret::new(value));
                }
                Variable::Armory(ArmoryVar::Preview(service)) => {
                    values
                        .armory
                        .preview
                        .insert(service.clone(), value.to_owned());
                }
                _ => {}
            }
        }
        values
    }

    fn borrow(&self) -> RenderValues<'_> {
        RenderValues::new(&self.armory, &self.context, &self.secrets)
    }
}

/// Every parse error points at the `{{` it is about.
fn check_template_error(source: &str, error: &TemplateError) -> Result<(), TestCaseError> {
    prop_assert!(!error.to_string().is_empty());
    let offset = match error {
        TemplateError::Unclosed { offset }
        | TemplateError::Empty { offset }
        | TemplateError::Unsupported { offset, .. }
        | TemplateError::UnknownVariable { offset, .. } => *offset,
        other => return Err(TestCaseError::fail(format!("a new error kind: {other:?}"))),
    };
    prop_assert!(
        source
            .get(offset..)
            .is_some_and(|rest| rest.starts_with("{{")),
        "offset {} in {:?}",
        offset,
        source
    );
    Ok(())
}

/// What each escaping promises, where the template's own text cannot break it.
fn check_rendered(template: &Template, escape: Escape, out: &str) -> Result<(), TestCaseError> {
    let source = template.source();
    match escape {
        Escape::Json if !source.contains(['"', '\\']) && !source.contains(char::is_control) => {
            prop_assert!(
                serde_json::from_str::<String>(&format!("\"{out}\"")).is_ok(),
                "not JSON-string content: {:?}",
                out
            );
        }
        Escape::Header => prop_assert!(
            out.matches(['\r', '\n']).count() <= source.matches(['\r', '\n']).count(),
            "a value added a line break: {:?}",
            out
        ),
        Escape::Uri if !template.starts_with_variable() => {
            for delimiter in ['/', '?', '#', '&', ' '] {
                prop_assert!(
                    out.matches(delimiter).count() <= source.matches(delimiter).count(),
                    "a value added {:?}: {:?}",
                    delimiter,
                    out
                );
            }
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn templates_parse_or_point_at_the_bad_placeholder_and_render_safely(
        source in template_text(),
        value in hostile_text(),
    ) {
        let template = match Template::parse(&source) {
            Ok(template) => template,
            Err(error) => return check_template_error(&source, &error),
        };
        let values = Values::new([&template], &value);
        for escape in [Escape::Json, Escape::Uri, Escape::Header, Escape::None] {
            match template.render(&values.borrow(), escape) {
                Ok(out) => check_rendered(&template, escape, &out)?,
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn request_templates_render_to_a_valid_request_or_an_explained_error(
        uri in template_text(),
        header in template_text(),
        body in template_text(),
        method in "[A-Za-z!#$%&'*+.^_`|~ ]{0,8}",
        value in hostile_text(),
    ) {
        let (Ok(uri), Ok(header), Ok(body)) =
            (Template::parse(&uri), Template::parse(&header), Template::parse(&body))
        else {
            return Ok(());
        };
        let values = Values::new([&uri, &header, &body], &value);
        let request = RequestTemplate::new(uri)
            .with_method(method)
            .with_header("X-Hostile", header)
            .with_body(body);
        match request.render(&values.borrow()) {
            Ok(rendered) => {
                prop_assert!(matches!(rendered.uri().scheme_str(), Some("http" | "https")));
                prop_assert!(rendered.uri().host().is_some());
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Callback-URI extraction
// ---------------------------------------------------------------------------------------------

fn check_callback_uri(result: Result<url::Url, CallbackUriError>) -> Result<(), TestCaseError> {
    match result {
        Ok(url) => {
            prop_assert!(matches!(url.scheme(), "http" | "https"), "{}", url);
            prop_assert!(url.host().is_some(), "{}", url);
        }
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_received_request_gives_a_url_or_an_explained_error(
        body in hostile_bytes(),
        query in proptest::option::of(hostile_text()),
        header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        pointer in hostile_text(),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(value) = header.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
            headers.insert(CALLBACK_URI_HEADER, value);
        }
        let mut request = ReceivedRequest::new().with_body(&body).with_headers(&headers);
        if let Some(query) = &query {
            request = request.with_query(query);
        }
        check_callback_uri(request.callback_uri())?;
        check_callback_uri(request.callback_uri_at(&pointer))?;
    }

    #[test]
    fn a_hostile_value_under_a_known_key_is_used_or_refused_never_skipped(
        value in hostile_text(),
        nested in any::<bool>(),
    ) {
        let body = if nested {
            json!({"client_payload": {"callbackUri": value}})
        } else {
            json!({"callbackUri": value})
        };
        let result = ReceivedRequest::new().with_json(&body).callback_uri();
        prop_assert!(
            !matches!(result, Err(CallbackUriError::NotFound { .. })),
            "{:?}",
            result
        );
        check_callback_uri(result)?;
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth2 token answers
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "receiver")]
mod token_answers {
    use std::time::Duration;

    use hookgate::receiver::{Backoff, ClientCredentials, TokenError, TokenSource};
    use hookgate::transport::TransportError;

    use super::*;

    /// Has no character of `[redacted]`, so masking it cannot spell it again.
    const CLIENT_SECRET: &str = "S3CR3T-QZ9-CLIENT";

    /// A token source whose endpoint always answers `status` with `body`, retrying once
    /// without waiting.
    fn source(status: StatusCode, body: Vec<u8>) -> ClientCredentials {
        let body = Bytes::from(body);
        let transport = move |_: Request<Bytes>| {
            let mut response = Response::new(body.clone());
            *response.status_mut() = status;
            async move { Ok::<_, TransportError>(response) }
        };
        let backoff = Backoff::default()
            .with_max_attempts(2)
            .with_base(Duration::ZERO)
            .with_max_delay(Duration::ZERO);
        ClientCredentials::builder("client", CLIENT_SECRET)
            .backoff(backoff)
            .build(transport)
            .expect("a valid configuration")
    }

    /// Fetches twice (the second from the cache or anew); both must agree.
    fn token(status: StatusCode, body: Vec<u8>) -> Result<String, TokenError> {
        let tokens = source(status, body);
        block_on(async {
            let first = tokens.token().await?.expose().to_owned();
            let second = tokens.token().await?.expose().to_owned();
            assert_eq!(first, second);
            Ok(first)
        })
    }

    fn check_error(error: &TokenError) -> Result<(), TestCaseError> {
        let message = error.to_string();
        prop_assert!(!message.is_empty());
        prop_assert!(!message.contains(CLIENT_SECRET), "{}", message);
        // What the server said is escaped: it cannot break or forge a log line.
        prop_assert!(!message.chars().any(char::is_control), "{:?}", message);
        Ok(())
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn any_answer_gives_a_token_only_when_2xx_and_never_leaks_the_secret(
            status in 100u16..600,
            body in prop_oneof![
                hostile_bytes(),
                hostile_text().prop_map(|error| {
                    json!({"error": error, "error_description": CLIENT_SECRET}).to_string().into_bytes()
                }),
            ],
        ) {
            let status = StatusCode::from_u16(status).expect("in range");
            match token(status, body) {
                Ok(token) => {
                    prop_assert!(status.is_success());
                    prop_assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
                }
                Err(error) => check_error(&error)?,
            }
        }

        #[test]
        fn a_token_is_accepted_exactly_when_it_fits_a_header(token_text in hostile_text()) {
            let body = json!({"access_token": token_text, "token_type": "Bearer"}).to_string();
            let usable = !token_text.is_empty() && token_text.bytes().all(|b| b.is_ascii_graphic());
            match token(StatusCode::OK, body.into_bytes()) {
                Ok(token) => prop_assert!(usable && token == token_text),
                Err(error) => {
                    prop_assert!(!usable, "refused a usable token: {}", error);
                    prop_assert!(matches!(error, TokenError::InvalidResponse { .. }), "{:?}", error);
                    check_error(&error)?;
                }
            }
        }

        #[test]
        fn any_expires_in_is_accepted_or_refused_without_overflow(
            expires_in in prop_oneof![
                any::<u64>().prop_map(|n| json!(n)),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|n| json!(n)),
                hostile_text().prop_map(Value::String),
                Just(json!(u64::MAX.to_string())),
                Just(json!(i64::MAX as u64 + 1)),
            ],
        ) {
            let body = json!({"access_token": "abc", "expires_in": expires_in}).to_string();
            match token(StatusCode::OK, body.into_bytes()) {
                Ok(token) => prop_assert_eq!(token, "abc"),
                Err(error) => {
                    prop_assert!(matches!(error, TokenError::InvalidResponse { .. }), "{:?}", error);
                    check_error(&error)?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signature verification
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "signing")]
mod signatures {
    use std::time::Duration;

    use chrono::DateTime;
    use hookgate::signing::{
        SignatureError, Signer, SigningSecret, Verifier, WEBHOOK_ID, WEBHOOK_SIGNATURE,
        WEBHOOK_TIMESTAMP,
    };

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn secret() -> SigningSecret {
        SigningSecret::parse(SECRET).expect("a valid secret")
    }

    fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(prop_oneof![
            hostile_bytes(),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            "(v1,[A-Za-z0-9+/=]{0,50} ?){0,4}".prop_map(String::into_bytes),
        ])
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn hostile_headers_are_refused_with_a_reason(
            id in header_value(),
            timestamp in header_value(),
            signature in header_value(),
            body in hostile_bytes(),
            now in any::<i64>(),
            tolerance in any::<u64>(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [(WEBHOOK_ID, id), (WEBHOOK_TIMESTAMP, timestamp), (WEBHOOK_SIGNATURE, signature)] {
                if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(name, value);
                }
            }
            let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
            let verifier = Verifier::new(secret()).with_tolerance(Duration::from_secs(tolerance));
            // Without the secret, no generated header can carry a valid signature.
            let error = verifier.verify_at(&headers, &body, now).expect_err("forged");
            prop_assert!(!error.to_string().is_empty());
        }

        #[test]
        fn hostile_secrets_parse_or_are_refused_with_a_reason(text in hostile_text()) {
            if let Err(error) = SigningSecret::parse(&text) {
                prop_assert!(!error.to_string().is_empty());
            }
        }

        #[test]
        fn what_the_signer_signs_verifies_at_any_time_and_any_body(
            id in hostile_text(),
            timestamp in any::<i64>(),
            body in hostile_bytes(),
        ) {
            match Signer::new(secret()).sign(&id, timestamp, &body) {
                Ok(signed) => {
                    let mut headers = HeaderMap::new();
                    signed.apply(&mut headers);
                    let verifier = Verifier::new(secret()).with_tolerance(Duration::from_secs(u64::MAX));
                    prop_assert_eq!(verifier.verify_at(&headers, &body, Utc::now()), Ok(()));
                    let mut tampered = body.clone();
                    tampered.push(b'x');
                    prop_assert_eq!(
                        verifier.verify_at(&headers, &tampered, Utc::now()),
                        Err(SignatureError::NoMatchingSignature)
                    );
                }
                Err(error) => prop_assert!(
                    matches!(error, SignatureError::InvalidMessageId { .. }),
                    "{:?}",
                    error
                ),
            }
        }
    }

    #[test]
    fn extreme_timestamps_are_too_old_or_too_new_without_overflow() {
        let verifier = Verifier::new(secret());
        let now = Utc::now();
        for (timestamp, old) in [(i64::MIN, true), (i64::MAX, false), (-1, true)] {
            let signed = Signer::new(secret())
                .sign("msg_1", timestamp, b"{}")
                .unwrap();
            let mut headers = HeaderMap::new();
            signed.apply(&mut headers);
            let error = verifier.verify_at(&headers, b"{}", now).unwrap_err();
            assert_eq!(
                matches!(error, SignatureError::TooOld { .. }),
                old,
                "{timestamp}: {error}"
            );
            assert!(
                matches!(
                    error,
                    SignatureError::TooOld { .. } | SignatureError::TooNew { .. }
                ),
                "{error}"
            );
        }
        let at_the_end = DateTime::<Utc>::MAX_UTC;
        let signed = Signer::new(secret()).sign("msg_1", i64::MIN, b"").unwrap();
        let mut headers = HeaderMap::new();
        signed.apply(&mut headers);
        assert!(matches!(
            verifier.verify_at(&headers, b"", at_the_end),
            Err(SignatureError::TooOld { .. })
        ));
    }
}

/// The token endpoint's request reading: any `Authorization` header (Basic credentials of any
/// bytes included), content type and body is answered with a token or an RFC 6749 error.
#[cfg(feature = "issuer")]
mod token_requests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use hookgate::auth::{IssuerClient, TokenIssuer};

    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::builder(
            "https://hookgate.example",
            "hookgate",
            "signing key: 32+ random bytes in production",
        )
        .client(
            IssuerClient::from_secret("ci", &Secret::new("c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6"))
                .with_scopes(["callbacks", "approvals"]),
        )
        .build()
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_request_gets_a_token_or_an_rfc_6749_error(
            authorization in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
            basic in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
            content_type in proptest::option::of(".{0,40}"),
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "(grant_type|client_id|client_secret|scope|audience)=[^&]{0,20}(&[a-z_]{1,14}=[^&]{0,40}){0,5}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            let authorization = match (authorization, basic) {
                (_, Some(raw)) => Some(format!("Basic {}", STANDARD.encode(raw)).into_bytes()),
                (raw, None) => raw,
            };
            let content_type =
                content_type.as_deref().or(Some("application/x-www-form-urlencoded"));
            if let Err(e) = issuer().issue_with_authorization(authorization.as_deref(), content_type, &body) {
                prop_assert!(!e.code().is_empty());
                prop_assert!(!e.to_string().contains("c1f0e5d8a7b6c5d4e3f2a1b0c9d8e7f6"));
            }
        }
    }
}

/// The JWT verifier: tokens of any header, payload and signature, the well-formed JSON of
/// out-of-range times and mistyped claims included, are refused with a typed error.
#[cfg(feature = "jwt")]
mod jwts {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hookgate::auth::{CallbackAuthorizer, JwtAuthorizer};

    use super::*;

    fn jwt_like() -> impl Strategy<Value = String> {
        let header = prop_oneof![
            Just(r#"{"alg":"RS256","kid":"k1"}"#.to_owned()),
            Just(r#"{"alg":"HS256"}"#.to_owned()),
            Just(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#.to_owned()),
            Just(r#"{"alg":"none"}"#.to_owned()),
            ".{0,40}",
        ];
        let payload = prop_oneof![
            Just(r#"{"iss":"https://idp.example","aud":"hookgate","sub":"x","exp":1e400}"#.to_owned()),
            Just(r#"{"iss":"https://idp.example","aud":["hookgate",1,null],"sub":"x","exp":-1e308,"nbf":1e308}"#.to_owned()),
            Just(r#"{"iss":"https://idp.example","aud":"hookgate","sub":"x","exp":9223372036854775808,"scope":["a"],"scp":"b c"}"#.to_owned()),
            ".{0,60}",
        ];
        let signature = proptest::collection::vec(any::<u8>(), 0..300);
        (header, payload, signature).prop_map(|(h, p, s)| {
            let part = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
            format!("{}.{}.{}", part(h.as_bytes()), part(p.as_bytes()), part(&s))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_token_without_a_valid_signature_is_refused(token in prop_oneof![jwt_like(), ".{0,200}"]) {
            let authorizer = JwtAuthorizer::builder("https://idp.example", "hookgate")
                .hs256("a shared HS256 secret that is long enough")
                .rs256_pem(include_bytes!("data/jwt/rsa_public.pem"))
                .es256_pem(include_bytes!("data/jwt/ec_public.pem"))
                .build()
                .unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let verdict = runtime.block_on(authorizer.authorize(&token));
            prop_assert!(verdict.is_err(), "{verdict:?}");
        }
    }
}
