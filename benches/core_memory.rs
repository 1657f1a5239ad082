//! Load harness: resident memory of many in-flight deployments, each waiting on a callback.
//!
//! `cargo bench --bench core_memory -- [COUNT]` (default 100000). Prints resident bytes per
//! deployment, measured from /proc/self/statm before and after, and the cost of the same number
//! of bare `Vec<u8>` allocations of 512 bytes as a same-run baseline.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hookgate::config::Plan;
use hookgate::core::{Action, CallResult, Deployment, DeploymentId, StartOptions};

mod support;

use support::{Counter, THREE_ENVIRONMENTS as PLAN, count_arg, resident_bytes};

fn main() {
    let count = count_arg(100_000);
    let plan = Arc::new(Plan::from_yaml(PLAN).unwrap());
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut ids = Counter(0);

    let before = resident_bytes();
    let mut deployments = Vec::with_capacity(count);
    for i in 0..count {
        let mut d = Deployment::start(
            Arc::clone(&plan),
            DeploymentId(format!("deployment-{i:08}")),
            StartOptions::default().with_seed(i as u64),
            &mut ids,
            now,
        );
        while let Some(a) = d.poll_action() {
            if let Action::CallWebhook(c) = a {
                d.handle_call_result(now, c.gate, c.attempt, CallResult::Sent { status: 202 })
                    .unwrap();
            }
        }
        while d.poll_event().is_some() {}
        deployments.push(d);
    }
    let after = resident_bytes();
    let waiting = deployments
        .iter()
        .filter(|d| d.poll_timeout().is_some())
        .count();
    let per = (after - before) as f64 / count as f64;

    let base_before = resident_bytes();
    let baseline: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; 512]).collect();
    let base_after = resident_bytes();
    let base_per = (base_after - base_before) as f64 / count as f64;

    println!("deployments: {count} (waiting on a callback: {waiting})");
    println!(
        "resident: {:.1} MiB for the deployments, {per:.0} bytes per deployment",
        (after - before) as f64 / (1 << 20) as f64
    );
    println!(
        "baseline: {base_per:.0} bytes per 512-byte Vec<u8> in the same run; ratio {:.2}",
        per / base_per
    );
    std::hint::black_box((&deployments, &baseline));
}
