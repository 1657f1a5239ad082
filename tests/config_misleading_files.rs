//! Deployment files that would run other than their author meant, or be refused in words the
//! author cannot act on: a sign-off hookgate does not run, names that print as other names,
//! waits that can never pass, numbers reported as Rust types. Each is refused at its path.

use hookgate::config::{ConfigError, Plan, ProblemKind};

fn problems(yaml: &str) -> Vec<(String, ProblemKind)> {
    match Plan::from_yaml(yaml) {
        Ok(plan) => panic!("accepted:\n{yaml}\nplan: {plan:?}"),
        Err(e) => e.problems().into_iter().map(|p| (p.path, p.kind)).collect(),
    }
}

fn paths(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|(p, _)| p).collect()
}

/// Armory's `rollForwardMode: manual` has a person approve going on after a passing analysis.
/// hookgate does not run that approval, so a file asking for it is refused rather than run
/// without the sign-off; `automatic`, what hookgate does, is accepted.
#[test]
fn a_manual_roll_forward_is_refused_rather_than_skipped() {
    let file = |mode: &str| {
        format!(
            "application: a\ntargets: {{dev: {{strategy: s}}}}\nstrategies: {{s: {{canary: {{steps: [analysis: {{queries: [error-rate], rollForwardMode: {mode}}}, setWeight: {{weight: 100}}]}}}}}}"
        )
    };
    let found = problems(&file("manual"));
    assert_eq!(
        found,
        [(
            "strategies.s.canary.steps[0].analysis.rollForwardMode".into(),
            ProblemKind::ManualRollForward
        )]
    );
    assert!(
        found[0].1.to_string().contains("untilApproved"),
        "says what to write instead"
    );
    assert_eq!(
        paths(&file("sometimes")),
        ["strategies.s.canary.steps[0].analysis.rollForwardMode"]
    );
    assert!(Plan::from_yaml(&file("automatic")).is_ok());
    let after = "application: a\ntargets: {dev: {constraints: {afterDeployment: [analysis: {queries: [q], rollForwardMode: manual}]}}}";
    assert_eq!(
        paths(after),
        ["targets.dev.constraints.afterDeployment[0].analysis.rollForwardMode"]
    );
}

/// A name holding an invisible format character prints as another name: `prod` followed by a
/// zero-width space reads as `prod`, and a right-to-left override prints the rest reversed.
/// Such names are refused as control characters are, for the application, targets and
/// webhooks.
#[test]
fn names_that_print_as_other_names_are_refused() {
    for invisible in [
        "\\u200b", "\\u202e", "\\u2066", "\\ufeff", "\\u00ad", "\\u2060",
    ] {
        let target = format!("application: a\ntargets: {{\"prod{invisible}\": {{}}}}\n");
        assert!(
            problems(&target)
                .iter()
                .any(|(_, k)| matches!(k, ProblemKind::ControlCharacter { .. })),
            "target name with {invisible}"
        );
        let application = format!("application: \"a{invisible}\"\ntargets: {{dev: {{}}}}\n");
        assert_eq!(paths(&application), ["application"], "{invisible}");
        let webhook = format!(
            "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: \"ci{invisible}\", uriTemplate: 'https://h.example'}}]"
        );
        assert_eq!(paths(&webhook), ["webhooks[0].name"], "{invisible}");
    }
    // Printable text beyond ASCII stays welcome.
    assert!(Plan::from_yaml("application: café\ntargets: {prüfung: {}, 本番: {}}\n").is_ok());
}

/// A webhook's name is logged and written into gate failures: a line break in it could forge
/// a log line, and a blank one names nothing.
#[test]
fn a_webhook_name_blank_or_with_a_control_character_is_refused() {
    for (name, kind) in [
        (
            r#""ci\ninfo: all gates passed""#,
            ProblemKind::ControlCharacter {
                what: "a webhook name",
            },
        ),
        (
            r#""ci\u0000""#,
            ProblemKind::ControlCharacter {
                what: "a webhook name",
            },
        ),
        (
            "'  '",
            ProblemKind::Missing {
                what: "a webhook name",
            },
        ),
    ] {
        let yaml = format!(
            "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: {name}, uriTemplate: 'https://h.example'}}]"
        );
        assert_eq!(
            problems(&yaml),
            [("webhooks[0].name".into(), kind)],
            "{name}"
        );
    }
}

/// A blank `activeService` would have the host move traffic to a service with no name, and a
/// blank `previewService` expose one; a missing `previewService` is fine.
#[test]
fn blank_blue_green_services_are_refused() {
    let file = |services: &str| {
        format!(
            "application: a\ntargets: {{dev: {{strategy: bg}}}}\nstrategies: {{bg: {{blueGreen: {{{services}}}}}}}"
        )
    };
    assert_eq!(
        problems(&file("activeService: ''")),
        [(
            "strategies.bg.blueGreen.activeService".into(),
            ProblemKind::Missing {
                what: "activeService"
            }
        )]
    );
    assert_eq!(
        paths(&file("activeService: '  ', previewService: ' '")),
        [
            "strategies.bg.blueGreen.activeService",
            "strategies.bg.blueGreen.previewService"
        ]
    );
    assert!(Plan::from_yaml(&file("activeService: web")).is_ok());
}

/// A blank role in `requiresRoles` is one no decider holds, and a blank service in
/// `exposeServices` one the host cannot expose.
#[test]
fn blank_roles_and_exposed_services_are_refused() {
    let roles = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {untilApproved: true, requiresRoles: [release-manager, ' ']}]}}}";
    assert_eq!(
        problems(roles),
        [(
            "targets.dev.constraints.beforeDeployment[0].pause.requiresRoles[1]".into(),
            ProblemKind::Missing {
                what: "a role name"
            }
        )]
    );
    let services = "application: a\ntargets: {dev: {strategy: s}}\nstrategies: {s: {canary: {steps: [exposeServices: {services: [web, '']}]}}}";
    assert_eq!(
        problems(services),
        [(
            "strategies.s.canary.steps[0].exposeServices.services[1]".into(),
            ProblemKind::Missing {
                what: "a service name"
            }
        )]
    );
}

/// A gate whose wait fails it when it ends cannot pass a wait of zero: a webhook's
/// `callbackTimeout` (unless it takes no callbacks) and an approval's `approvalExpiration`.
/// A zero pause, which passes when it ends, stays a wait of nothing.
#[test]
fn waits_that_fail_their_gate_at_once_are_refused() {
    let hook = |extra: &str| {
        format!(
            "application: a\ntargets: {{dev: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}\nwebhooks: [{{name: hook, uriTemplate: 'https://h.example', callbackTimeout: {{duration: 0, unit: minutes}}{extra}}}]"
        )
    };
    assert_eq!(
        problems(&hook("")),
        [(
            "webhooks[0].callbackTimeout.duration".into(),
            ProblemKind::ZeroWait {
                what: "callbackTimeout"
            }
        )]
    );
    assert!(Plan::from_yaml(&hook(", disableCallback: true")).is_ok());
    let approval = |duration: u32| {
        format!(
            "application: a\ntargets: {{dev: {{constraints: {{beforeDeployment: [pause: {{untilApproved: true, approvalExpiration: {{duration: {duration}, unit: hours}}}}]}}}}}}"
        )
    };
    assert_eq!(
        problems(&approval(0)),
        [(
            "targets.dev.constraints.beforeDeployment[0].pause.approvalExpiration.duration".into(),
            ProblemKind::ZeroWait {
                what: "approvalExpiration"
            }
        )]
    );
    assert!(Plan::from_yaml(&approval(1)).is_ok());
    let pause = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 0, unit: seconds}]}}}";
    assert!(Plan::from_yaml(pause).is_ok());
}

/// Every problem is reported: a duration both negative and in an unknown unit reports both.
#[test]
fn a_negative_duration_in_an_unknown_unit_reports_both() {
    let yaml = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: -5, unit: weeks}]}}}";
    assert_eq!(
        paths(yaml),
        [
            "targets.dev.constraints.beforeDeployment[0].pause.unit",
            "targets.dev.constraints.beforeDeployment[0].pause.duration",
        ]
    );
}

/// A number its field cannot take is reported in the file's terms, at its path, not as the
/// Rust type it was to be read into (`invalid i64`), in YAML and JSON alike.
#[test]
fn numbers_a_field_cannot_take_are_reported_in_the_files_terms() {
    let yaml = [
        (
            "application: a\ntargets: {dev: {strategy: s}}\nstrategies: {s: {canary: {steps: [setWeight: {weight: 12.5}]}}}",
            "strategies.s.canary.steps[0].setWeight.weight",
        ),
        (
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 1.5, unit: minutes}]}}}",
            "targets.dev.constraints.beforeDeployment[0].pause.duration",
        ),
        (
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 99999999999999999999, unit: minutes}]}}}",
            "targets.dev.constraints.beforeDeployment[0].pause.duration",
        ),
        (
            "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a', retryCount: 2.0}]",
            "webhooks[0].retryCount",
        ),
    ];
    let json = [(
        r#"{"application": "a", "targets": {"dev": {"constraints": {"beforeDeployment": [{"pause": {"duration": 5.0, "unit": "minutes"}}]}}}}"#,
        "targets.dev.constraints.beforeDeployment[0].pause.duration",
    )];
    let read = yaml
        .iter()
        .map(|(source, path)| (Plan::from_yaml(source), path))
        .chain(
            json.iter()
                .map(|(source, path)| (Plan::from_json(source), path)),
        );
    for (read, path) in read {
        let e = read.unwrap_err();
        let ConfigError::Syntax { path: at, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(at, path);
        assert!(message.contains("whole number"), "{message}");
        assert!(!message.contains("i64"), "{message}");
    }
}

/// `Limits::max_depth` promises that a file nested up to the limit (64) is read within the
/// 2 MiB stack of a spawned thread or tokio worker, in a debug build too: here inside a list
/// entry of a strategy, beside a duration that reads (`"1"`) and one that does not (`"x"`), so
/// that the second, well-formedness read runs too. A stack overflow would abort the test
/// binary.
#[test]
fn nesting_up_to_the_limit_fits_a_two_mib_stack() {
    let run = |source: String| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                // Read or refused alike; what is checked is that reading returns at all.
                let _ = Plan::from_yaml(&source);
                let _ = Plan::from_json(&source);
            })
            .unwrap()
            .join()
            .expect("no panic")
    };
    for depth in 50..=64 {
        for bad in ["1", "x"] {
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            run(format!(
                r#"{{"application": "a", "targets": {{"dev": {{"strategy": "s"}}}}, "strategies": {{"s": {{"canary": {{"steps": [{{"x": {deep}, "pause": {{"duration": "{bad}", "unit": "seconds"}}}}]}}}}}}}}"#
            ));
        }
    }
}
