//! Criterion benchmarks of the sans-IO core and the deployment-file validator.
//!
//! `cargo bench --bench core` — see the README's Performance section for the figures.

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use hookgate::config::{Limits, Plan};
use hookgate::core::{
    Action, CallResult, CallbackId, Deployment, DeploymentId, DeploymentState, StartOptions,
};

mod support;

use support::Counter;

/// `n` targets in a chain, each with a beforeDeployment webhook and a canary strategy.
fn chain_file(n: usize) -> String {
    let mut y = String::from("application: bench\ntargets:\n");
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("e{}", i - 1)
        };
        y += &format!(
            "  e{i}:\n    account: cluster-{i}\n    namespace: ns\n    strategy: canary\n    constraints:\n      dependsOn: [{deps}]\n      beforeDeployment:\n        - runWebhook: {{name: ticket}}\n        - pause: {{untilApproved: true, requiresRoles: [ops]}}\n      afterDeployment:\n        - runWebhook: {{name: smoke}}\n"
        );
    }
    y += "strategies:\n  canary: {canary: {steps: [setWeight: {weight: 25}, runWebhook: {name: smoke}, setWeight: {weight: 100}]}}\n";
    y += "webhooks:\n";
    y += "  - {name: ticket, uriTemplate: 'https://t.example/{{armory.deploymentId}}', headers: [{key: Authorization, value: 'Bearer {{secrets.t}}'}], bodyTemplate: {inline: '{\"cb\": \"{{armory.callbackUri}}/callback\"}'}}\n";
    y += "  - {name: smoke, uriTemplate: 'https://s.example/{{armory.environmentName}}', retryCount: 3}\n";
    y
}

/// Limits that let [`chain_file`]`(n)` through: past 1,000 targets it is over the defaults.
fn chain_limits(n: usize, text: &str) -> Limits {
    let limits = Limits::default();
    let bytes = limits.max_file_bytes.max(text.len());
    let gates = limits.max_gates.max(4 * n);
    let targets = limits.max_targets.max(n);
    limits
        .with_max_targets(targets)
        .with_max_gates(gates)
        .with_max_file_bytes(bytes)
}

/// A running deployment of `n` independent environments, each with its beforeDeployment
/// webhook sent and awaiting its callback.
fn waiting(n: usize) -> (Deployment, Vec<CallbackId>) {
    let mut y = String::from("application: bench\ntargets:\n");
    for i in 0..n {
        y += &format!(
            "  e{i}: {{constraints: {{beforeDeployment: [runWebhook: {{name: ticket}}]}}}}\n"
        );
    }
    y += "webhooks: [{name: ticket, uriTemplate: 'https://t.example'}]\n";
    let plan = Arc::new(Plan::from_yaml(&y).unwrap());
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut d = Deployment::start(
        plan,
        DeploymentId::from("bench"),
        StartOptions::default(),
        &mut Counter(0),
        now,
    );
    let mut ids = Vec::new();
    while let Some(a) = d.poll_action() {
        if let Action::CallWebhook(c) = a {
            d.handle_call_result(now, c.gate, c.attempt, CallResult::Sent { status: 202 })
                .unwrap();
            ids.push(c.callback_id);
        }
    }
    while d.poll_event().is_some() {}
    (d, ids)
}

fn callback(c: &mut Criterion) {
    let (d, ids) = waiting(10);
    let now = Utc.timestamp_opt(1_700_000_100, 0).unwrap();
    let apply = |mut d: Deployment| {
        d.handle_callback(now, ids[3], true, Some("ok".into()))
            .unwrap();
        while let Some(a) = d.poll_action() {
            black_box(a);
        }
        while let Some(e) = d.poll_event() {
            black_box(e);
        }
        d
    };
    c.bench_function("core/callback_10_envs_and_drain", |b| {
        b.iter_batched(|| own_copy(&d), apply, BatchSize::SmallInput)
    });
    // As the engine applies it: to a deployment whose state a copy kept to roll back to (and
    // the memory store's row) shares, which the input then copies for itself.
    c.bench_function("core/callback_10_envs_and_drain_shared", |b| {
        b.iter_batched(|| d.clone(), apply, BatchSize::SmallInput)
    });
    c.bench_function("core/clone_10_envs_baseline", |b| {
        b.iter_batched(
            || (),
            |()| DeploymentState::clone(d.state()),
            BatchSize::SmallInput,
        )
    });
}

/// A copy of `d` that shares none of its state, so that an input applied to it measures the
/// input alone, not the copy a shared state takes first.
fn own_copy(d: &Deployment) -> Deployment {
    let state = DeploymentState::clone(d.state());
    Deployment::restore(Arc::clone(d.plan()), Arc::new(state)).unwrap()
}

/// A deployment of one target waiting on `n` zero-length pauses, one after another (`sequence`:
/// a canary of pause steps) or all at once (`parallel`: its beforeDeployment list).
fn zero_pauses(n: usize, layout: &str) -> (Arc<Plan>, Deployment) {
    let pauses = vec!["pause: {duration: 0, unit: seconds}"; n].join(", ");
    let source = match layout {
        "sequence" => format!(
            "application: bench\ntargets: {{x: {{strategy: c}}}}\nstrategies: {{c: {{canary: {{steps: [{pauses}]}}}}}}\n"
        ),
        _ => format!(
            "application: bench\ntargets: {{x: {{constraints: {{beforeDeployment: [{pauses}]}}}}}}\n"
        ),
    };
    let plan = Arc::new(Plan::from_yaml(&source).unwrap());
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut d = start(&plan, now);
    // The sequence's canary begins after the deploy step.
    while let Some(a) = d.poll_action() {
        if let Action::RunStep(step) = a {
            d.handle_step_result(now, step.op, hookgate::core::StepOutcome::Succeeded)
                .unwrap();
        }
    }
    while d.poll_event().is_some() {}
    (plan, d)
}

/// A deployment of `plan` started at `now`.
fn start(plan: &Arc<Plan>, now: DateTime<Utc>) -> Deployment {
    Deployment::start(
        Arc::clone(plan),
        DeploymentId::from("bench"),
        StartOptions::default(),
        &mut Counter(0),
        now,
    )
}

/// Firing every zero-length pause of a deployment at once, against starting a deployment of
/// the same plan (which opens them): linear in the pauses, as the start is.
fn timeouts(c: &mut Criterion) {
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut group = c.benchmark_group("core/timeout_zero_pauses");
    group.sample_size(20);
    for layout in ["sequence", "parallel"] {
        for n in [1_000, 9_999] {
            let (plan, d) = zero_pauses(n, layout);
            group.bench_function(BenchmarkId::new(layout, n), |b| {
                b.iter_batched(
                    || own_copy(&d),
                    |mut d| {
                        d.handle_timeout(now);
                        d
                    },
                    BatchSize::LargeInput,
                )
            });
            group.bench_function(
                BenchmarkId::new(format!("{layout}_start_baseline"), n),
                |b| b.iter(|| start(&plan, now)),
            );
        }
    }
    group.finish();
}

fn state(c: &mut Criterion) {
    let (d, _) = waiting(10);
    let json = serde_json::to_vec(d.state()).unwrap();
    c.bench_function("core/state_serialize_10_envs", |b| {
        b.iter(|| serde_json::to_vec(black_box(d.state())).unwrap())
    });
    c.bench_function("core/state_restore_10_envs", |b| {
        b.iter(|| {
            let state: DeploymentState = serde_json::from_slice(black_box(&json)).unwrap();
            Deployment::restore(Arc::clone(d.plan()), Arc::new(state)).unwrap()
        })
    });
    // Baselines: the same JSON document written and read untyped, as `serde_json::Value`.
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    c.bench_function("core/state_serialize_10_envs_value_baseline", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)).unwrap())
    });
    c.bench_function("core/state_restore_10_envs_value_baseline", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)).unwrap())
    });
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("config/validate_chain");
    for n in [50usize, 500, 5000] {
        let text = chain_file(n);
        let limits = chain_limits(n, &text);
        group.bench_with_input(BenchmarkId::new("parse_and_validate", n), &text, |b, t| {
            b.iter(|| Plan::from_yaml_with(black_box(t), &limits).unwrap())
        });
        let file = hookgate::config::DeploymentFile::from_yaml_with(&text, &limits).unwrap();
        group.bench_with_input(BenchmarkId::new("validate_only", n), &file, |b, f| {
            b.iter(|| f.validate_with(&limits).unwrap())
        });
    }
    group.finish();
}

/// [`chain_file`]`(50)` with `keys` more keys in every target's `constraints`, which hookgate
/// does not read.
fn chain_with_keys(keys: &[String]) -> String {
    let extra: String = keys
        .iter()
        .map(|key| format!("      {key}: []\n"))
        .collect();
    chain_file(50).replace("    constraints:\n", &format!("    constraints:\n{extra}"))
}

/// The cost of looking for near misses: 500 keys not read in a 50-target file, spelt like no
/// key hookgate reads (each looked at) or like `beforeDeployment` (looked at until 64 are
/// found), against the same 500 keys inside one key not read (the only one looked at). Then
/// the most a file can make of it: a mebibyte of keys not read, the first 1,024 looked at,
/// against the same keys inside one.
fn ignored_keys(c: &mut Criterion) {
    let keys = |spelt: &str| -> Vec<String> { (0..10).map(|i| format!("{spelt}{i}")).collect() };
    let far = keys("qqqqqqqqqqqqqqq");
    let nested: String = (0..50)
        .flat_map(|t| far.iter().map(move |key| format!("  {key}t{t}: []\n")))
        .collect();
    let cases = [
        ("far", chain_with_keys(&far), 0),
        ("near_misses", chain_with_keys(&keys("beforDeployment")), 64),
        (
            "nested_baseline",
            format!("{}extra:\n{nested}", chain_file(50)),
            0,
        ),
    ];
    let mut group = c.benchmark_group("config/ignored_keys_50_targets_x10");
    for (name, text, misses) in cases {
        assert_eq!(Plan::from_yaml(&text).unwrap().near_misses().len(), misses);
        group.bench_with_input(
            BenchmarkId::new("parse_and_validate", name),
            &text,
            |b, t| b.iter(|| Plan::from_yaml(black_box(t)).unwrap()),
        );
    }
    group.finish();

    let lines: String = (0..)
        .map(|i| format!("  qqqqqqqqqq{i:06}: 0\n"))
        .scan(0, |length, line| {
            *length += line.len();
            (*length < (1 << 20) - 100).then_some(line)
        })
        .collect();
    let head = "application: a\ntargets: {dev: {}}\n";
    let cases = [
        (
            "top_level",
            format!("{head}{}", lines.replace("\n  ", "\n").trim_start()),
        ),
        ("nested_baseline", format!("{head}extra:\n{lines}")),
    ];
    let mut group = c.benchmark_group("config/ignored_keys_1MiB");
    group.sample_size(20);
    for (name, text) in cases {
        group.bench_with_input(
            BenchmarkId::new("parse_and_validate", name),
            &text,
            |b, t| b.iter(|| Plan::from_yaml(black_box(t)).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, callback, timeouts, state, validate, ignored_keys);
criterion_main!(benches);
