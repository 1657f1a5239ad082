//! Finding the callback URI in what the external process received (PROTOCOL.md §7).

use bytes::Bytes;
use hookgate::receiver::{CallbackUriError, ReceivedRequest};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn finds_each_common_key_at_the_top_level() {
    for key in ["callbackUri", "callbackURL", "callback_url", "callbackUrl"] {
        let body = json!({ key: "https://gate.example/callbacks/abc", "other": 1 }).to_string();
        let uri = ReceivedRequest::new()
            .with_body(body.as_bytes())
            .callback_uri()
            .unwrap();
        assert_eq!(
            uri.as_str(),
            "https://gate.example/callbacks/abc",
            "key {key}"
        );
    }
}

#[test]
fn finds_client_payload_callback_uri_one_level_down() {
    let body = json!({
        "event_type": "deploy",
        "client_payload": { "callbackUri": "https://gate.example/callbacks/xyz/callback" }
    });
    let uri = ReceivedRequest::new()
        .with_json(&body)
        .callback_uri()
        .unwrap();
    assert_eq!(uri.path(), "/callbacks/xyz/callback");
}

/// JSON allows numbers no `f64` holds; one beside the callback URI does not make the body
/// unreadable, which would send the search on to the query, where another URI may wait.
#[test]
fn a_number_out_of_f64_range_elsewhere_in_the_body_does_not_hide_its_callback_uri() {
    for body in [
        r#"{"callbackUri": "https://gate.example/cb", "size": 1e400}"#,
        r#"{"size": -1e400, "client_payload": {"callbackUri": "https://gate.example/cb", "n": 1e400}}"#,
    ] {
        let request = Request::post(
            "https://receiver.example/hook?callbackUri=https%3A%2F%2Fother.example%2Fcb",
        )
        .body(Bytes::from(body))
        .unwrap();
        let uri = ReceivedRequest::from_http(&request).callback_uri().unwrap();
        assert_eq!(uri.as_str(), "https://gate.example/cb", "{body}");
    }
}

/// Two `CallbackURI` header lines a proxy merged into one (`a, b`) are refused, not read as
/// one URI with a percent-encoded space in it; so is any URI with whitespace inside.
#[test]
fn a_callback_uri_with_whitespace_inside_is_refused() {
    let request = Request::post("https://receiver.example/hook")
        .header(
            "CallbackURI",
            "https://gate.example/callbacks/abc, https://evil.example/x",
        )
        .body(Vec::new())
        .unwrap();
    let error = ReceivedRequest::from_http(&request)
        .callback_uri()
        .unwrap_err();
    assert!(
        matches!(&error, CallbackUriError::Invalid { reason, .. } if reason.contains("whitespace")),
        "{error:?}"
    );
    let body = json!({"callbackUri": " https://gate.example/callbacks/a b "});
    let error = ReceivedRequest::new()
        .with_json(&body)
        .callback_uri()
        .unwrap_err();
    assert!(
        matches!(error, CallbackUriError::Invalid { .. }),
        "{error:?}"
    );
    let padded = json!({"callbackUri": " https://gate.example/callbacks/ab "});
    let uri = ReceivedRequest::new().with_json(&padded).callback_uri();
    assert_eq!(uri.unwrap().as_str(), "https://gate.example/callbacks/ab");
}

#[test]
fn finds_it_in_the_query_of_an_http_request() {
    let request = Request::post("https://receiver.example/hook?env=prod&callback_url=https%3A%2F%2Fgate.example%2Fcb%3Fa%3D1")
        .body(Bytes::from_static(b"not json at all"))
        .unwrap();
    let uri = ReceivedRequest::from_http(&request).callback_uri().unwrap();
    assert_eq!(uri.as_str(), "https://gate.example/cb?a=1");
}

#[test]
fn finds_it_in_the_header_whatever_its_case() {
    for name in ["CallbackURI", "callbackuri", "CALLBACKURI"] {
        let request = Request::post("https://receiver.example/hook")
            .header(name, "http://gate.internal:8080/callbacks/1")
            .body(Vec::new())
            .unwrap();
        let uri = ReceivedRequest::from_http(&request).callback_uri().unwrap();
        assert_eq!(uri.as_str(), "http://gate.internal:8080/callbacks/1");
    }
}

/// A webhook call carries its rendered secrets (`Authorization: Bearer {{secrets.…}}`), and a
/// received request is easily logged with `{:?}`: it shows sizes, not contents.
#[test]
fn debug_output_shows_no_header_body_or_query_content() {
    let request = Request::post("https://receiver.example/hook?sig=query-secret")
        .header("authorization", "Bearer header-secret")
        .body(Bytes::from_static(b"{\"token\": \"body-secret\"}"))
        .unwrap();
    let value = json!({"token": "json-secret"});
    let shown = [
        format!("{:?}", ReceivedRequest::from_http(&request)),
        format!("{:?}", ReceivedRequest::new().with_json(&value)),
    ]
    .join(" ");
    for secret in [
        "query-secret",
        "header-secret",
        "body-secret",
        "json-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("24 bytes"), "the body's size: {shown}");
}

#[test]
fn finds_it_at_a_json_pointer() {
    let body =
        br#"{"data": {"links": [{"rel": "callback", "href": "https://gate.example/cb/9"}]}}"#;
    let request = ReceivedRequest::new().with_body(body);
    let uri = request.callback_uri_at("/data/links/0/href").unwrap();
    assert_eq!(uri.as_str(), "https://gate.example/cb/9");

    let error = request.callback_uri_at("/data/links/1/href").unwrap_err();
    assert_eq!(
        error,
        CallbackUriError::NothingAtPointer {
            pointer: "/data/links/1/href".into()
        }
    );
    assert!(error.to_string().contains("/data/links/1/href"));

    let error = ReceivedRequest::new()
        .with_body(b"<xml/>")
        .callback_uri_at("/x")
        .unwrap_err();
    assert!(
        matches!(error, CallbackUriError::BodyNotJson { .. }),
        "{error:?}"
    );
}

#[test]
fn not_found_lists_where_it_looked() {
    let headers = HeaderMap::new();
    let error = ReceivedRequest::new()
        .with_body(br#"{"callback": "https://gate.example/x"}"#)
        .with_query("a=b")
        .with_headers(&headers)
        .callback_uri()
        .unwrap_err();
    let CallbackUriError::NotFound { looked_in } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(looked_in.len(), 3);
    let text = error.to_string();
    for expected in [
        "callbackUri",
        "callback_url",
        "query",
        "CallbackURI",
        "JSON pointer",
    ] {
        assert!(text.contains(expected), "{expected} missing from: {text}");
    }
}

#[test]
fn not_found_says_when_the_body_is_not_json() {
    let error = ReceivedRequest::new()
        .with_body(b"{oops")
        .callback_uri()
        .unwrap_err();
    assert!(error.to_string().contains("not JSON"), "{error}");
}

/// The place is named so the sender can be told what to fix; the value is not quoted, since
/// whatever sent it controls it and the error may go to a log.
fn assert_names_place_not_value(error: &CallbackUriError, place: &str, value: &str) {
    assert!(
        matches!(error, CallbackUriError::Invalid { location, .. } if location.contains(place)),
        "{error:?} for {value}"
    );
    // `Debug` is derived from the same fields, so it is as safe to log as `Display`.
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(value), "{value} quoted in {shown}");
    }
}

#[test]
fn unusable_values_are_typed_errors_naming_the_place_not_the_value() {
    let cases: [(&[u8], &str, &str); 5] = [
        (
            br#"{"callbackUri": "/relative/path"}"#,
            "callbackUri",
            "/relative/path",
        ),
        (
            br#"{"callbackUri": "ftp://gate.example/x"}"#,
            "callbackUri",
            "gate.example",
        ),
        (br#"{"callbackUri": 4242}"#, "callbackUri", "4242"),
        (
            br#"{"payload": {"callbackURL": ["https://x.example"]}}"#,
            "payload.callbackURL",
            "x.example",
        ),
        (
            br#"{"callbackUri": "javascript:alert(1)"}"#,
            "callbackUri",
            "alert",
        ),
    ];
    for (body, location, value) in cases {
        let error = ReceivedRequest::new()
            .with_body(body)
            .callback_uri()
            .unwrap_err();
        assert_names_place_not_value(&error, location, value);
        assert!(error.to_string().contains("absolute http(s) URL"));
    }

    let error = ReceivedRequest::new()
        .with_query("callbackUri=not%20a%20url")
        .callback_uri()
        .unwrap_err();
    assert_names_place_not_value(&error, "query", "not a url");
    assert_names_place_not_value(&error, "query", "not%20a%20url");

    let mut headers = HeaderMap::new();
    headers.insert(
        "callbackuri",
        HeaderValue::from_bytes(b"https://h.example/\xff").unwrap(),
    );
    let error = ReceivedRequest::new()
        .with_headers(&headers)
        .callback_uri()
        .unwrap_err();
    assert_names_place_not_value(&error, "header", "h.example");
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        query in proptest::collection::vec(any::<u8>(), 0..128),
        header in proptest::collection::vec(any::<u8>(), 0..128),
        pointer in ".{0,16}",
    ) {
        let query = String::from_utf8_lossy(&query);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&header) {
            headers.insert(HeaderName::from_static("callbackuri"), value);
        }
        let request = ReceivedRequest::new().with_body(&body).with_query(&query).with_headers(&headers);
        // Whatever is found is an absolute http(s) URL; anything else is an error.
        for found in [request.callback_uri(), request.callback_uri_at(&pointer)].into_iter().flatten() {
            prop_assert!(matches!(found.scheme(), "http" | "https"), "{found}");
            prop_assert!(found.has_host(), "{found}");
        }
    }

    #[test]
    fn never_panics_on_json_shaped_input(
        key in prop::sample::select(vec!["callbackUri", "callbackURL", "callback_url", "callbackUrl", "x"]),
        value in ".{0,64}",
        nested in any::<bool>(),
    ) {
        let inner = json!({ key: value });
        let body = if nested { json!({ "client_payload": inner }) } else { inner };
        if let Ok(uri) = ReceivedRequest::new().with_json(&body).callback_uri() {
            prop_assert!(matches!(uri.scheme(), "http" | "https"));
        }
    }
}

#[test]
fn an_untrusted_key_named_in_an_error_is_cut_short_and_escaped() {
    let hostile = format!("line\n\u{1b}[31m{}", "k".repeat(100_000));
    let body =
        serde_json::to_vec(&json!({ hostile: {"callbackUri": "ftp://x.example/cb"} })).unwrap();
    let error = ReceivedRequest::new()
        .with_body(&body)
        .callback_uri()
        .unwrap_err();
    assert!(
        matches!(error, CallbackUriError::Invalid { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(
        !message.contains('\n') && !message.contains('\u{1b}'),
        "{message}"
    );
    assert!(message.contains("line\\n"), "{message}");
}

fn ambiguous_places(error: CallbackUriError) -> Vec<String> {
    match error {
        CallbackUriError::Ambiguous { places } => places,
        other => panic!("not ambiguous: {other:?}"),
    }
}

/// A webhook body rendered without JSON escaping (sent without a JSON `Content-Type`) lets a
/// context value add keys of its own. A callback URI added so, under another known key, the
/// same key (which serde_json would keep, being last) or an object of the same name, is refused
/// rather than picked: the receiver would send its bearer token there.
#[test]
fn a_callback_uri_added_by_an_unescaped_context_value_is_refused_as_ambiguous() {
    let top = r#"{"callback_url": "https://gate.example/cb/abc/callback", "title": "TITLE"}"#;
    let nested =
        r#"{"client_payload": {"callbackUri": "https://gate.example/cb/abc", "title": "TITLE"}}"#;
    let cases = [
        (
            top,
            r#"x", "callbackUri": "EVIL"#,
            ["callbackUri", "callback_url"],
        ),
        (
            top,
            r#"x", "callback_url": "EVIL"#,
            ["callback_url", "callback_url"],
        ),
        (
            nested,
            r#"x", "callbackUri": "EVIL"#,
            ["client_payload.callbackUri"; 2],
        ),
        (
            nested,
            r#"x"}, "client_payload": {"callbackUri": "EVIL"#,
            ["client_payload.callbackUri"; 2],
        ),
        (
            nested,
            r#"x"}, "callbackUri": "EVIL", "z": {"t": "x"#,
            ["callbackUri", "client_payload.callbackUri"],
        ),
        (
            top,
            r#"x", "a": {"callbackUri": "EVIL"}, "t": "x"#,
            ["callback_url", "a.callbackUri"],
        ),
    ];
    for (template, title, places) in cases {
        let body = template.replace("TITLE", &title.replace("EVIL", "https://evil.example/c"));
        serde_json::from_str::<serde_json::Value>(&body).expect("the forged body is JSON");
        let error = ReceivedRequest::new()
            .with_body(body.as_bytes())
            .callback_uri()
            .unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("example"), "a URI quoted in {shown}");
        }
        let expected: Vec<String> = places.iter().map(|p| format!("body at `{p}`")).collect();
        assert_eq!(ambiguous_places(error), expected, "{body}");
    }
}

/// The JSON pointer an ambiguous request's error points to does not pick the last of a repeated
/// key either, where a parsed value would: every key on its path is followed each time given.
#[test]
fn a_json_pointer_through_a_repeated_key_holding_different_uris_is_ambiguous() {
    let pointer = "/client_payload/callbackUri";
    let forged = [
        r#"{"client_payload": {"callbackUri": "https://gate.example/cb/abc",
                               "title": "x", "callbackUri": "https://evil.example/c"}}"#,
        r#"{"client_payload": {"callbackUri": "https://gate.example/cb/abc", "title": "x"},
            "client_payload": {"callbackUri": "https://evil.example/c"}}"#,
    ];
    for body in forged {
        let request = ReceivedRequest::new().with_body(body.as_bytes());
        assert!(
            request
                .callback_uri()
                .unwrap_err()
                .to_string()
                .contains("callback_uri_at")
        );
        let error = request.callback_uri_at(pointer).unwrap_err();
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains("example"), "a URI quoted in {shown}");
        }
        assert_eq!(
            ambiguous_places(error),
            vec![format!("body at `{pointer}`"); 2],
            "{body}"
        );
    }

    let agreeing = br#"{"client_payload": {"callbackUri": "https://gate.example/cb/abc",
                        "callbackUri": null, "callbackUri": "https://gate.example/cb/abc"}}"#;
    let uri = ReceivedRequest::new()
        .with_body(agreeing)
        .callback_uri_at(pointer)
        .unwrap();
    assert_eq!(uri.as_str(), "https://gate.example/cb/abc");

    let parsed = json!({"client_payload": {"callbackUri": "https://gate.example/cb/abc"}});
    let uri = ReceivedRequest::new()
        .with_json(&parsed)
        .callback_uri_at(pointer)
        .unwrap();
    assert_eq!(uri.as_str(), "https://gate.example/cb/abc");
}

/// Known keys of one object are not tried in an order: one the sender did not mean would win
/// whenever its name comes first.
#[test]
fn known_keys_of_one_object_holding_different_uris_are_ambiguous() {
    let (a, b) = ("https://a.example/cb", "https://b.example/cb");
    let cases = [
        (
            json!({"callbackUrl": a, "callbackURL": b}),
            ["callbackURL", "callbackUrl"],
        ),
        (
            json!({"event": "deploy", "data": {"callback_url": a, "callbackUri": b}}),
            ["data.callbackUri", "data.callback_url"],
        ),
    ];
    for (body, places) in cases {
        let expected: Vec<String> = places.iter().map(|p| format!("body at `{p}`")).collect();
        let bytes = body.to_string();
        for request in [
            ReceivedRequest::new().with_json(&body),
            ReceivedRequest::new().with_body(bytes.as_bytes()),
        ] {
            let error = request.callback_uri().unwrap_err();
            assert_eq!(ambiguous_places(error), expected, "{body}");
        }
    }
}

/// The same rule holds for the query: a parameter rendered without percent-encoding can add
/// one of its own. The header found next is not used instead.
#[test]
fn query_parameters_holding_different_uris_are_ambiguous() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "callbackuri",
        HeaderValue::from_static("https://gate.example/h"),
    );
    for (query, places) in [
        (
            "callbackUri=https%3A%2F%2Fgate.example%2Fcb&t=x&callbackUri=https://evil.example/c",
            ["callbackUri", "callbackUri"],
        ),
        (
            "callback_url=https://gate.example/cb&callbackUri=https://evil.example/c",
            ["callbackUri", "callback_url"],
        ),
    ] {
        let error = ReceivedRequest::new()
            .with_query(query)
            .with_headers(&headers)
            .callback_uri()
            .unwrap_err();
        assert!(!error.to_string().contains("example"), "{error}");
        let expected: Vec<String> = places
            .iter()
            .map(|p| format!("query parameter `{p}`"))
            .collect();
        assert_eq!(ambiguous_places(error), expected, "{query}");
    }
}

#[test]
fn a_callback_header_given_twice_with_different_uris_is_ambiguous() {
    let request = Request::post("https://receiver.example/hook")
        .header("CallbackURI", "https://gate.example/cb")
        .header("callbackuri", "https://evil.example/c")
        .body(Vec::new())
        .unwrap();
    let error = ReceivedRequest::from_http(&request)
        .callback_uri()
        .unwrap_err();
    assert!(!error.to_string().contains("example"), "{error}");
    assert_eq!(
        ambiguous_places(error),
        vec!["header `CallbackURI`".to_owned(); 2]
    );
}

/// Only different URIs are ambiguous: the same one given twice, however it is spelled in JSON
/// or percent-encoded, is used, and a `null` beside it counts as absent.
#[test]
fn the_same_uri_given_twice_is_used() {
    let gate = "https://gate.example/cb/abc";
    let bodies: [&[u8]; 5] = [
        br#"{"callbackUri": "https://gate.example/cb/abc",
             "callbackUri": "https://gate.example/cb/abc"}"#,
        br#"{"callback_url": "https://gate.example/cb/abc",
             "callbackUri": "https:\/\/gate.example\/cb\/abc"}"#,
        br#"{"p": {"callbackUri": "https://gate.example/cb/abc",
                   "callbackUrl": "https://gate.example/cb/abc"},
             "p": {"callbackUri": "https://gate.example/cb/abc"}}"#,
        br#"{"callbackUri": "https://gate.example/cb/abc", "callbackUri": null}"#,
        br#"{"callbackUri": null,
             "p": {"callbackURL": null, "callbackUrl": "https://gate.example/cb/abc"}}"#,
    ];
    for body in bodies {
        let uri = ReceivedRequest::new().with_body(body).callback_uri();
        assert_eq!(
            uri.map(String::from),
            Ok(gate.to_owned()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let query =
        "callbackUri=https%3A%2F%2Fgate.example%2Fcb%2Fabc&callbackUrl=https://gate.example/cb/abc";
    let uri = ReceivedRequest::new().with_query(query).callback_uri();
    assert_eq!(uri.map(String::from), Ok(gate.to_owned()));
    let request = Request::post("https://receiver.example/hook")
        .header("callbackuri", gate)
        .header("CALLBACKURI", gate)
        .body(Vec::new())
        .unwrap();
    let uri = ReceivedRequest::from_http(&request).callback_uri();
    assert_eq!(uri.map(String::from), Ok(gate.to_owned()));
}
