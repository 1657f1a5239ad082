//! `Template::render`: value lookup and the four escapings of PROTOCOL.md §3.

use std::collections::BTreeMap;

use hookgate::Secret;
use hookgate::template::{ArmoryValues, Escape, RenderError, RenderValues, Template};
use proptest::prelude::*;

fn armory() -> ArmoryValues {
    {
        let mut armory = ArmoryValues::default();
        armory.callback_uri = "https://gate.example.com/callbacks/abc".into();
        armory.deployment_id = "dep-1".into();
        armory.application_name = "checkout".into();
        armory.environment_name = "staging".into();
        armory.account_name = "prod-cluster".into();
        armory.namespace = "checkout-staging".into();
        armory.replica_set_name = None;
        armory.preview =
            BTreeMap::from([("checkout".into(), "https://preview.example.com".into())]);
        armory
    }
}

fn render(source: &str, context: &[(&str, &str)], escape: Escape) -> Result<String, RenderError> {
    let armory = armory();
    let context = context
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let secrets = BTreeMap::from([("token".to_owned(), Secret::new("s3cr3t-value"))]);
    let values = RenderValues::new(&armory, &context, &secrets);
    Template::parse(source).unwrap().render(&values, escape)
}

#[test]
fn every_armory_variable_renders() {
    let source = "{{armory.callbackUri}} {{armory.deploymentId}} {{armory.applicationName}} \
                  {{armory.environmentName}} {{armory.accountName}} {{armory.namespace}} \
                  [{{armory.replicaSetName}}] {{armory.preview.checkout}}";
    assert_eq!(
        render(source, &[], Escape::None).unwrap(),
        "https://gate.example.com/callbacks/abc dep-1 checkout staging prod-cluster \
         checkout-staging [] https://preview.example.com"
    );
}

#[test]
fn json_escaping_keeps_the_document_valid() {
    let nasty = "say \"hi\"\\ \n\r\t\u{0}\u{1f} ünï \u{2028}";
    let body = render(
        r#"{"v": "{{context.v}}", "n": 1}"#,
        &[("v", nasty)],
        Escape::Json,
    )
    .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["v"], nasty);
    assert_eq!(parsed["n"], 1);
}

#[test]
fn uri_values_are_percent_encoded_except_a_leading_base_url() {
    assert_eq!(
        render(
            "https://x.example/items/{{context.p}}?q={{context.p}}",
            &[("p", "a b/c?d")],
            Escape::Uri
        )
        .unwrap(),
        "https://x.example/items/a%20b%2Fc%3Fd?q=a%20b%2Fc%3Fd"
    );
    assert_eq!(
        render(
            "{{context.base}}/hooks/{{context.p}}",
            &[("base", "https://x.example/a b"), ("p", "é&")],
            Escape::Uri
        )
        .unwrap(),
        "https%3A%2F%2Fx.example%2Fa%20b/hooks/%C3%A9%26",
        "only a secret may supply a whole base URL: context is encoded even when it leads"
    );
    for dots in [".", ".."] {
        assert!(
            matches!(
                render(
                    "https://x.example/{{context.p}}/run",
                    &[("p", dots)],
                    Escape::Uri
                ),
                Err(RenderError::DotSegment { .. })
            ),
            "{dots}"
        );
        // In the query or the fragment they move nothing.
        for template in [
            "https://x.example/search?q={{context.p}}",
            "https://x.example/run#{{context.p}}",
        ] {
            assert_eq!(
                render(template, &[("p", dots)], Escape::Uri).unwrap(),
                template.replace("{{context.p}}", dots),
                "{template} with {dots}"
            );
        }
    }
}

/// `.` and letters survive percent-encoding: a value that ends the host after the template's
/// own host text (or a whole base URL's) would choose where the call, and its secrets, go.
#[test]
fn a_value_may_not_extend_the_hosts_own_text() {
    for (template, value) in [
        (
            "https://hooks.example.com{{context.x}}/api",
            ".attacker.example",
        ),
        (
            "{{armory.preview.checkout}}{{context.x}}",
            ".attacker.example",
        ),
        ("https://hooks.example.com{{context.x}}:8443/", "-evil"),
        (
            "https://ci@hooks.example.com{{context.x}}",
            ".attacker.example",
        ),
        ("https://hooks.example.com{{context.x}}?q=1", "x"),
    ] {
        assert_eq!(
            render(template, &[("x", value)], Escape::Uri),
            Err(RenderError::HostExtended {
                variable: "context.x".into()
            }),
            "{template}"
        );
    }
    // The whole host, or a whole label, is the template's author's choice; a value elsewhere,
    // or an empty one, leaves the host as the template wrote it.
    for (template, value, rendered) in [
        (
            "https://{{context.x}}/api",
            "a.example",
            "https://a.example/api",
        ),
        (
            "https://api.{{context.x}}/",
            "staging.example",
            "https://api.staging.example/",
        ),
        (
            "https://{{context.x}}.example.com/",
            "staging",
            "https://staging.example.com/",
        ),
        (
            "https://hooks.example.com{{context.x}}/api",
            "",
            "https://hooks.example.com/api",
        ),
        (
            "https://hooks.example.com/{{context.x}}",
            ".attacker",
            "https://hooks.example.com/.attacker",
        ),
        (
            "{{armory.callbackUri}}{{context.x}}",
            ".attacker.example",
            "https://gate.example.com/callbacks/abc.attacker.example",
        ),
    ] {
        assert_eq!(
            render(template, &[("x", value)], Escape::Uri).as_deref(),
            Ok(rendered),
            "{template}"
        );
    }
}

#[test]
fn header_values_with_line_breaks_are_refused() {
    for value in ["a\r\nX-Evil: 1", "a\nb", "a\rb"] {
        let err = render("Bearer {{context.t}}", &[("t", value)], Escape::Header).unwrap_err();
        assert_eq!(
            err,
            RenderError::LineBreakInHeader {
                variable: "context.t".into()
            }
        );
    }
    assert_eq!(
        render("Bearer {{context.t}}", &[("t", "ok")], Escape::Header).unwrap(),
        "Bearer ok"
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err = render("{{context.owner}}", &[], Escape::None).unwrap_err();
    assert_eq!(
        err,
        RenderError::UnknownContext {
            key: "owner".into()
        }
    );
    assert!(err.to_string().contains("`owner`"));

    let err = render("{{secrets.github_token}}", &[], Escape::None).unwrap_err();
    assert_eq!(
        err,
        RenderError::UnknownSecret {
            name: "github_token".into()
        }
    );
    assert!(err.to_string().contains("`github_token`"));

    let err = render("{{armory.preview.cart}}", &[], Escape::None).unwrap_err();
    assert_eq!(
        err,
        RenderError::UnknownPreview {
            service: "cart".into()
        }
    );
}

#[test]
fn secrets_render_but_never_reach_error_messages() {
    assert_eq!(
        render("{{secrets.token}}", &[], Escape::None).unwrap(),
        "s3cr3t-value"
    );
    let err = render("{{secrets.token}}{{context.nope}}", &[], Escape::None).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cr3t"));

    // A secret that is itself the reason for the error: its name is reported, its value not.
    let armory = armory();
    let context = BTreeMap::new();
    let secrets = BTreeMap::from([(
        "auth".to_owned(),
        Secret::new("Bearer s3cr3t-line\r\nX-Injected: yes"),
    )]);
    let values = RenderValues::new(&armory, &context, &secrets);
    let err = Template::parse("{{secrets.auth}}")
        .unwrap()
        .render(&values, Escape::Header)
        .unwrap_err();
    assert_eq!(
        err,
        RenderError::LineBreakInHeader {
            variable: "secrets.auth".into()
        }
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("secrets.auth"), "{shown}");
    for part in ["s3cr3t", "X-Injected", "Bearer"] {
        assert!(!shown.contains(part), "{shown}");
    }
}

proptest! {
    #[test]
    fn any_context_string_round_trips_through_a_json_body(value in any::<String>(), key in "[a-z]{1,8}") {
        let source = format!(r#"{{"a": "{{{{context.{key}}}}}", "b": ["{{{{context.{key}}}}}"]}}"#);
        let body = render(&source, &[(key.as_str(), value.as_str())], Escape::Json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(parsed["a"].as_str(), Some(value.as_str()));
        prop_assert_eq!(parsed["b"][0].as_str(), Some(value.as_str()));
    }

    #[test]
    fn control_characters_round_trip(value in "[\\x00-\\x1f\"\\\\]{0,32}") {
        let body = render(r#""{{context.v}}""#, &[("v", value.as_str())], Escape::Json).unwrap();
        prop_assert_eq!(serde_json::from_str::<String>(&body).unwrap(), value);
    }
}
