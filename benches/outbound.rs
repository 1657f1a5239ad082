//! Criterion benchmarks of the outbound path without a network: rendering Armory's GitHub
//! `repository_dispatch` request, and a whole `Dispatcher::send` into an in-memory transport
//! (unsigned and signed).
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

criterion_group!(benches, render, send);
criterion_main!(benches);
