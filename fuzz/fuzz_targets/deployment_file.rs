//! Fuzzes reading a deployment file: `Plan::from_yaml` and `Plan::from_json` on arbitrary
//! bytes. A file that validates is also run to its end (or for a bounded number of rounds) on
//! the test harness's simulated clock, since a plan the validator accepts must never make the
//! core panic.
#![no_main]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use hookgate::config::{ConfigError, Plan};
use hookgate::core::{CallResult, StartOptions, StepOutcome};
use hookgate::test_util::Harness;
use libfuzzer_sys::fuzz_target;

/// Bounds the run of an accepted plan, so one input cannot stall the fuzzer.
const MAX_ROUNDS: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The public entry points take text; invalid UTF-8 is the caller's problem to reject.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [Plan::from_yaml(source), Plan::from_json(source)] {
        match parsed {
            Ok(plan) => run(plan),
            Err(error) => check_error(&error),
        }
    }
});

/// An error must explain itself.
fn check_error(error: &ConfigError) {
    assert!(!error.to_string().is_empty(), "empty message for {error:?}");
}

/// Runs a validated plan, answering every step and call with success and jumping from
/// deadline to deadline (callback timeouts, pauses) until it finishes or stalls.
fn run(plan: Plan) {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut harness = Harness::start(Arc::new(plan), StartOptions::default(), start);
    for _ in 0..MAX_ROUNDS {
        harness.answer_steps(|_| StepOutcome::Succeeded);
        harness.answer_calls(|_| CallResult::Sent { status: 202 });
        if harness.deployment.is_finished() || !harness.advance_to_next_deadline() {
            break;
        }
    }
}
