//! Fuzzes the template parser and renderer: the fuzz input is parsed as a template and, when it
//! parses, rendered with fuzz-chosen values in every escaping mode, then used as the body of a
//! whole `RequestTemplate` with a fuzz-chosen URI template, method and header.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use hookgate::Secret;
use hookgate::template::{
    ArmoryValues, ArmoryVar, Escape, RenderValues, RequestTemplate, Template, Variable,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// The value of every `context.*` key the templates use.
    context_value: &'a str,
    /// The value of every `secrets.*` name the templates use.
    secret_value: &'a str,
    /// The value of every `armory.*` variable.
    armory_value: &'a str,
    method: &'a str,
    header_name: &'a str,
    header_template: &'a str,
    json_content_type: bool,
    uri_template: &'a str,
    template: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let template = match Template::parse(input.template) {
        Ok(template) => template,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "{error:?}");
            return;
        }
    };
    let uri = Template::parse(input.uri_template).ok();
    let header = Template::parse(input.header_template).ok();

    let mut armory = ArmoryValues::default();
    armory.callback_uri = input.armory_value.to_owned();
    armory.deployment_id = input.armory_value.to_owned();
    armory.application_name = input.armory_value.to_owned();
    armory.environment_name = input.armory_value.to_owned();
    armory.account_name = input.armory_value.to_owned();
    armory.namespace = input.armory_value.to_owned();
    armory.replica_set_name = Some(input.armory_value.to_owned());
    let mut context = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    // Every variable any of the templates uses gets a value, so rendering gets past lookup.
    for variable in [Some(&template), uri.as_ref(), header.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(Template::variables)
    {
        match variable {
            Variable::Context(key) => {
                context.insert(key.clone(), input.context_value.to_owned());
            }
            Variable::Secret(name) => {
                secrets.insert(name.clone(), Secret::new(input.secret_value));
            }
            Variable::Armory(ArmoryVar::Preview(service)) => {
                armory
                    .preview
                    .insert(service.clone(), input.armory_value.to_owned());
            }
            _ => {}
        }
    }
    let values = RenderValues::new(&armory, &context, &secrets);

    for escape in [Escape::Json, Escape::Uri, Escape::Header, Escape::None] {
        match template.render(&values, escape) {
            Ok(out) => check_rendered(&template, escape, &out),
            Err(error) => assert!(!error.to_string().is_empty(), "{error:?}"),
        }
    }

    let Some(uri) = uri else { return };
    let mut request = RequestTemplate::new(uri.clone()).with_method(input.method);
    if let Some(header) = header {
        request = request.with_header(input.header_name, header);
    }
    if input.json_content_type {
        request = request.with_header(
            "Content-Type",
            Template::parse("application/json").expect("a literal template"),
        );
    }
    let request = request.with_body(template);
    match request.render(&values) {
        Ok(rendered) => {
            // The fast path for canonical URLs must give what the URL parser gives.
            let text = uri
                .render(&values, Escape::Uri)
                .expect("rendered once already");
            let mut url = url::Url::parse(&text).expect("an accepted URI parses");
            url.set_fragment(None);
            assert_eq!(rendered.uri().to_string(), url.as_str(), "from {text:?}");
            assert!(matches!(url.scheme(), "http" | "https"));
        }
        Err(error) => assert!(!error.to_string().is_empty(), "{error:?}"),
    }
});

/// What each escaping promises, checked where the template's own text cannot break it.
fn check_rendered(template: &Template, escape: Escape, out: &str) {
    let source = template.source();
    match escape {
        // Values are JSON-string content: between quotes the output is one JSON string.
        Escape::Json if !source.contains(['"', '\\']) && !source.contains(char::is_control) => {
            let quoted = format!("\"{out}\"");
            assert!(
                serde_json::from_str::<String>(&quoted).is_ok(),
                "not JSON-string content: {out:?}"
            );
        }
        // A value cannot add a line break to a header.
        Escape::Header => {
            assert!(
                out.matches(['\r', '\n']).count() <= source.matches(['\r', '\n']).count(),
                "a value added a line break: {out:?}"
            );
        }
        // A value cannot add URL structure, unless it is the whole base URL at the start.
        Escape::Uri if !template.starts_with_variable() => {
            for delimiter in ['/', '?', '#', '&', ' '] {
                assert!(
                    out.matches(delimiter).count() <= source.matches(delimiter).count(),
                    "a value added {delimiter:?}: {out:?}"
                );
            }
        }
        _ => {}
    }
}
