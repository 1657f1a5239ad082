//! Load harness: how validation cost grows with the number of targets.
//!
//! `cargo bench --no-default-features --bench validate_scaling -- N REPS [strategy]` validates a
//! chain of N targets (each depending on the previous one) REPS times; with `strategy`, every
//! target also uses one canary strategy. Run it under
//! `valgrind --tool=callgrind` with REPS 0 and 1 to count the instructions of one validation
//! exactly, whatever else the machine is doing; wall time is printed too.

use std::hint::black_box;
use std::time::Instant;

use hookgate::config::{DeploymentFile, Limits};

fn chain_file(n: usize, strategy: bool) -> String {
    let mut y = String::from("application: bench\ntargets:\n");
    let uses = if strategy {
        "\n    strategy: canary"
    } else {
        ""
    };
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("e{}", i - 1)
        };
        y += &format!(
            "  e{i}:{uses}\n    constraints:\n      dependsOn: [{deps}]\n      beforeDeployment: [pause: {{untilApproved: true}}]\n"
        );
    }
    if strategy {
        y += "strategies:\n  canary: {canary: {steps: [setWeight: {weight: 25}, pause: {untilApproved: true}, setWeight: {weight: 100}]}}\n";
    }
    y
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = numbers.first().copied().unwrap_or(50);
    let strategy = std::env::args().any(|a| a == "strategy");
    let reps = numbers.get(1).copied().unwrap_or(10);
    // Past 1,000 targets the file is over the default limits.
    let limits = Limits::default().with_max_targets(n.max(1_000));
    let file = DeploymentFile::from_yaml_with(&chain_file(n, strategy), &limits)
        .expect("the generated file parses");
    let start = Instant::now();
    for _ in 0..reps {
        black_box(
            file.validate_with(&limits)
                .expect("the generated file is valid"),
        );
    }
    if reps > 0 {
        println!(
            "{n} targets: {:?} per validation ({reps} runs)",
            start.elapsed() / reps as u32
        );
    }
}
