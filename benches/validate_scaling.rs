//! Load harness: how validation cost grows with the number of targets.
//!
//! `cargo bench --no-default-features --bench validate_scaling -- N REPS` validates a chain of N
//! targets (each depending on the previous one) REPS times. Run it under
//! `valgrind --tool=callgrind` with REPS 0 and 1 to count the instructions of one validation
//! exactly, whatever else the machine is doing; wall time is printed too.

use std::hint::black_box;
use std::time::Instant;

use hookgate::config::DeploymentFile;

fn chain_file(n: usize) -> String {
    let mut y = String::from("application: bench\ntargets:\n");
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("e{}", i - 1)
        };
        y += &format!(
            "  e{i}:\n    constraints:\n      dependsOn: [{deps}]\n      beforeDeployment: [pause: {{untilApproved: true}}]\n"
        );
    }
    y
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = numbers.first().copied().unwrap_or(50);
    let reps = numbers.get(1).copied().unwrap_or(10);
    let file = DeploymentFile::from_yaml(&chain_file(n)).expect("the generated file parses");
    let start = Instant::now();
    for _ in 0..reps {
        black_box(file.validate().expect("the generated file is valid"));
    }
    if reps > 0 {
        println!(
            "{n} targets: {:?} per validation ({reps} runs)",
            start.elapsed() / reps as u32
        );
    }
}
