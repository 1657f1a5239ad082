//! Criterion benchmarks of the outbound path without a network: rendering Armory's GitHub
//! `repository_dispatch` request, a whole `Dispatcher::send` into an in-memory transport
//! (unsigned and signed), and a failed send whose answer nearly spells hundreds of hidden
//! query values over and over.
//!
//! `cargo bench --bench outbound --features signing`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hookgate::Secret;
use hookgate::config::Plan;
use hookgate::core::CallResult;
use hookgate::outbound::{Dispatcher, DispatcherBuilder};
use hookgate::secrets::MemorySecrets;
use hookgate::signing::{Signer, SigningSecret};
use hookgate::template::{ArmoryValues, RenderValues};
use hookgate::transport::{TransportError, TransportRegistry};

mod support;

use support::{GITHUB_DISPATCH, first_call};

const BASE: &str = "https://api.github.com";
const TOKEN: &str = "ghp_0123456789abcdef0123456789abcdef0123";

fn render(c: &mut Criterion) {
    let plan = Plan::from_yaml(GITHUB_DISPATCH).unwrap();
    let request = &plan.webhooks()[0].request;
    let armory = {
        let mut armory = ArmoryValues::default();
        armory.callback_uri = format!("https://hookgate.example.com/callbacks/{}", "ab".repeat(16));
        armory.deployment_id = "d-42".into();
        armory.application_name = "potato-facts".into();
        armory.environment_name = "staging".into();
        armory.account_name = "demo-staging-cluster".into();
        armory
    };
    let secrets: BTreeMap<String, Secret> = [
        ("github_base".to_owned(), Secret::new(BASE)),
        ("github_token".to_owned(), Secret::new(TOKEN)),
    ]
    .into();
    let values = RenderValues::new(&armory, plan.context(), &secrets);
    c.bench_function("render_github_dispatch", |b| {
        b.iter(|| black_box(request.render(black_box(&values)).unwrap()))
    });
    // Baseline: the same request built from its finished strings, as code sending this one
    // request without templates would (the URI parsed, header values checked, body copied).
    let rendered = request.render(&values).unwrap();
    let uri = rendered.uri().to_string();
    let headers: Vec<(http::HeaderName, String)> = rendered
        .headers()
        .iter()
        .map(|(name, value)| (name.clone(), value.to_str().unwrap().to_owned()))
        .collect();
    let body = String::from_utf8(rendered.body().to_vec()).unwrap();
    c.bench_function("render_github_dispatch_prebuilt_baseline", |b| {
        b.iter(|| {
            let uri: http::Uri = black_box(&uri).parse().unwrap();
            let mut map = http::HeaderMap::with_capacity(headers.len());
            for (name, value) in black_box(&headers) {
                map.insert(name.clone(), http::HeaderValue::from_str(value).unwrap());
            }
            black_box((uri, map, Bytes::from(black_box(&body).clone())))
        })
    });
}

fn send(c: &mut Criterion) {
    let accept = |_request: http::Request<Bytes>| async {
        let mut response = http::Response::new(Bytes::new());
        *response.status_mut() = http::StatusCode::NO_CONTENT;
        Ok::<_, TransportError>(response)
    };
    let builder = || {
        let secrets = MemorySecrets::new()
            .with("github_base", BASE)
            .with("github_token", TOKEN);
        Dispatcher::builder(
            TransportRegistry::new(accept),
            Arc::new(secrets),
            "https://hookgate.example.com",
        )
    };
    let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (deployment, call) = first_call(GITHUB_DISPATCH);
    let variants: [(&str, DispatcherBuilder); 2] = [
        ("send_in_memory", builder()),
        (
            "send_in_memory_signed",
            builder().signer(Signer::new(secret)),
        ),
    ];
    for (name, builder) in variants {
        let dispatcher = builder.build().unwrap();
        let prepared = dispatcher.prepare(&deployment, &call, None);
        c.bench_function(name, |b| {
            b.iter(|| {
                let result = runtime.block_on(dispatcher.send(black_box(&prepared)));
                assert_eq!(result, CallResult::Sent { status: 204 });
            })
        });
    }
}

/// A failed call to a URL starting with a secret and carrying 280 query values, each a context
/// value of 200 `a`s and a space, hidden as a part of the secret URL; the server answers `500`
/// with 64 KiB of `a`s and a `%`, which nearly spells every one of them at every position. The
/// baseline is the same call to a URL written in the file, whose query values are not hidden:
/// the rest of the failed call's work, redaction of its secrets included.
fn failed_send(c: &mut Criterion) {
    let crafted = |_request: http::Request<Bytes>| async {
        let mut body = "a".repeat(64 * 1024 - 1);
        body.push('%');
        let mut response = http::Response::new(Bytes::from(body));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, TransportError>(response)
    };
    let (query, context): (Vec<String>, Vec<String>) = (0..280)
        .map(|i| {
            (
                format!("k{i}={{{{context.v{i}}}}}"),
                format!("v{i}: '{} {i}'", "a".repeat(200)),
            )
        })
        .unzip();
    let plan = |base: &str| {
        format!(
            "application: a\ncontext: {{{}}}\ntargets: {{prod: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}\nwebhooks:\n  - {{name: hook, uriTemplate: \"{base}/hook?{}\"}}\n",
            context.join(", "),
            query.join("&")
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let secrets = MemorySecrets::new().with("base", "https://hooks.example.com");
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(crafted),
        Arc::new(secrets),
        "https://hookgate.example.com",
    )
    .build()
    .unwrap();
    let mut group = c.benchmark_group("failed_send");
    group.sample_size(20);
    for (name, base) in [
        ("hidden_query_values", "{{secrets.base}}"),
        ("baseline_written_url", "https://hooks.example.com"),
    ] {
        let (deployment, call) = first_call(&plan(base));
        let prepared = dispatcher.prepare(&deployment, &call, None);
        group.bench_function(name, |b| {
            b.iter(|| {
                let result = runtime.block_on(dispatcher.send(black_box(&prepared)));
                assert!(matches!(result, CallResult::Failed(_)), "{result:?}");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render, send, failed_send);
criterion_main!(benches);
