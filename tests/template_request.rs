//! `RequestTemplate::render`: whole requests, including Armory's documented GitHub example.

use std::collections::BTreeMap;

use bytes::Bytes;
use hookgate::Secret;
use hookgate::template::{
    ArmoryValues, RenderError, RenderValues, RenderedRequest, RequestTemplate, Template,
};

const SECRET_VALUE: &str = "ghp_SUPERSECRETVALUE";

fn t(source: &str) -> Template {
    Template::parse(source).unwrap()
}

/// Armory's GitHub `repository_dispatch` example (docs: "Webhook-based approvals").
fn github_dispatch() -> RequestTemplate {
    RequestTemplate::new(t(
        "https://api.github.com/repos/{{context.owner}}/{{context.repo}}/dispatches",
    ))
    .with_header("Authorization", t("token {{secrets.github_token}}"))
    .with_header("Content-Type", t("application/json"))
    .with_body(t(
        r#"{"event_type": "webhookCallback", "client_payload": {"callbackUri": "{{armory.callbackUri}}/callback"}}"#,
    ))
}

struct Values {
    armory: ArmoryValues,
    context: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
}

impl Values {
    fn new(context: &[(&str, &str)]) -> Self {
        Self {
            armory: {
                let mut armory = ArmoryValues::default();
                armory.callback_uri = "https://gate.example.com/callbacks/7f3a".into();
                armory
            },
            context: context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: BTreeMap::from([
                ("github_token".to_owned(), Secret::new(SECRET_VALUE)),
                (
                    "base".to_owned(),
                    Secret::new("https://hooks.example.com/T0/B0"),
                ),
            ]),
        }
    }

    fn get(&self) -> RenderValues<'_> {
        RenderValues::new(&self.armory, &self.context, &self.secrets)
    }
}

fn render(
    template: &RequestTemplate,
    context: &[(&str, &str)],
) -> Result<RenderedRequest, RenderError> {
    template.render(&Values::new(context).get())
}

#[test]
fn github_repository_dispatch_renders_byte_for_byte() {
    let rendered = render(
        &github_dispatch(),
        &[("owner", "acme"), ("repo", "checkout")],
    )
    .unwrap();
    let request: http::Request<Bytes> = rendered.into();
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(
        request.uri().to_string(),
        "https://api.github.com/repos/acme/checkout/dispatches"
    );
    let headers: Vec<_> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [
            ("authorization", "token ghp_SUPERSECRETVALUE"),
            ("content-type", "application/json"),
        ]
    );
    assert!(request.headers()["authorization"].is_sensitive());
    assert!(!request.headers()["content-type"].is_sensitive());
    assert_eq!(
        request.body().as_ref(),
        br#"{"event_type": "webhookCallback", "client_payload": {"callbackUri": "https://gate.example.com/callbacks/7f3a/callback"}}"#
    );
}

/// Credentials in the URL are sent as HTTP clients send them, `Authorization: Basic` of the
/// decoded `user:password` (RFC 7617), never in the request line; a header template setting
/// `Authorization` wins over them.
#[test]
fn credentials_in_the_url_become_a_sensitive_basic_authorization() {
    let in_url = RequestTemplate::new(t("https://ci%2Dbot:p%40ss:w0rd@ci.example/job/x?a=1"));
    let request: http::Request<Bytes> = render(&in_url, &[]).unwrap().into();
    assert_eq!(request.uri().to_string(), "https://ci.example/job/x?a=1");
    let authorization = &request.headers()["authorization"];
    // base64 of `ci-bot:p@ss:w0rd`.
    assert_eq!(authorization, "Basic Y2ktYm90OnBAc3M6dzByZA==");
    assert!(authorization.is_sensitive());

    let user_only = RequestTemplate::new(t("https://ci-bot@ci.example/"));
    let request: http::Request<Bytes> = render(&user_only, &[]).unwrap().into();
    assert_eq!(request.uri().to_string(), "https://ci.example/");
    assert_eq!(request.headers()["authorization"], "Basic Y2ktYm90Og==");

    let both = in_url.with_header("Authorization", t("token {{secrets.github_token}}"));
    let request: http::Request<Bytes> = render(&both, &[]).unwrap().into();
    assert_eq!(request.uri().to_string(), "https://ci.example/job/x?a=1");
    let sent: Vec<_> = request.headers().get_all("authorization").iter().collect();
    assert_eq!(sent, ["token ghp_SUPERSECRETVALUE"]);
}

#[test]
fn secret_names_lists_each_needed_secret_once() {
    let template =
        github_dispatch().with_header("X-Again", t("{{secrets.github_token}} {{secrets.other}}"));
    let names: Vec<_> = template.secret_names().into_iter().collect();
    assert_eq!(names, ["github_token", "other"]);
}

#[test]
fn json_content_types_switch_the_body_to_json_escaping() {
    let value = "quote \" backslash \\ newline \n end";
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/vnd.github+json",
    ] {
        let template = RequestTemplate::new(t("https://x.example/"))
            .with_header("content-type", t(content_type))
            .with_body(t(r#"{"v": "{{context.v}}"}"#));
        let rendered = render(&template, &[("v", value)]).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(rendered.body()).unwrap();
        assert_eq!(parsed["v"], value, "{content_type}");
    }
    let plain = RequestTemplate::new(t("https://x.example/"))
        .with_header("Content-Type", t("text/plain"))
        .with_body(t("v={{context.v}}"));
    assert_eq!(
        render(&plain, &[("v", "a\"b")]).unwrap().body().as_ref(),
        b"v=a\"b"
    );
}

#[test]
fn uri_values_are_encoded_and_a_leading_secret_base_is_not() {
    let template = RequestTemplate::new(t("https://x.example/items/{{context.p}}"));
    let rendered = render(&template, &[("p", "a b/c?d")]).unwrap();
    assert_eq!(
        rendered.uri().to_string(),
        "https://x.example/items/a%20b%2Fc%3Fd"
    );

    let template = RequestTemplate::new(t("{{secrets.base}}/x?team={{context.team}}"));
    let rendered = render(&template, &[("team", "a&b")]).unwrap();
    assert_eq!(
        rendered.uri().to_string(),
        "https://hooks.example.com/T0/B0/x?team=a%26b"
    );
}

#[test]
fn relative_and_non_http_uris_are_refused_without_echoing_them() {
    for source in [
        "/relative/{{context.p}}",
        "ftp://files.example/{{context.p}}",
        "{{secrets.github_token}}",
    ] {
        let err = render(&RequestTemplate::new(t(source)), &[("p", "x")]).unwrap_err();
        assert!(
            matches!(err, RenderError::InvalidUri { .. }),
            "{source}: {err}"
        );
        let message = err.to_string();
        assert!(!message.contains(SECRET_VALUE), "{message}");
        assert!(!message.contains("files.example"), "{message}");
    }
    let err = render(&RequestTemplate::new(t("{{secrets.github_token}}")), &[]).unwrap_err();
    assert!(err.to_string().contains("secrets.github_token"), "{err}");
}

/// An empty value in the host would leave `https:///api/…`, which URL parsers read as host
/// `api`: the call, its credentials with it, would go to a server the template never named.
#[test]
fn a_host_rendered_empty_is_refused_not_read_from_the_path() {
    for source in [
        "https://{{context.host}}/api/hook",
        "HTTPS://{{context.host}}//api/hook",
        "http://{{context.host}}\\api/hook",
        " https:/{{context.host}}/\t/api/hook",
    ] {
        let template = RequestTemplate::new(t(source))
            .with_header("Authorization", t("token {{secrets.github_token}}"));
        let err = render(&template, &[("host", "")]).unwrap_err();
        assert!(
            matches!(&err, RenderError::InvalidUri { reason, .. } if reason.contains("host is empty")),
            "{source}: {err}"
        );
        assert!(err.to_string().contains("context.host"), "{source}: {err}");
    }
    let template = RequestTemplate::new(t("https://{{context.host}}/api/hook"));
    let rendered = render(&template, &[("host", "ci.example")]).unwrap();
    assert_eq!(rendered.uri().to_string(), "https://ci.example/api/hook");
}

#[test]
fn header_injection_and_bad_header_names_are_refused() {
    let template = RequestTemplate::new(t("https://x.example/"))
        .with_header("X-Ticket", t("{{context.ticket}}"));
    let err = render(&template, &[("ticket", "1\r\nX-Admin: yes")]).unwrap_err();
    assert_eq!(
        err,
        RenderError::LineBreakInHeader {
            variable: "context.ticket".into()
        }
    );
    let err = render(&template, &[("ticket", "nul\0")]).unwrap_err();
    assert!(
        matches!(err, RenderError::InvalidHeaderValue { ref header, .. } if header == "X-Ticket")
    );

    let template = RequestTemplate::new(t("https://x.example/")).with_header("Bad Name", t("v"));
    assert_eq!(
        render(&template, &[]).unwrap_err(),
        RenderError::InvalidHeaderName {
            name: "Bad Name".into()
        }
    );
}

/// A request template built in code cannot set what the client writes from the request either.
#[test]
fn headers_the_client_writes_are_refused_at_render() {
    for name in ["Host", "Content-Length", "transfer-encoding"] {
        let template = RequestTemplate::new(t("https://x.example/")).with_header(name, t("v"));
        assert_eq!(
            render(&template, &[]).unwrap_err(),
            RenderError::ReservedHeader { name: name.into() }
        );
    }
}

#[test]
fn methods_are_upper_cased_and_validated() {
    let template = RequestTemplate::new(t("https://x.example/")).with_method("put");
    assert_eq!(render(&template, &[]).unwrap().method(), http::Method::PUT);
    let template = RequestTemplate::new(t("https://x.example/")).with_method("NO SPACES");
    assert!(matches!(
        render(&template, &[]).unwrap_err(),
        RenderError::InvalidMethod { .. }
    ));
}

#[test]
fn unknown_context_key_and_secret_are_named() {
    let err = render(&github_dispatch(), &[("owner", "acme")]).unwrap_err();
    assert_eq!(err, RenderError::UnknownContext { key: "repo".into() });

    let template = RequestTemplate::new(t("https://x.example/"))
        .with_header("Authorization", t("Bearer {{secrets.ticket_token}}"));
    let err = render(&template, &[]).unwrap_err();
    assert!(err.to_string().contains("`ticket_token`"), "{err}");
}

#[test]
fn debug_never_shows_secrets_query_or_body() {
    let template = RequestTemplate::new(t(
        "https://user:pw@x.example:8443/hooks?token={{secrets.github_token}}",
    ))
    .with_header("Authorization", t("token {{secrets.github_token}}"))
    .with_body(t("{{secrets.github_token}}"));
    let debug = format!("{:?}", render(&template, &[]).unwrap());
    assert!(!debug.contains(SECRET_VALUE), "{debug}");
    assert!(
        debug.contains("[redacted]") && debug.contains("authorization"),
        "{debug}"
    );

    let template = RequestTemplate::new(t(
        "https://user:pw@x.example:8443/hooks?team={{context.team}}",
    ))
    .with_header("Authorization", t("token {{secrets.github_token}}"))
    .with_body(t("{{secrets.github_token}}"));
    let debug = format!("{:#?}", render(&template, &[("team", "payments")]).unwrap());
    assert!(debug.contains("https://x.example:8443/hooks"), "{debug}");
    for hidden in [SECRET_VALUE, "payments", "pw", "user"] {
        assert!(!debug.contains(hidden), "{hidden} in {debug}");
    }
}

#[test]
fn errors_never_carry_secret_values() {
    let values = Values::new(&[]);
    let templates = [
        RequestTemplate::new(t("{{secrets.github_token}}")),
        RequestTemplate::new(t("https://x.example/"))
            .with_header("A", t("{{secrets.github_token}}\u{1}")),
        RequestTemplate::new(t("https://x.example/{{secrets.github_token}}"))
            .with_header("A", t("{{context.missing}}")),
    ];
    for template in templates {
        let err = template.render(&values.get()).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET_VALUE), "{text}");
    }
}

#[test]
fn a_request_larger_than_the_limit_is_refused_wherever_the_bytes_are() {
    let template = github_dispatch();
    let values = Values::new(&[("owner", "acme"), ("repo", "shop")]);
    let exact = template.render(&values.get()).unwrap();
    let size = exact.uri().to_string().len()
        + exact.headers().values().map(|v| v.len()).sum::<usize>()
        + exact.body().len();
    assert!(
        template.render_limited(&values.get(), size).is_ok(),
        "exactly at the limit is fine"
    );
    assert_eq!(
        template
            .render_limited(&values.get(), size - 1)
            .unwrap_err(),
        RenderError::TooLarge { limit: size - 1 }
    );
    // Each part alone can pass the limit: a long value in the URI, in a header, in the body.
    let long = "x".repeat(4096);
    for (where_, template) in [
        (
            "uri",
            RequestTemplate::new(t("https://h.example/{{context.v}}")),
        ),
        (
            "header",
            RequestTemplate::new(t("https://h.example/")).with_header("X-V", t("{{context.v}}")),
        ),
        (
            "body",
            RequestTemplate::new(t("https://h.example/")).with_body(t("{{context.v}}")),
        ),
    ] {
        let values = Values::new(&[("v", &long)]);
        assert!(
            template.render_limited(&values.get(), 8192).is_ok(),
            "{where_}"
        );
        let refused = template.render_limited(&values.get(), 1024).unwrap_err();
        assert_eq!(refused, RenderError::TooLarge { limit: 1024 }, "{where_}");
        assert!(refused.to_string().contains("1024 bytes"), "{refused}");
    }
}

/// A URI longer than `http` accepts as a request target, though within the request's limit,
/// is refused as too long (not as "not an absolute URL"), through both of the URI's parsers.
#[test]
fn a_uri_longer_than_a_request_target_may_be_is_named_too_long() {
    let long = "x".repeat(70_000);
    for source in [
        "https://h.example/?q={{context.q}}",
        // Upper case sends the URL through the full parser.
        "HTTPS://h.example/?q={{context.q}}",
    ] {
        let template = RequestTemplate::new(t(source));
        let err = render(&template, &[("q", &long)]).unwrap_err();
        let RenderError::UriTooLong {
            length,
            limit,
            variables,
        } = &err
        else {
            panic!("{source}: {err:?}");
        };
        assert_eq!((*limit, *length > *limit), (65_534, true), "{source}");
        assert_eq!(variables, &["context.q"]);
        assert!(err.to_string().contains("65534"), "{err}");
        let fits = "x".repeat(65_000);
        assert!(render(&template, &[("q", &fits)]).is_ok(), "{source}");
    }
}

/// More headers than a header map holds are refused with an error, not a panic inside `http`.
#[test]
fn more_headers_than_a_request_can_carry_are_refused() {
    let template = (0..24_577).fold(RequestTemplate::new(t("https://h.example/")), |r, _| {
        r.with_header("X-A", t("b"))
    });
    assert_eq!(
        render(&template, &[]).unwrap_err(),
        RenderError::TooManyHeaders { count: 24_577 }
    );
}

/// A body that looks like JSON and inserts values is flagged when no `Content-Type` can have
/// them escaped, and the flag matches what rendering does: the value's quote goes in as it is
/// exactly when flagged.
#[test]
fn a_json_looking_body_without_a_json_content_type_is_flagged_as_unescaped() {
    let body = r#" {"ticket": "{{context.ticket}}"}"#;
    let bare = || RequestTemplate::new(t("https://hooks.example.com/run")).with_body(t(body));
    let flagged = [
        ("no Content-Type", bare()),
        (
            "a fixed Content-Type of another media type",
            bare().with_header("content-type", t("text/plain")),
        ),
        (
            "another media type, its parameter rendered",
            bare().with_header("Content-Type", t("text/plain; charset={{context.charset}}")),
        ),
        (
            "a JSON Content-Type under another header's name",
            bare().with_header("X-Content-Type", t("application/json")),
        ),
        (
            "an array body",
            RequestTemplate::new(t("https://hooks.example.com/run"))
                .with_body(t("\n[\"{{context.ticket}}\"]")),
        ),
    ];
    // JSON-looking bodies whose values a Content-Type has escaped (or may, when rendered).
    let escaped = [
        (
            "a JSON Content-Type",
            bare().with_header("Content-Type", t("application/json; charset=utf-8")),
        ),
        (
            "a +json Content-Type after another one",
            bare()
                .with_header("Content-Type", t("text/plain"))
                .with_header("CONTENT-TYPE", t("application/vnd.api+json")),
        ),
        (
            "a Content-Type whose media type is rendered",
            bare().with_header("Content-Type", t("{{context.media_type}}")),
        ),
    ];
    let not_json = [
        (
            "a body with no values",
            RequestTemplate::new(t("https://hooks.example.com/run"))
                .with_body(t(r#"{"ticket": "fixed"}"#)),
        ),
        (
            "a body that is not JSON",
            RequestTemplate::new(t("https://hooks.example.com/run"))
                .with_body(t("ticket={{context.ticket}}")),
        ),
        (
            "a body that is a value alone",
            RequestTemplate::new(t("https://hooks.example.com/run"))
                .with_body(t("{{context.ticket}}")),
        ),
        (
            "a body that starts with a value after whitespace",
            RequestTemplate::new(t("https://hooks.example.com/run"))
                .with_body(t(" {{context.ticket}}, [1]")),
        ),
        (
            "no body",
            RequestTemplate::new(t("https://hooks.example.com/run/{{context.ticket}}")),
        ),
    ];
    for (what, request) in &flagged {
        assert!(request.json_body_unescaped(), "{what}");
    }
    for (what, request) in escaped.iter().chain(&not_json) {
        assert!(!request.json_body_unescaped(), "{what}");
    }
    // The JSON-looking bodies: the quote goes in as it is where flagged, escaped elsewhere.
    let context = [
        ("ticket", "a\"b"),
        ("media_type", "application/json"),
        ("charset", "utf-8"),
    ];
    for (what, request) in flagged.iter().chain(&escaped) {
        let body = render(request, &context).unwrap().body().to_vec();
        let raw = String::from_utf8(body).unwrap().contains("a\"b");
        assert_eq!(raw, request.json_body_unescaped(), "{what}");
    }
}
