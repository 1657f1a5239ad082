//! The deployment file: parsing real files and every rejected-file case of PROTOCOL.md §2,
//! each asserting the reported path.

use std::time::Duration;

use hookgate::config::{
    CanaryStep, ConfigError, DeploymentFile, GateKind, InProgressPolicy, Limits, NetworkMode, Plan,
    ProblemKind, RollBackMode, Stage, Strategy,
};

fn problems(yaml: &str) -> Vec<(String, ProblemKind)> {
    match Plan::from_yaml(yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.problems().into_iter().map(|p| (p.path, p.kind)).collect(),
    }
}

fn paths(yaml: &str) -> Vec<String> {
    problems(yaml).into_iter().map(|(p, _)| p).collect()
}

const WEBHOOK: &str = "webhooks: [{name: hook, uriTemplate: 'https://h.example'}]";

/// The application name is a column of its own in the durable stores, and PostgreSQL text
/// cannot hold NUL: such a file would fail every start as if the database were down.
#[test]
fn an_application_name_with_a_control_character_is_refused() {
    for name in [r#""a\0b""#, r#""a\nb""#, r#""a\u0085b""#] {
        let yaml = format!("application: {name}\ntargets: {{dev: {{}}}}\n");
        assert_eq!(
            problems(&yaml),
            [(
                "application".to_owned(),
                ProblemKind::ControlCharacter {
                    what: "the application name"
                }
            )],
            "{name}"
        );
    }
}

/// A target's name is its environment's: written into webhook headers and paths
/// (`{{armory.environmentName}}`), stored and logged, so it is held to what the application's
/// name is; a name with a line break would fail every gate rendering it into a header.
#[test]
fn a_target_name_empty_or_with_a_control_character_is_refused() {
    for (name, path, kind) in [
        (
            r#""a\nb""#,
            r"targets.a\nb",
            ProblemKind::ControlCharacter {
                what: "a target name",
            },
        ),
        (
            r#""a\0b""#,
            r"targets.a\0b",
            ProblemKind::ControlCharacter {
                what: "a target name",
            },
        ),
        (
            r#""""#,
            "targets",
            ProblemKind::Missing {
                what: "a target name",
            },
        ),
        (
            r#""  ""#,
            "targets",
            ProblemKind::Missing {
                what: "a target name",
            },
        ),
    ] {
        let yaml = format!("application: app\ntargets: {{{name}: {{}}}}\n");
        assert_eq!(problems(&yaml), [(path.to_owned(), kind)], "{name}");
    }
}

/// A strategy's name is in the paths of its gates, which are stored, logged and shown: a line
/// break in it would forge a line of the log.
#[test]
fn a_strategy_name_with_a_control_character_is_refused() {
    let yaml = "application: app\ntargets: {dev: {}}\nstrategies:\n  \
                \"c\\nINFO forged\": {canary: {steps: [setWeight: {weight: 100}]}}\n";
    assert_eq!(
        problems(yaml),
        [(
            r"strategies.c\nINFO forged".to_owned(),
            ProblemKind::ControlCharacter {
                what: "a strategy name"
            }
        )]
    );
}

#[test]
fn parses_an_armory_deploy_file_as_it_is() {
    let plan = Plan::from_yaml(include_str!("data/armory-deploy.yml")).unwrap();
    assert_eq!(plan.application(), "potato-facts");
    assert_eq!(plan.step_timeout(), Some(Duration::from_secs(1800)));
    assert_eq!(plan.if_in_progress(), InProgressPolicy::EnqueueOne);
    let names: Vec<_> = plan.environments().iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        ["staging", "prod-eu", "prod-us"],
        "dependencies first"
    );
    let prod_us = plan.environment(plan.environment_by_name("prod-us").unwrap());
    assert_eq!(prod_us.account(), Some("demo-prod-us-cluster"));
    assert_eq!(prod_us.before().len(), 2);
    let Strategy::Canary { steps, .. } = prod_us.strategy() else {
        panic!()
    };
    assert_eq!(steps.len(), 6);
    assert_eq!(steps[0], CanaryStep::SetWeight(25));
    let CanaryStep::Gate(analysis) = steps[2] else {
        panic!()
    };
    let GateKind::Analysis(spec) = plan.gate(analysis).kind() else {
        panic!()
    };
    assert_eq!(spec.roll_back_mode, RollBackMode::Manual);
    assert_eq!(spec.queries, ["avgCPUUsage-pass"]);
    assert_eq!(
        spec.metric_provider_name.as_deref(),
        Some("Demo-Prometheus")
    );
    assert_eq!(spec.interval, Some(Duration::from_secs(7)));
    assert_eq!(spec.judgment_runs, Some(1));
    let query = plan.analysis_query("avgCPUUsage-pass").expect("defined");
    assert_eq!(
        (query.lower_limit, query.upper_limit),
        (Some(0.0), Some(10000.0))
    );
    assert!(query.query_template.starts_with("avg (avg_over_time("));
    assert_eq!(plan.gate(analysis).stage(), Stage::Strategy(2));
    let approval = plan.gate(prod_us.before()[1]);
    assert!(matches!(
        approval.kind(),
        GateKind::Approval { roles, expiration: Some(e) } if roles.is_empty() && *e == Duration::from_secs(86_400)
    ));
    let check_logs = &plan.webhooks()[0];
    assert_eq!(check_logs.retry_count, 3);
    assert_eq!(check_logs.request.headers().len(), 2);
    let slack = &plan.webhooks()[1];
    assert!(slack.disable_callback);
    assert!(slack.request.uri().starts_with_variable());
    assert_eq!(
        slack.network,
        NetworkMode::RemoteAgent {
            agent: Some("demo-agent".into())
        }
    );
    assert_eq!(plan.remote_agents().collect::<Vec<_>>(), ["demo-agent"]);
}

#[test]
fn json_files_work_too_and_scalars_are_accepted_as_context() {
    let plan = Plan::from_json(
        r#"{"application": "a", "context": {"replicas": 3, "canary": true, "team": "x"},
            "targets": {"dev": {}}}"#,
    )
    .unwrap();
    assert_eq!(plan.context()["replicas"], "3");
    assert_eq!(plan.context()["canary"], "true");
}

/// Armory's files are read as text where text is wanted: an unquoted scalar keeps the
/// spelling it was written with, rather than the number or YAML 1.1 boolean a reader of untyped
/// YAML would take it for.
#[test]
fn yaml_scalars_keep_their_spelling_where_text_is_wanted() {
    let plan = Plan::from_yaml(
        r#"
application: 2024
context: {version: 1.10, release: 1.0, country: NO, build: 007, enabled: yes, big: 12345678901234567890123}
targets:
  prod: {account: 123456789012, namespace: off, constraints: {dependsOn: [n]}}
  n: {}
webhooks:
  - name: w
    uriTemplate: https://example.com
    headers: [{key: X-Api-Version, value: 2}]
"#,
    )
    .unwrap();

    assert_eq!(plan.application(), "2024");
    let context = plan.context();
    for (key, text) in [
        ("version", "1.10"),
        ("release", "1.0"),
        ("country", "NO"),
        ("build", "007"),
        ("enabled", "yes"),
        ("big", "12345678901234567890123"),
    ] {
        assert_eq!(context[key], text, "context.{key}");
    }
    let prod = plan
        .environments()
        .iter()
        .find(|e| e.name() == "prod")
        .unwrap();
    assert_eq!(prod.account(), Some("123456789012"));
    assert_eq!(prod.namespace(), Some("off"));
    assert_eq!(plan.webhooks()[0].request.headers()[0].1.source(), "2");
}

/// A host that reads a `DeploymentFile` with serde itself (inside a payload of its own) still
/// gets numbers and booleans in the context as text, only not in their original spelling; and
/// a `runWebhook`'s context keeps its spelling as the file's does.
#[test]
fn context_scalars_read_through_other_serde_formats_and_in_run_webhook() {
    let file: DeploymentFile = serde_json::from_str(
        r#"{"application": "a", "context": {"n": 5, "v": 1.10, "on": true}, "targets": {}}"#,
    )
    .unwrap();
    let context: Vec<_> = file.context.values().map(|v| v.0.as_str()).collect();
    assert_eq!(context, ["5", "true", "1.1"]);

    let plan = Plan::from_yaml(
        "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: w, context: {v: 1.10}}]}}}\nwebhooks: [{name: w, uriTemplate: 'https://h/{{context.v}}'}]",
    )
    .unwrap();
    let GateKind::Webhook { context, .. } = plan.gates()[0].kind() else {
        panic!("{:?}", plan.gates()[0].kind())
    };
    assert_eq!(context["v"], "1.10");
}

#[test]
fn json_numbers_keep_their_spelling_as_context_and_yaml_is_not_json() {
    let tab_indented = "{\n\t\"application\": \"a\",\n\t\"context\": {\n\t\t\"v\": 1.10,\n\t\t\"e\": \"\\ud83d\\ude00 a\\/b \\u00e9\\t\"\n\t},\n\t\"targets\": {\"dev\": {}}\n}";
    let plan = Plan::from_json(tab_indented).unwrap();
    assert_eq!(plan.context()["v"], "1.10");
    assert_eq!(
        plan.context()["e"],
        "\u{1f600} a/b \u{e9}\t",
        "JSON's escapes"
    );
    let e = Plan::from_json("application: a\ntargets: {dev: {}}").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    let e = Plan::from_json(r#"{"application": "a", "application": "b", "targets": {"dev": {}}}"#)
        .unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { .. }),
        "a repeated key: {e}"
    );
}

#[test]
fn a_uri_template_that_can_never_render_a_url_is_refused_at_load() {
    let problem = |uri: &str| -> Option<ProblemKind> {
        let file = format!(
            "application: a\ntargets: {{dev: {{constraints: {{beforeDeployment: [runWebhook: {{name: w}}]}}}}}}\nwebhooks: [{{name: w, uriTemplate: '{uri}'}}]"
        );
        let e = Plan::from_yaml(&file).err()?;
        let problems = e.problems();
        assert_eq!(problems.len(), 1, "{uri}: {e}");
        assert_eq!(problems[0].path, "webhooks[0].uriTemplate", "{uri}");
        Some(problems[0].kind.clone())
    };
    for bad in [
        "",
        "not a url",
        "ftp://files.example/x",
        "https://",
        "hooks.example.com/{{context.x}}",
        "ftp://{{context.host}}/x",
        // A leading context value is percent-encoded: `https://h` would render `https%3A%2F%2Fh`.
        "{{context.base}}/hooks",
    ] {
        assert!(
            matches!(problem(bad), Some(ProblemKind::InvalidUriTemplate { .. })),
            "{bad:?}"
        );
    }
    // Longer than a request target may be: 40,018 bytes that percent-encoding triples, and one
    // byte over the limit as written.
    for path in ["\u{e9}".repeat(20_000), "a".repeat(65_517)] {
        let uri = format!("https://h.example/{path}");
        assert!(
            matches!(problem(&uri), Some(ProblemKind::InvalidUriTemplate { reason }) if reason.contains("65534")),
            "{} bytes",
            uri.len()
        );
    }
    let malformed = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: w}]}}}\nwebhooks: [{name: w, uriTemplate: '{{context.x'}]";
    assert_eq!(
        problems(malformed),
        [(
            "webhooks[0].uriTemplate".to_owned(),
            ProblemKind::Template(hookgate::template::TemplateError::Unclosed { offset: 0 })
        )],
        "only the template's own problem"
    );
    for good in [
        "https://hooks.example.com/run",
        "HTTP://{{context.host}}/x",
        "{{secrets.base}}/run",
        "{{armory.callbackUri}}",
        "{{context.scheme}}://hooks.example.com/run",
    ] {
        assert_eq!(problem(good), None, "{good:?}");
    }
}

/// Editors on Windows start files with a byte order mark: YAML's reader ignores it, and so
/// does the JSON one (RFC 8259 §8.1 allows it).
#[test]
fn a_byte_order_mark_is_ignored() {
    let json = "\u{feff}{\"application\": \"a\", \"targets\": {\"dev\": {}}}";
    let yaml = "\u{feff}application: a\ntargets: {dev: {}}\n";
    for plan in [
        Plan::from_json(json),
        Plan::from_yaml(json),
        Plan::from_yaml(yaml),
    ] {
        assert_eq!(plan.unwrap().application(), "a");
    }
}

#[test]
fn not_yaml_is_a_syntax_error() {
    let e = Plan::from_yaml("application: [unclosed").unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { ref path, .. } if path == "(file)"),
        "{e}"
    );
}

#[test]
fn wrong_shapes_name_their_path() {
    assert_eq!(
        paths("application: a\ntargets: {dev: {constraints: {dependsOn: 5}}}"),
        ["targets.dev.constraints.dependsOn"]
    );
    assert_eq!(
        paths("targets: {dev: {}}"),
        ["(file)"],
        "application is required"
    );
    assert_eq!(
        paths("application: a\ntargets: {dev: {}}\nwebhooks: [{name: w}]"),
        ["webhooks[0]"],
        "uriTemplate is required"
    );
    assert_eq!(
        paths("application: a\ntargets: {dev: {constraints: {beforeDeployment: [{sleep: 1}]}}}"),
        ["targets.dev.constraints.beforeDeployment[0]"]
    );
}

/// Unknown fields are ignored (PROTOCOL.md §2), beside a list entry's kind too; an entry with
/// two kinds or none is refused at its path, and a problem inside one keeps its full path.
#[test]
fn list_entries_ignore_unknown_keys_beside_their_kind() {
    let yaml = "application: a
targets:
  dev:
    strategy: c
    constraints:
      beforeDeployment: [{pause: {untilApproved: true}, note: hi, owner: {team: x}}]
      afterDeployment: [{runWebhook: {name: hook}, note: 1}]
strategies:
  c: {canary: {steps: [{note: first, setWeight: {weight: 50}}, {pause: {duration: 1, unit: seconds}, x: [1]}]}}
webhooks: [{name: hook, uriTemplate: 'https://h.example'}]
";
    let plan = Plan::from_yaml(yaml).unwrap();
    let json = r#"{"application": "a", "targets": {"dev": {"constraints": {"beforeDeployment": [{"note": "hi", "pause": {"untilApproved": true}}]}}}}"#;
    let from_json = Plan::from_json(json).unwrap();
    assert_eq!(from_json.environments()[0].before().len(), 1);
    let dev = plan.environment(plan.environment_by_name("dev").unwrap());
    assert_eq!(dev.before().len(), 1);
    assert_eq!(dev.after().len(), 1);
    let Strategy::Canary { steps, .. } = dev.strategy() else {
        panic!("a canary")
    };
    assert_eq!(steps.len(), 2);

    let entry = |entry: &str| {
        problems(&format!(
            "application: a\ntargets: {{dev: {{constraints: {{beforeDeployment: [{entry}]}}}}}}\n{WEBHOOK}"
        ))
    };
    let [(path, ProblemKind::Shape { message })] =
        &entry("{pause: {untilApproved: true}, runWebhook: {name: hook}}")[..]
    else {
        panic!(
            "{:?}",
            entry("{pause: {untilApproved: true}, runWebhook: {name: hook}}")
        )
    };
    assert_eq!(path, "targets.dev.constraints.beforeDeployment[0]");
    assert!(
        message.contains("both `pause` and `runWebhook`"),
        "{message}"
    );
    let [(path, ProblemKind::Shape { message })] = &entry("{note: hi}")[..] else {
        panic!("{:?}", entry("{note: hi}"))
    };
    assert_eq!(path, "targets.dev.constraints.beforeDeployment[0]");
    assert!(
        message.contains("needs one of `pause`, `runWebhook`, `analysis`"),
        "{message}"
    );
    assert_eq!(
        entry("{note: hi, pause: {duration: x}}")
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        ["targets.dev.constraints.beforeDeployment[0].pause.duration"]
    );
}

#[test]
fn unknown_webhook_is_rejected() {
    let p = problems(
        "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: nope}]}}}",
    );
    assert_eq!(
        p,
        [(
            "targets.dev.constraints.beforeDeployment[0].runWebhook.name".into(),
            ProblemKind::UnknownWebhook {
                name: "nope".into()
            }
        )]
    );
}

#[test]
fn duplicate_webhook_names_are_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a'}, {name: w, uriTemplate: 'https://b'}]"
        ),
        ["webhooks[1].name"]
    );
}

#[test]
fn unknown_dependency_is_rejected_with_the_example_message() {
    let e = Plan::from_yaml("application: a\ntargets: {prod: {constraints: {dependsOn: [prdo]}}}")
        .unwrap_err();
    assert_eq!(
        e.problems()[0].to_string(),
        r#"targets.prod.constraints.dependsOn[0]: unknown target "prdo""#
    );
}

#[test]
fn dependency_cycles_are_rejected_naming_the_cycle() {
    let p = problems(
        "application: a\ntargets:\n  a: {constraints: {dependsOn: [c]}}\n  b: {constraints: {dependsOn: [a]}}\n  c: {constraints: {dependsOn: [b]}}\n  d: {constraints: {dependsOn: [c]}}\n  e: {constraints: {dependsOn: [e]}}",
    );
    assert_eq!(
        p,
        [
            (
                "targets.a.constraints.dependsOn".into(),
                ProblemKind::DependencyCycle {
                    cycle: vec!["a".into(), "c".into(), "b".into(), "a".into()]
                }
            ),
            (
                "targets.e.constraints.dependsOn".into(),
                ProblemKind::DependencyCycle {
                    cycle: vec!["e".into(), "e".into()]
                }
            ),
        ],
        "one report per cycle; d, which only depends on one, adds none"
    );
}

/// A cycle reached only through a target already walked from another one is reported too:
/// `a` leads first to the `y`–`z` cycle, and its own cycle with `c` must not be lost.
#[test]
fn a_cycle_behind_another_one_is_reported_too() {
    let p = problems(
        "application: a\ntargets:\n  a: {constraints: {dependsOn: [x, c]}}\n  c: {constraints: {dependsOn: [a]}}\n  x: {constraints: {dependsOn: [y]}}\n  y: {constraints: {dependsOn: [z]}}\n  z: {constraints: {dependsOn: [y]}}",
    );
    let cycles: Vec<Vec<String>> = p
        .into_iter()
        .map(|(_, kind)| match kind {
            ProblemKind::DependencyCycle { cycle } => cycle,
            other => panic!("not a cycle: {other:?}"),
        })
        .collect();
    assert_eq!(
        cycles,
        [
            vec!["a".to_owned(), "c".into(), "a".into()],
            vec!["y".to_owned(), "z".into(), "y".into()],
        ]
    );
}

/// A tangle of targets holding thousands of cycles is reported once, with one of its cycles:
/// reporting each would cost far more than the file.
#[test]
fn a_tangle_of_many_cycles_is_reported_once() {
    // A chain t00 → t01 → ... → t59, and each of the last twenty back to each of the first
    // twenty: four hundred edges closing cycles, all in one tangle.
    let mut file = String::from("application: a\ntargets:\n");
    for i in 0..60 {
        let mut deps = Vec::new();
        if i < 59 {
            deps.push(format!("t{:02}", i + 1));
        }
        if i >= 40 {
            deps.extend((0..20).map(|j| format!("t{j:02}")));
        }
        file.push_str(&format!(
            "  t{i:02}: {{constraints: {{dependsOn: [{}]}}}}\n",
            deps.join(", ")
        ));
    }
    let p = problems(&file);
    assert_eq!(p.len(), 1, "{p:?}");
    let ProblemKind::DependencyCycle { cycle } = &p[0].1 else {
        panic!("{p:?}");
    };
    assert_eq!(cycle.first(), cycle.last());
    assert!(
        cycle.len() <= 61,
        "a cycle names each target once: {cycle:?}"
    );
}

#[test]
fn unknown_strategy_is_rejected() {
    assert_eq!(
        paths("application: a\ntargets: {dev: {strategy: fast}}"),
        ["targets.dev.strategy"]
    );
}

#[test]
fn a_strategy_needs_exactly_one_kind() {
    assert_eq!(
        paths("application: a\ntargets: {dev: {strategy: s}}\nstrategies: {s: {}}"),
        ["strategies.s"]
    );
}

#[test]
fn strategies_no_target_uses_are_checked_too() {
    let p = problems(
        "application: a\ntargets: {dev: {}}\nstrategies: {unused: {canary: {steps: [setWeight: {weight: 500}, runWebhook: {name: nope}]}}}",
    );
    assert_eq!(
        p,
        [
            (
                "strategies.unused.canary.steps[0].setWeight.weight".into(),
                ProblemKind::WeightOutOfRange { weight: 500 }
            ),
            (
                "strategies.unused.canary.steps[1].runWebhook.name".into(),
                ProblemKind::UnknownWebhook {
                    name: "nope".into()
                }
            ),
        ]
    );
    let plan = Plan::from_yaml(
        "application: a\ntargets: {dev: {}}\nstrategies: {unused: {canary: {steps: [pause: {untilApproved: true}]}}}",
    )
    .expect("a valid strategy no target uses is accepted");
    assert_eq!(plan.gates().len(), 0, "its gates are not part of the plan");
}

#[test]
fn a_strategy_used_by_several_targets_reports_each_problem_once() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {strategy: s}, prod: {strategy: s}}\nstrategies: {s: {canary: {steps: [setWeight: {weight: 101}]}}}"
        ),
        ["strategies.s.canary.steps[0].setWeight.weight"]
    );
}

/// A strategy is checked once and copied for the other targets using it: each copy's gates are
/// its own target's, and the services its canary exposes are exposed for the `afterDeployment`
/// that follows in each.
#[test]
fn a_strategy_shared_by_targets_gives_each_its_own_gates_and_exposed_services() {
    let plan = Plan::from_yaml(
        r#"
application: a
targets:
  dev: {strategy: can, constraints: {afterDeployment: [runWebhook: {name: w}]}}
  prod: {strategy: can, constraints: {dependsOn: [dev], afterDeployment: [runWebhook: {name: w}]}}
strategies:
  can: {canary: {steps: [exposeServices: {services: [web]}, pause: {untilApproved: true}, setWeight: {weight: 50}, runWebhook: {name: w}]}}
webhooks: [{name: w, uriTemplate: '{{armory.preview.web}}/smoke'}]
"#,
    )
    .expect("each target's canary exposes web before its afterDeployment calls w");
    let mut seen = Vec::new();
    for name in ["dev", "prod"] {
        let env = plan.environment_by_name(name).unwrap();
        let Strategy::Canary { steps, .. } = plan.environment(env).strategy() else {
            panic!("{name} has no canary");
        };
        let gates: Vec<_> = steps
            .iter()
            .filter_map(|step| match step {
                CanaryStep::Gate(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(gates.len(), 2, "{name}");
        for (id, stage) in gates.iter().zip([Stage::Strategy(1), Stage::Strategy(3)]) {
            let gate = plan.gate(*id);
            assert_eq!((gate.env(), gate.stage()), (env, stage), "{name}");
        }
        assert!(matches!(
            plan.gate(gates[0]).kind(),
            GateKind::Approval { .. }
        ));
        assert!(matches!(
            plan.gate(gates[1]).kind(),
            GateKind::Webhook { .. }
        ));
        assert_eq!(
            plan.gate(gates[1]).path(),
            "strategies.can.canary.steps[3]",
            "{name}"
        );
        seen.extend(gates);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each target has gates of its own");
}

/// §2: a remote network agent defaults to the target's account; a webhook that names none, for
/// a target with no account, has nowhere to go, which was found only when the deployment
/// started, as a transport for the agent "" missing.
#[test]
fn a_remote_webhook_with_no_agent_to_go_through_is_refused() {
    let remote = |id: &str| {
        format!(
            "webhooks: [{{name: w, uriTemplate: 'https://a', networkMode: remoteNetworkAgent{id}}}]"
        )
    };
    assert_eq!(
        problems(&format!(
            "application: a\ntargets: {{dev: {{account: acct}}}}\n{}",
            remote(", agentIdentifier: ''")
        )),
        [(
            "webhooks[0].agentIdentifier".into(),
            ProblemKind::NoAgent {
                webhook: "w".into(),
                target: None
            }
        )]
    );
    let calling = |targets: &str| {
        format!(
            "application: a\ntargets: {{{targets}}}\nstrategies: {{s: {{canary: {{steps: [runWebhook: {{name: w}}]}}}}}}\n{}",
            remote("")
        )
    };
    let no_agent = |path: &str, target: &str| {
        (
            path.to_owned(),
            ProblemKind::NoAgent {
                webhook: "w".into(),
                target: Some(target.into()),
            },
        )
    };
    let before = "constraints: {beforeDeployment: [runWebhook: {name: w}]}";
    assert_eq!(
        problems(&calling(&format!("dev: {{{before}}}, qa: {{account: ''}}"))),
        [no_agent(
            "targets.dev.constraints.beforeDeployment[0].runWebhook.name",
            "dev"
        )]
    );
    // The strategy is checked for dev, which has an account, and copied for prod.
    assert_eq!(
        problems(&calling(
            "dev: {account: acct, strategy: s}, prod: {strategy: s}"
        )),
        [no_agent(
            "strategies.s.canary.steps[0].runWebhook.name",
            "prod"
        )]
    );
    let plan = Plan::from_yaml(&calling(&format!(
        "dev: {{account: acct, strategy: s, {before}}}"
    )))
    .expect("the account is the agent");
    assert!(plan.remote_agents().all(|agent| agent == "acct"));
    // A gate naming no webhook is not taken for one calling the first.
    assert_eq!(
        paths(&calling(
            "dev: {constraints: {beforeDeployment: [runWebhook: {name: nope}]}}"
        )),
        ["targets.dev.constraints.beforeDeployment[0].runWebhook.name"]
    );
    assert!(matches!(
        &problems(&calling(
            "dev: {constraints: {beforeDeployment: [runWebhook: {name: nope}]}}"
        ))[0]
            .1,
        ProblemKind::UnknownWebhook { .. }
    ));
}

#[test]
fn weight_outside_0_to_100_is_rejected() {
    let p = problems(
        "application: a\ntargets: {dev: {strategy: s}}\nstrategies: {s: {canary: {steps: [setWeight: {weight: 101}, setWeight: {weight: -1}]}}}",
    );
    assert_eq!(
        p,
        [
            (
                "strategies.s.canary.steps[0].setWeight.weight".into(),
                ProblemKind::WeightOutOfRange { weight: 101 }
            ),
            (
                "strategies.s.canary.steps[1].setWeight.weight".into(),
                ProblemKind::WeightOutOfRange { weight: -1 }
            ),
        ]
    );
}

#[test]
fn negative_durations_and_unknown_units_are_rejected() {
    let p = problems(
        "application: a\ndeploymentConfig: {timeout: {duration: -5, unit: minutes}}\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 5, unit: fortnights}]}}}",
    );
    assert_eq!(
        p,
        [
            (
                "deploymentConfig.timeout.duration".into(),
                ProblemKind::NegativeDuration { duration: -5 }
            ),
            (
                "targets.dev.constraints.beforeDeployment[0].pause.unit".into(),
                ProblemKind::UnknownUnit {
                    unit: "fortnights".into()
                }
            ),
        ]
    );
}

/// The stores index deployments by application; PostgreSQL's index refuses entries of more than
/// about 2.7 KB, which would fail every start of the file.
#[test]
fn an_application_name_is_at_most_255_bytes() {
    let file = |application: &str| format!("application: {application}\ntargets: {{dev: {{}}}}");
    let longest = "é".repeat(127) + "a";
    assert_eq!(longest.len(), Limits::MAX_APPLICATION_BYTES);
    assert!(Plan::from_yaml(&file(&longest)).is_ok());
    assert_eq!(
        problems(&file(&format!("{longest}b"))),
        [(
            "application".into(),
            ProblemKind::TooLong {
                what: "the application name",
                bytes: 256,
                max: 255
            }
        )]
    );
}

/// A name listed twice in `dependsOn` is one dependency of the environment.
#[test]
fn a_dependency_listed_twice_is_one() {
    let plan = Plan::from_yaml(
        "application: a\ntargets:\n  prod: {constraints: {dependsOn: [dev, staging, dev]}}\n  staging: {constraints: {dependsOn: [dev]}}\n  dev: {}",
    )
    .unwrap();
    let names: Vec<&str> = plan.environments().iter().map(|e| e.name()).collect();
    assert_eq!(names, ["dev", "staging", "prod"]);
    assert_eq!(plan.environments()[2].depends_on().len(), 2);
}

/// A zero `deploymentConfig.timeout` times every host step out as it starts (a deadline at the
/// step's own start is passed), its rollback too: no deployment of the file could succeed.
#[test]
fn a_zero_step_timeout_is_rejected() {
    let file = |timeout: &str| {
        format!("application: a\ndeploymentConfig: {{timeout: {timeout}}}\ntargets: {{dev: {{}}}}")
    };
    assert_eq!(
        problems(&file("{duration: 0, unit: minutes}")),
        [(
            "deploymentConfig.timeout.duration".into(),
            ProblemKind::ZeroStepTimeout
        )]
    );
    let plan = Plan::from_yaml(&file("{duration: 1, unit: seconds}")).unwrap();
    assert_eq!(plan.step_timeout(), Some(Duration::from_secs(1)));
}

/// A zero `requestTimeout` (hookgate's extension) would time every call out before it is
/// sent.
#[test]
fn a_zero_request_timeout_is_rejected() {
    let file = |timeout: &str| {
        format!(
            "application: a\ntargets: {{dev: {{constraints: {{beforeDeployment: [runWebhook: {{name: hook}}]}}}}}}\nwebhooks: [{{name: hook, uriTemplate: 'https://h.example', requestTimeout: {timeout}}}]"
        )
    };
    assert_eq!(
        problems(&file("{duration: 0, unit: seconds}")),
        [(
            "webhooks[0].requestTimeout.duration".into(),
            ProblemKind::ZeroRequestTimeout
        )]
    );
    let plan = Plan::from_yaml(&file("{duration: 1, unit: seconds}")).unwrap();
    assert_eq!(
        plan.webhooks()[0].request_timeout,
        Some(Duration::from_secs(1))
    );
}

#[test]
fn units_are_case_insensitive_as_armory_writes_them() {
    let plan = Plan::from_yaml(
        "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 2, unit: MINUTES}]}}}",
    )
    .unwrap();
    assert!(matches!(plan.gates()[0].kind(), GateKind::Pause(d) if *d == Duration::from_secs(120)));
}

#[test]
fn absurdly_long_durations_are_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: {duration: 9223372036854775807, unit: hours}]}}}"
        ),
        ["targets.dev.constraints.beforeDeployment[0].pause.duration"]
    );
}

#[test]
fn agent_identifier_with_direct_mode_is_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a', networkMode: direct, agentIdentifier: x}]"
        ),
        ["webhooks[0].agentIdentifier"]
    );
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a', networkMode: carrierPigeon}]"
        ),
        ["webhooks[0].networkMode"]
    );
}

#[test]
fn templates_with_unknown_variables_or_malformed_braces_are_rejected() {
    let p = paths(
        "application: a\ntargets: {dev: {}}\nwebhooks:\n  - name: w\n    uriTemplate: 'https://a/{{armory.nope}}'\n    headers: [{key: X, value: '{{context.x'}]\n    bodyTemplate: {inline: '{{env.HOME}}'}",
    );
    assert_eq!(
        p,
        [
            "webhooks[0].uriTemplate",
            "webhooks[0].headers[0].value",
            "webhooks[0].bodyTemplate.inline"
        ]
    );
}

/// Headers the HTTP client writes from the request: a `Host` of the file's would send the call,
/// signed for the URL's origin, to another site behind the same front end; a `Content-Length`
/// would cut the body its signature covers.
#[test]
fn headers_the_client_writes_from_the_request_are_refused() {
    let reserved = [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Keep-Alive",
        "Proxy-Connection",
    ];
    let headers: Vec<String> = reserved
        .iter()
        .map(|name| format!("{{key: {name}, value: v}}"))
        .chain(["{key: X-Host, value: v}".to_owned()])
        .collect();
    let yaml = format!(
        "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: w, uriTemplate: 'https://a', headers: [{}]}}]",
        headers.join(", ")
    );
    let found = problems(&yaml);
    let expected: Vec<(String, ProblemKind)> = reserved
        .iter()
        .enumerate()
        .map(|(j, name)| {
            (
                format!("webhooks[0].headers[{j}].key"),
                ProblemKind::ReservedHeader {
                    name: (*name).to_owned(),
                },
            )
        })
        .collect();
    assert_eq!(found, expected);
    assert!(
        found[0].1.to_string().contains("remove it"),
        "{}",
        found[0].1
    );
}

#[test]
fn invalid_header_names_and_methods_are_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, method: 'PO ST', uriTemplate: 'https://a', headers: [{key: 'Bad Header', value: v}]}]"
        ),
        ["webhooks[0].method", "webhooks[0].headers[0].key"]
    );
}

/// `CONNECT` would send `CONNECT host:port` and drop the URI's path and query, and take any
/// 2xx from whatever answers there as the call sent: refused, in any case of spelling, with a
/// message that says why. Other methods, `TRACE` and made-up ones included, are taken.
#[test]
fn connect_is_refused_as_a_webhook_method() {
    for method in ["CONNECT", "connect"] {
        let found = problems(&format!(
            "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: w, method: {method}, uriTemplate: 'https://a/hook?x=1'}}]"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "webhooks[0].method");
        let message = found[0].1.to_string();
        assert!(
            message.contains("tunnel") && message.contains(method),
            "{message}"
        );
    }
    for method in ["PATCH", "TRACE", "PURGE"] {
        let file = format!(
            "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: w, method: {method}, uriTemplate: 'https://a'}}]"
        );
        assert!(Plan::from_yaml(&file).is_ok(), "{method}");
    }
}

/// Text written in a header value that no header may carry fails every call: refused at load,
/// around placeholders too. A tab and text beyond ASCII are fine.
#[test]
fn header_values_that_can_never_be_sent_are_rejected() {
    for value in [
        r"a\x01b",
        r"a\r\nX-Injected: 1",
        r"{{context.x}}\x7f",
        r"a\0",
    ] {
        let yaml = format!(
            "application: a\ntargets: {{dev: {{}}}}\ncontext: {{x: v}}\nwebhooks: [{{name: w, uriTemplate: 'https://a', headers: [{{key: X-A, value: \"{value}\"}}]}}]"
        );
        assert_eq!(
            problems(&yaml),
            [(
                "webhooks[0].headers[0].value".to_owned(),
                ProblemKind::ControlCharacter {
                    what: "a header value (tabs aside)"
                }
            )],
            "{value}"
        );
    }
    Plan::from_yaml(
        "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a', headers: [{key: X-A, value: \"a\\tb \u{e9} {{armory.deploymentId}}\"}]}]",
    )
    .unwrap();
}

#[test]
fn retryable_status_codes_are_kept_sorted_and_absent_means_the_default() {
    let plan = Plan::from_yaml(
        "application: a\ntargets: {dev: {}}\nwebhooks:\n  - {name: listed, uriTemplate: 'https://a', retryableStatusCodes: [503, 409, 100, 599]}\n  - {name: none, uriTemplate: 'https://a', retryableStatusCodes: []}\n  - {name: default, uriTemplate: 'https://a'}",
    )
    .unwrap();
    let codes: Vec<_> = plan
        .webhooks()
        .iter()
        .map(|w| w.retryable_status_codes.clone())
        .collect();
    assert_eq!(
        codes,
        [Some(vec![100, 409, 503, 599]), Some(vec![]), None],
        "an empty list is kept as such, not read as absent"
    );
}

#[test]
fn retryable_status_codes_outside_http_or_2xx_or_repeated_are_refused_each_at_its_path() {
    let at = |j: usize| format!("webhooks[1].retryableStatusCodes[{j}]");
    assert_eq!(
        problems(
            "application: a\ntargets: {dev: {}}\nwebhooks:\n  - {name: ok, uriTemplate: 'https://a', retryableStatusCodes: [409]}\n  - {name: w, uriTemplate: 'https://a', retryableStatusCodes: [99, 600, -1, 70000, 200, 204, 299, 503, 409, 503]}",
        ),
        [
            (
                at(0),
                ProblemKind::OutOfRange {
                    value: 99,
                    min: 100,
                    max: 599
                }
            ),
            (
                at(1),
                ProblemKind::OutOfRange {
                    value: 600,
                    min: 100,
                    max: 599
                }
            ),
            (
                at(2),
                ProblemKind::OutOfRange {
                    value: -1,
                    min: 100,
                    max: 599
                }
            ),
            (
                at(3),
                ProblemKind::OutOfRange {
                    value: 70000,
                    min: 100,
                    max: 599
                }
            ),
            (at(4), ProblemKind::SuccessStatusRetryable { status: 200 }),
            (at(5), ProblemKind::SuccessStatusRetryable { status: 204 }),
            (at(6), ProblemKind::SuccessStatusRetryable { status: 299 }),
            (at(9), ProblemKind::DuplicateStatus { status: 503 }),
        ]
    );
    let shown = Plan::from_yaml(
        "application: a\ntargets: {dev: {}}\nwebhooks: [{name: w, uriTemplate: 'https://a', retryableStatusCodes: [201, 429, 429]}]",
    )
    .unwrap_err()
    .to_string();
    assert!(
        shown.contains(
            "webhooks[0].retryableStatusCodes[0]: 201 is a success (2xx), which is never retried"
        ) && shown.contains("webhooks[0].retryableStatusCodes[2]: status 429 is already listed"),
        "{shown}"
    );
}

#[test]
fn retryable_status_codes_that_are_not_a_list_of_integers_are_shape_errors_at_their_path() {
    let file = |codes: &str| {
        format!(
            "application: a\ntargets: {{dev: {{}}}}\nwebhooks: [{{name: w, uriTemplate: 'https://a', retryableStatusCodes: {codes}}}]"
        )
    };
    for (codes, path) in [
        ("[409, conflict]", "webhooks[0].retryableStatusCodes[1]"),
        ("[409, 503.5]", "webhooks[0].retryableStatusCodes[1]"),
        ("[[409]]", "webhooks[0].retryableStatusCodes[0]"),
        ("409", "webhooks[0].retryableStatusCodes"),
        ("{409: true}", "webhooks[0].retryableStatusCodes"),
    ] {
        let shape = problems(&file(codes));
        assert!(
            matches!(&shape[..], [(p, ProblemKind::Shape { .. })] if p == path),
            "{codes}: {shape:?}"
        );
    }
}

#[test]
fn analysis_in_before_deployment_is_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [analysis: {queries: [q]}]}}}"
        ),
        ["targets.dev.constraints.beforeDeployment[0].analysis"]
    );
}

#[test]
fn preview_urls_before_deployment_are_rejected() {
    assert_eq!(
        paths(
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: w}]}}}\nwebhooks: [{name: w, uriTemplate: '{{armory.preview.web}}'}]"
        ),
        ["targets.dev.constraints.beforeDeployment[0].runWebhook.name"]
    );
}

/// A preview URL has a value only once a step of the target's canary has exposed its service:
/// a webhook using it anywhere else would fail its render every time it ran.
#[test]
fn preview_urls_are_only_used_after_their_service_is_exposed() {
    let canary = |targets: &str, steps: &str| {
        format!(
            "application: a\ntargets: {{{targets}}}\nstrategies: {{can: {{canary: {{steps: [{steps}]}}}}}}\nwebhooks: [{{name: w, uriTemplate: '{{{{armory.preview.web}}}}/smoke'}}]"
        )
    };
    let expose = "exposeServices: {services: [web]}";
    let hook = "runWebhook: {name: w}";
    let after = "constraints: {afterDeployment: [runWebhook: {name: w}]}";
    for fine in [
        canary("prod: {strategy: can}", &format!("{expose}, {hook}")),
        canary(&format!("prod: {{strategy: can, {after}}}"), expose),
    ] {
        assert!(Plan::from_yaml(&fine).is_ok(), "{fine}");
    }
    let blue_green = "application: a\ntargets: {prod: {strategy: bg}}\nstrategies: {bg: {blueGreen: {activeService: web, redirectTrafficAfter: [runWebhook: {name: w}]}}}\nwebhooks: [{name: w, uriTemplate: '{{armory.preview.web}}/smoke'}]";
    for (refused, path) in [
        (
            canary("prod: {strategy: can}", &format!("{hook}, {expose}")),
            "strategies.can.canary.steps[0].runWebhook.name",
        ),
        (
            canary(
                &format!("prod: {{strategy: can, {after}}}"),
                "setWeight: {weight: 50}",
            ),
            "targets.prod.constraints.afterDeployment[0].runWebhook.name",
        ),
        (
            canary(&format!("prod: {{{after}}}"), expose),
            "targets.prod.constraints.afterDeployment[0].runWebhook.name",
        ),
        (
            blue_green.to_owned(),
            "strategies.bg.blueGreen.redirectTrafficAfter[0].runWebhook.name",
        ),
        // Exposed for another target: each target's canary exposes its own services.
        (
            canary(
                &format!("dev: {{strategy: can}}, prod: {{dependsOn: [dev], {after}}}"),
                expose,
            ),
            "targets.prod.constraints.afterDeployment[0].runWebhook.name",
        ),
    ] {
        let problems = Plan::from_yaml(&refused).unwrap_err().problems();
        assert_eq!(
            problems.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
            [path],
            "{refused}"
        );
        assert_eq!(
            problems[0].kind,
            ProblemKind::PreviewNotExposed {
                webhook: "w".into(),
                variable: "armory.preview.web".into()
            }
        );
    }
}

#[test]
fn pauses_must_be_one_form_or_the_other() {
    let base = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [pause: ";
    for bad in [
        "{}",
        "{untilApproved: false}",
        "{duration: 5}",
        "{duration: 5, unit: seconds, untilApproved: true}",
        "{duration: 5, unit: seconds, requiresRoles: [x]}",
    ] {
        assert_eq!(
            paths(&format!("{base}{bad}]}}}}}}")),
            ["targets.dev.constraints.beforeDeployment[0].pause"],
            "{bad}"
        );
    }
}

#[test]
fn out_of_range_values_are_rejected() {
    assert_eq!(
        paths(
            "application: a
targets: {dev: {}}
webhooks: [{name: w, uriTemplate: 'https://a', retryCount: -1}]"
        ),
        ["webhooks[0].retryCount"]
    );
    assert_eq!(
        paths(
            "application: a\ndeploymentConfig: {ifDeploymentInProgress: {strategy: queueAll}}\ntargets: {dev: {}}"
        ),
        ["deploymentConfig.ifDeploymentInProgress.strategy"]
    );
    assert_eq!(paths("application: a\ntargets: {}"), ["targets"]);
    assert_eq!(
        paths("application: ''\ntargets: {dev: {}}"),
        ["application"]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let yaml = format!(
        r#"
application: a
targets:
  dev: {{strategy: nope, constraints: {{dependsOn: [ghost], beforeDeployment: [runWebhook: {{name: missing}}]}}}}
  prod: {{strategy: s}}
strategies: {{s: {{canary: {{steps: [setWeight: {{weight: 400}}]}}}}}}
{WEBHOOK}
"#
    );
    let e = Plan::from_yaml(&yaml).unwrap_err();
    assert_eq!(e.problems().len(), 4);
    let text = e.to_string();
    assert!(
        text.starts_with("the deployment file has 4 problems:"),
        "{text}"
    );
    for path in [
        "targets.dev.constraints.dependsOn[0]",
        "targets.dev.strategy",
        "targets.dev.constraints.beforeDeployment[0].runWebhook.name",
        "strategies.s.canary.steps[0].setWeight.weight",
    ] {
        assert!(text.contains(path), "{path} missing from:\n{text}");
    }
}

mod limits {
    use hookgate::config::{ConfigError, DeploymentFile, Limits, Plan, ProblemKind};
    use proptest::prelude::*;

    const SMALL: &str = "application: a\ntargets: {a: {}, b: {}, c: {}}\nwebhooks: [{name: w, uriTemplate: 'https://example.com/{{context.x}}'}]";

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_parsing() {
        let e =
            Plan::from_yaml_with(SMALL, &Limits::default().with_max_file_bytes(10)).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::TooLarge {
                    what: "file size in bytes",
                    limit: 10
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!(
            "application: a\ntargets: {{}}\ncontext: {}{}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = Plan::from_yaml(&deep).unwrap_err();
        assert!(e.to_string().contains("depth"), "{e}");
        let deep_json = format!(
            "{{\"application\": \"a\", \"targets\": {{}}, \"x\": {}{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        let e = Plan::from_json(&deep_json).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::TooLarge {
                    what: "nesting depth",
                    ..
                }
            ),
            "{e}"
        );
    }

    /// JSON strings may hold characters outside YAML's printable set, which the YAML reader
    /// the fields go through refuses: they are read as the characters they are, as when written
    /// as escapes, whether the file is read as JSON or as YAML (as `Engine::start` reads it).
    /// A file that is YAML alone still may not hold them.
    #[test]
    fn json_strings_keep_characters_yaml_cannot_print() {
        for c in [
            '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{fffe}', '\u{ffff}',
        ] {
            let raw = format!(
                "{{\"application\": \"a\", \"targets\": {{\"dev\": {{\"account\": \"k{c}\\\\{c}\", \"namespace\": \"n\"}}}}}}"
            );
            for plan in [Plan::from_json(&raw), Plan::from_yaml(&raw)] {
                let plan = plan.unwrap_or_else(|e| panic!("{c:?}: {e}"));
                let dev = plan.environment(plan.environment_by_name("dev").unwrap());
                let expected = format!("k{c}\\{c}");
                assert_eq!(dev.account(), Some(expected.as_str()), "{c:?}");
            }
        }
        let yaml = "application: \"a\u{7f}\"\ntargets: {dev: {account: k, namespace: n}}\n";
        let e = Plan::from_yaml(yaml).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }

    /// Reading takes call stack for every level of nesting: a file nested far deeper than 64
    /// under a limit raised past it is refused, where it could overflow the test thread's
    /// 2 MiB stack and abort the process.
    #[test]
    fn nesting_deeper_than_64_is_refused_whatever_the_limit() {
        // `depth` levels in all: the file's own map and `x`'s sequences, one per line.
        let yaml = |depth: usize| {
            let mut text = "application: a\ntargets: {}\nx:\n".to_owned();
            for level in 1..depth {
                text += &format!("{}-\n", "  ".repeat(level));
            }
            text + &format!("{}1\n", "  ".repeat(depth))
        };
        let json = |depth: usize| {
            format!(
                "{{\"application\": \"a\", \"targets\": {{}}, \"x\": {}{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        let too_deep = |e: ConfigError| {
            assert!(
                matches!(
                    e,
                    ConfigError::TooLarge {
                        what: "nesting depth",
                        limit: 64
                    }
                ),
                "{e}"
            );
        };
        // Read to the end: the one problem left is the missing target.
        let read = |e: ConfigError| {
            let first = e.problems().into_iter().next().map(|p| p.path);
            assert_eq!(first.as_deref(), Some("targets"), "{e}");
        };
        let mut set_directly = Limits::default();
        set_directly.max_depth = 10_000;
        let raised = Limits::default().with_max_depth(10_000);
        assert_eq!(raised.max_depth, 64);
        for limits in [raised, set_directly] {
            too_deep(Plan::from_yaml_with(&yaml(600), &limits).unwrap_err());
            too_deep(Plan::from_yaml_with(&yaml(65), &limits).unwrap_err());
            read(Plan::from_yaml_with(&yaml(64), &limits).unwrap_err());
            // 127 is as deep as serde_json reads at all.
            too_deep(Plan::from_json_with(&json(127), &limits).unwrap_err());
            too_deep(Plan::from_json_with(&json(65), &limits).unwrap_err());
            read(Plan::from_json_with(&json(64), &limits).unwrap_err());
        }
    }

    /// A `dependsOn` cycle through as many targets as any limits allow is reported, on a thread
    /// with the 2 MiB stack of a spawned thread or a tokio worker: a cycle check recursing once
    /// per target overflowed it at 4,500 targets in a debug build, aborting the process.
    #[test]
    fn a_cycle_through_every_target_of_the_largest_file_fits_a_threads_stack() {
        let targets = 10_000;
        let mut yaml = "application: a\ntargets:\n".to_owned();
        for t in 0..targets {
            let next = (t + 1) % targets;
            yaml += &format!("  t{t}: {{constraints: {{dependsOn: [t{next}]}}}}\n");
        }
        let limits = Limits::default()
            .with_max_targets(targets)
            .with_max_file_bytes(4 << 20);
        let problems = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || Plan::from_yaml_with(&yaml, &limits).unwrap_err().problems())
            .unwrap()
            .join()
            .expect("the validating thread failed");
        let cycles: Vec<_> = problems
            .iter()
            .filter_map(|p| match &p.kind {
                ProblemKind::DependencyCycle { cycle } => Some(cycle.len()),
                _ => None,
            })
            .collect();
        assert_eq!(cycles, [targets + 1], "{problems:?}");
    }

    #[test]
    fn counts_and_template_sizes_are_limited() {
        let kinds = |limits: &Limits| -> Vec<(String, ProblemKind)> {
            Plan::from_yaml_with(SMALL, limits)
                .unwrap_err()
                .problems()
                .into_iter()
                .map(|p| (p.path, p.kind))
                .collect()
        };
        assert_eq!(
            kinds(&Limits::default().with_max_targets(2))[0].0,
            "targets"
        );
        assert_eq!(
            kinds(&Limits::default().with_max_webhooks(0))[0].0,
            "webhooks"
        );
        assert_eq!(
            kinds(&Limits::default().with_max_template_bytes(8)),
            [(
                "webhooks[0].uriTemplate".to_owned(),
                ProblemKind::TooLarge {
                    what: "template bytes",
                    limit: 8
                }
            )]
        );
        let gates = "application: a\ntargets: {a: {constraints: {beforeDeployment: [pause: {untilApproved: true}, pause: {untilApproved: true}]}}}";
        let e = Plan::from_yaml_with(gates, &Limits::default().with_max_gates(1)).unwrap_err();
        assert_eq!(e.problems()[0].path, "targets");
    }

    /// A file with more YAML nodes than its size allows for is too large, not malformed, and
    /// a larger size limit lets it through.
    #[test]
    fn a_file_of_many_small_values_is_too_large_not_malformed() {
        let values = vec!["1"; 300_000].join(",");
        let source = format!("application: a\ntargets: {{a: {{}}}}\nunused: [{values}]\n");
        assert!(source.len() < 1 << 20);
        let e = Plan::from_yaml(&source).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::TooLarge {
                    what: "nodes (maps, lists and values)",
                    limit: 262_144
                }
            ),
            "{e}"
        );
        let larger = Limits::default().with_max_file_bytes(2 << 20);
        assert!(Plan::from_yaml_with(&source, &larger).is_ok());

        let json =
            format!(r#"{{"application": "a", "targets": {{"a": {{}}}}, "unused": [{values}]}}"#);
        let e = DeploymentFile::from_json(&json).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::TooLarge {
                    what: "nodes (maps, lists and values)",
                    ..
                }
            ),
            "{e}"
        );
    }

    /// A webhook's headers are counted: past the limit the file is refused at `headers`, and no
    /// limit lets through more than a request's header map holds (which panicked in `http`
    /// when the call was sent).
    #[test]
    fn headers_per_webhook_are_limited() {
        let file = |headers: usize| {
            let list = vec!["{key: X-A, value: b}"; headers].join(", ");
            format!(
                "application: a\ntargets: {{a: {{constraints: {{beforeDeployment: [runWebhook: {{name: w}}]}}}}}}\nwebhooks: [{{name: w, uriTemplate: 'https://example.com/', headers: [{list}]}}]"
            )
        };
        let refused = |source: &str, limits: &Limits| {
            path_kinds(Plan::from_yaml_with(source, limits).unwrap_err())
        };
        assert!(Plan::from_yaml(&file(100)).is_ok());
        assert_eq!(
            refused(&file(101), &Limits::default()),
            [(
                "webhooks[0].headers".to_owned(),
                ProblemKind::OutOfRange {
                    value: 101,
                    min: 0,
                    max: 100
                }
            )]
        );
        let unlimited = Limits::default()
            .with_max_file_bytes(4 << 20)
            .with_max_headers(usize::MAX);
        assert_eq!(unlimited.max_headers, 10_000);
        assert!(Plan::from_yaml_with(&file(10_000), &unlimited).is_ok());
        assert_eq!(
            refused(&file(24_577), &unlimited)[0].0,
            "webhooks[0].headers"
        );
    }

    fn path_kinds(e: ConfigError) -> Vec<(String, ProblemKind)> {
        e.problems().into_iter().map(|p| (p.path, p.kind)).collect()
    }

    /// A strategy named by many targets multiplies its gates: the file is refused by counting
    /// them, before any is built (each built gate would cost an allocation and a path).
    #[test]
    fn the_gate_limit_counts_a_shared_strategy_for_every_target_before_building_it() {
        let steps = vec!["{pause: {duration: 1, unit: seconds}}, {setWeight: {weight: 1}}"; 100];
        let targets: Vec<String> = (0..101).map(|i| format!("t{i}: {{strategy: s}}")).collect();
        let file = format!(
            "application: a\ntargets: {{{}}}\nstrategies: {{s: {{canary: {{steps: [{}]}}}}}}",
            targets.join(", "),
            steps.join(", ")
        );
        assert_eq!(
            path_kinds(Plan::from_yaml(&file).unwrap_err()),
            [(
                "targets".to_owned(),
                ProblemKind::TooLarge {
                    what: "gates over all targets",
                    limit: 10_000
                }
            )],
            "100 pauses for each of 101 targets are over the limit, and nothing else is checked"
        );
        let limits = Limits::default().with_max_gates(10_100);
        assert_eq!(
            Plan::from_yaml_with(&file, &limits)
                .expect("within a raised limit")
                .gates()
                .len(),
            10_100
        );
    }

    /// Positions in a canary are 16-bit in the state: a longer one is refused, not wrapped.
    #[test]
    fn a_canary_with_more_steps_than_the_index_limit_is_refused() {
        let steps = vec![r#"{"setWeight": {"weight": 1}}"#; 10_001].join(",");
        let file = format!(
            r#"{{"application": "a", "targets": {{"dev": {{"strategy": "s"}}}}, "strategies": {{"s": {{"canary": {{"steps": [{steps}]}}}}}}}}"#
        );
        assert_eq!(
            path_kinds(Plan::from_json(&file).unwrap_err()),
            [(
                "strategies.s.canary.steps".to_owned(),
                ProblemKind::TooLarge {
                    what: "steps in one canary",
                    limit: 10_000
                }
            )]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_reader_or_validator(text in ".{0,400}") {
            if let Ok(file) = DeploymentFile::from_yaml(&text) {
                let _ = file.validate();
            }
            if let Ok(file) = DeploymentFile::from_json(&text) {
                let _ = file.validate();
            }
        }

        /// The insertion lands anywhere in the file, strategies, webhooks and their templates
        /// included.
        #[test]
        fn mutated_valid_files_never_panic(cut in any::<prop::sample::Index>(), insert in "[\\[\\]{}:,\"' \\n-]{0,8}") {
            let base = include_str!("data/armory-deploy.yml");
            let boundaries: Vec<usize> = base.char_indices().map(|(i, _)| i).chain([base.len()]).collect();
            let at = boundaries[cut.index(boundaries.len())];
            let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
            let _ = Plan::from_yaml(&text);
        }
    }

    /// Arbitrary text is almost never a deployment file, so the test above rarely gets past the
    /// reader; these files have the required fields, with arbitrary values built from the
    /// file's own words, and a good share of them reach the validator.
    #[test]
    fn files_with_arbitrary_fragments_never_panic_the_validator() {
        use std::cell::Cell;

        use proptest::test_runner::{Config, TestRunner};

        let (cases, validated) = (Cell::new(0u32), Cell::new(0u32));
        let mut runner = TestRunner::new(Config {
            source_file: Some(file!()),
            ..Config::default()
        });
        runner
            .run(&file_with_fragments(), |text| {
                cases.set(cases.get() + 1);
                if let Ok(file) = DeploymentFile::from_yaml(&text) {
                    validated.set(validated.get() + 1);
                    let _ = file.validate();
                }
                Ok(())
            })
            .unwrap();
        // About 57% reach it (134 to 161 of 256 in six runs): a quarter is far below any run's.
        assert!(
            validated.get() * 4 >= cases.get(),
            "only {} of {} files reached the validator",
            validated.get(),
            cases.get()
        );
    }

    /// Words of the deployment file, as keys and as values.
    const WORDS: &[&str] = &[
        "account",
        "namespace",
        "strategy",
        "constraints",
        "dependsOn",
        "beforeDeployment",
        "afterDeployment",
        "pause",
        "duration",
        "unit",
        "minutes",
        "hours",
        "seconds",
        "untilApproved",
        "requiresRoles",
        "approvalExpiration",
        "runWebhook",
        "analysis",
        "queries",
        "rollBackMode",
        "name",
        "context",
        "canary",
        "steps",
        "setWeight",
        "weight",
        "exposeServices",
        "services",
        "ttl",
        "blueGreen",
        "activeService",
        "previewService",
        "uriTemplate",
        "method",
        "retryCount",
        "disableCallback",
        "headers",
        "key",
        "value",
        "bodyTemplate",
        "inline",
        "callbackTimeout",
        "a",
        "b",
        "s",
        "w",
        "true",
        "null",
        "0",
        "-1",
        "100",
    ];

    /// Any YAML flow value: scalars (the file's words, numbers, quoted arbitrary text) in
    /// sequences and maps keyed by the file's words.
    fn fragment() -> BoxedStrategy<String> {
        let word = || prop::sample::select(WORDS).prop_map(str::to_owned);
        let scalar = prop_oneof![
            3 => word(),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => quoted(),
        ];
        scalar
            .prop_recursive(3, 24, 4, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|items| format!("[{}]", items.join(", "))),
                    prop::collection::vec((word(), inner), 0..4).prop_map(|entries| {
                        let entries: Vec<String> =
                            entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                        format!("{{{}}}", entries.join(", "))
                    }),
                ]
            })
            .boxed()
    }

    /// Arbitrary printable text, single-quoted (YAML refuses control characters anywhere).
    fn quoted() -> BoxedStrategy<String> {
        "\\PC{0,16}"
            .prop_map(|s| format!("'{}'", s.replace('\'', "''")))
            .boxed()
    }

    /// Mostly a value of the expected shape, sometimes any fragment.
    fn slot(typed: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
        prop_oneof![20 => typed, 1 => fragment()].boxed()
    }

    /// A string: one of the names used across the file, arbitrary text, or a URI template.
    fn text() -> BoxedStrategy<String> {
        slot(prop_oneof![
            3 => prop::sample::select(&["a", "b", "s", "w", "minutes", "hours", "manual"][..])
                .prop_map(str::to_owned),
            1 => quoted(),
            1 => "https://h\\.example/(\\{\\{[a-z.]{0,16}\\}\\}|[a-z/]){0,3}"
                .prop_map(|s| format!("'{s}'")),
        ])
    }

    fn int() -> BoxedStrategy<String> {
        slot(prop_oneof![3 => -2i64..120, 1 => any::<i64>()].prop_map(|n| n.to_string()))
    }

    fn boolean() -> BoxedStrategy<String> {
        slot(any::<bool>().prop_map(|b| b.to_string()))
    }

    fn list(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
        slot(prop::collection::vec(item, 0..3).prop_map(|items| format!("[{}]", items.join(", "))))
    }

    /// A flow map of the fields present.
    fn map(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
        object(vec![], fields)
    }

    /// A flow map of the `required` fields and those of `optional` present.
    fn object(
        required: Vec<(&'static str, BoxedStrategy<String>)>,
        optional: Vec<(&'static str, BoxedStrategy<String>)>,
    ) -> BoxedStrategy<String> {
        let entry = |(key, value): (&'static str, BoxedStrategy<String>)| {
            value.prop_map(move |v| format!("{key}: {v}"))
        };
        let required: Vec<_> = required.into_iter().map(entry).collect();
        let optional: Vec<_> = optional
            .into_iter()
            .map(|field| prop::option::of(entry(field)))
            .collect();
        slot((required, optional).prop_map(|(required, optional)| {
            let fields: Vec<String> = required
                .into_iter()
                .chain(optional.into_iter().flatten())
                .collect();
            format!("{{{}}}", fields.join(", "))
        }))
    }

    /// A map of one entry, `key: value`, as constraints and canary steps are written.
    fn tagged(key: &'static str, value: BoxedStrategy<String>) -> BoxedStrategy<String> {
        value.prop_map(move |v| format!("{{{key}: {v}}}")).boxed()
    }

    fn duration() -> BoxedStrategy<String> {
        object(vec![("duration", int()), ("unit", text())], vec![])
    }

    fn gate() -> BoxedStrategy<String> {
        prop_oneof![
            tagged(
                "pause",
                map(vec![
                    ("duration", int()),
                    ("unit", text()),
                    ("untilApproved", boolean()),
                    ("requiresRoles", list(text())),
                    ("approvalExpiration", duration()),
                ]),
            ),
            tagged("runWebhook", object(vec![("name", text())], vec![])),
            tagged(
                "analysis",
                map(vec![("queries", list(text())), ("rollBackMode", text())]),
            ),
        ]
        .boxed()
    }

    fn target() -> BoxedStrategy<String> {
        map(vec![
            ("account", text()),
            ("strategy", text()),
            (
                "constraints",
                map(vec![
                    ("dependsOn", list(text())),
                    ("beforeDeployment", list(gate())),
                    ("afterDeployment", list(gate())),
                ]),
            ),
        ])
    }

    fn strategy() -> BoxedStrategy<String> {
        let step = prop_oneof![
            tagged("setWeight", object(vec![("weight", int())], vec![])),
            tagged(
                "exposeServices",
                map(vec![("services", list(text())), ("ttl", duration())]),
            ),
            gate(),
        ]
        .boxed();
        prop_oneof![
            tagged("canary", map(vec![("steps", list(step))])),
            tagged(
                "blueGreen",
                map(vec![
                    ("activeService", text()),
                    ("previewService", text()),
                    ("redirectTrafficAfter", list(gate())),
                    ("shutDownOldVersionAfter", list(gate())),
                ]),
            ),
        ]
        .boxed()
    }

    fn webhook() -> BoxedStrategy<String> {
        let header = object(vec![("key", text()), ("value", text())], vec![]);
        object(
            vec![("name", text()), ("uriTemplate", text())],
            vec![
                ("method", text()),
                ("retryCount", int()),
                ("disableCallback", boolean()),
                ("headers", list(header)),
                ("bodyTemplate", map(vec![("inline", text())])),
                ("callbackTimeout", duration()),
            ],
        )
    }

    /// `application` and `targets`, perhaps `strategies`, `webhooks` and `deploymentConfig`,
    /// shaped like a deployment file's but with arbitrary values, names and references.
    fn file_with_fragments() -> impl Strategy<Value = String> {
        let names = |value: BoxedStrategy<String>| {
            prop::collection::btree_map(
                prop::sample::select(&["a", "b", "s", "w"][..]),
                value,
                0..4,
            )
            .prop_map(|entries| {
                let entries: Vec<String> =
                    entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", entries.join(", "))
            })
        };
        (
            text(),
            names(target()),
            prop::option::of(names(strategy())),
            prop::option::of(prop::collection::vec(webhook(), 0..3)),
            prop::option::of(map(vec![("timeout", duration())])),
        )
            .prop_map(|(application, targets, strategies, webhooks, config)| {
                let mut file = format!("application: {application}\ntargets: {targets}\n");
                if let Some(strategies) = strategies {
                    file.push_str(&format!("strategies: {strategies}\n"));
                }
                if let Some(webhooks) = webhooks {
                    file.push_str(&format!("webhooks: [{}]\n", webhooks.join(", ")));
                }
                if let Some(config) = config {
                    file.push_str(&format!("deploymentConfig: {config}\n"));
                }
                file
            })
    }
}

/// Aliases that repeat a large anchored value are charged as the text they stand for: a file
/// under the size limit that would expand to many times it is refused by the reader.
#[test]
fn aliases_that_expand_a_file_far_beyond_its_size_are_refused() {
    let big = "x".repeat(900_000);
    let mut file = format!("application: a\ntargets:\n  t: {{}}\ncontext:\n  k0: &a \"{big}\"\n");
    for i in 1..70 {
        file.push_str(&format!("  k{i}: *a\n"));
    }
    assert!(file.len() < 1 << 20, "under the file limit");
    // Not `expect_err`: its message would print the whole expanded plan.
    let Err(err) = Plan::from_yaml(&file) else {
        panic!("a file expanded 70 times over was accepted");
    };
    let shown = err.to_string();
    assert!(
        shown.len() < 2_000,
        "a short message: {} bytes",
        shown.len()
    );
    assert!(shown.contains("limit"), "{shown}");
}

/// A strategy is written once and built again for every target that uses it: one of thousands
/// of steps named by a thousand targets is refused before it is built, although it holds no
/// gate and the file is small.
#[test]
fn a_large_strategy_used_by_many_targets_is_refused_before_it_is_built() {
    let mut file = String::from("application: a\nstrategies:\n  big:\n    canary:\n      steps:\n");
    for _ in 0..5_000 {
        file.push_str("        - setWeight: {weight: 1}\n");
    }
    file.push_str("targets:\n");
    for i in 0..1_000 {
        file.push_str(&format!("  t{i:04}: {{strategy: big}}\n"));
    }
    assert!(file.len() < 1 << 20, "under the file limit");
    let Err(err) = Plan::from_yaml(&file) else {
        panic!("five million steps were built");
    };
    let shown = err.to_string();
    assert!(shown.contains("bytes of plan"), "{shown}");

    // A strategy's long name is in the path of each of its steps.
    let name = "s".repeat(100_000);
    let mut file =
        format!("application: a\nstrategies:\n  ? \"{name}\"\n  : canary:\n      steps:\n");
    for _ in 0..2_000 {
        file.push_str("        - pause: {untilApproved: true}\n");
    }
    file.push_str(&format!("targets:\n  t: {{strategy: \"{name}\"}}\n"));
    assert!(file.len() < 1 << 20, "under the file limit");
    let Err(err) = Plan::from_yaml(&file) else {
        panic!("two thousand copies of a long name were built");
    };
    assert!(err.to_string().contains("bytes of plan"), "{err}");
}

/// A strategy no target uses is checked all the same, its gates built for the check: its long
/// name, in the path of each, counts towards the plan's size as a used one's does.
#[test]
fn a_long_named_strategy_no_target_uses_is_refused_before_it_is_checked() {
    let name = "s".repeat(100_000);
    let mut file =
        format!("application: a\nstrategies:\n  ? \"{name}\"\n  : canary:\n      steps:\n");
    for _ in 0..2_000 {
        file.push_str("        - pause: {untilApproved: true}\n");
    }
    file.push_str("targets:\n  t: {}\n");
    assert!(file.len() < 1 << 20, "under the file limit");
    let Err(err) = Plan::from_yaml(&file) else {
        panic!("two thousand copies of a long name were built for the check");
    };
    assert!(err.to_string().contains("bytes of plan"), "{err}");
}

/// Problems are listed up to `ConfigError::MAX_LISTED_BYTES` of text and the rest counted: a
/// hostile file of a long target name depending on thousands of unknown targets would
/// otherwise build an error of thousands of copies of that name.
#[test]
fn problems_past_the_listing_limit_are_counted_not_listed() {
    let name = "t".repeat(100_000);
    let deps = vec!["n"; 3_000].join(", ");
    let file = format!(
        "application: a\ntargets:\n  ? \"{name}\"\n  : {{constraints: {{dependsOn: [{deps}]}}}}\n"
    );
    let Err(ConfigError::Invalid { problems, unlisted }) = Plan::from_yaml(&file) else {
        panic!("accepted, or refused for another reason");
    };
    assert_eq!((problems.len(), unlisted), (1, 2_999));
    let shown = ConfigError::Invalid { problems, unlisted }.to_string();
    assert!(shown.len() < 2 * 100_000, "{} bytes", shown.len());
    assert!(shown.starts_with("the deployment file has 3000 problems:"));
    assert!(shown.ends_with("and 2999 more, not listed: fix these and read the file again"));

    let deps: Vec<String> = (0..5_000).map(|i| format!("n{i}")).collect();
    let file = format!(
        "application: a\ntargets: {{t: {{constraints: {{dependsOn: [{}]}}}}}}\n",
        deps.join(", ")
    );
    let Err(ConfigError::Invalid { problems, unlisted }) = Plan::from_yaml(&file) else {
        panic!("accepted, or refused for another reason");
    };
    assert_eq!(problems.len() + unlisted, 5_000);
    assert!(unlisted > 0);
    assert_eq!(
        problems.last().unwrap().to_string(),
        format!(
            "targets.t.constraints.dependsOn[{0}]: unknown target \"n{0}\"",
            problems.len() - 1
        ),
        "the first are listed, in order"
    );
    let listed: usize = problems.iter().map(|p| p.to_string().len()).sum();
    assert!(
        (ConfigError::MAX_LISTED_BYTES..ConfigError::MAX_LISTED_BYTES + 100).contains(&listed),
        "{listed} bytes listed"
    );
}

/// A name written once plain and once quoted (`1` and `"1"`) is one name: refused as a key
/// given twice, in every map of names, rather than the later entry silently replacing the
/// earlier (here, a target with an approval gate dropped for one without).
#[test]
fn a_key_written_plain_and_quoted_is_given_twice() {
    for (file, path) in [
        (
            "application: a\ntargets:\n  \"1\": {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}\n  1: {}\n",
            "targets",
        ),
        (
            "application: a\ntargets:\n  '0x1': {}\n  0x1: {}\n",
            "targets",
        ),
        (
            "application: a\ntargets: {dev: {strategy: '7'}}\nstrategies:\n  '7': {canary: {steps: [setWeight: {weight: 100}]}}\n  7: {canary: {steps: []}}\n",
            "strategies",
        ),
        (
            "application: a\ncontext:\n  '2': x\n  2: y\ntargets: {dev: {}}\n",
            "context",
        ),
        (
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: w, context: {'5': a, 5: b}}]}}}\nwebhooks: [{name: w, uriTemplate: 'https://a'}]\n",
            "targets.dev.constraints.beforeDeployment[0].runWebhook.context",
        ),
    ] {
        let e = Plan::from_yaml(file).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{file}: {e}");
        let text = e.to_string();
        assert!(text.contains("is given twice"), "{file}: {text}");
        assert!(text.starts_with(path), "{file}: {text}");
    }
    let distinct = "application: a\ntargets:\n  \"1\": {}\n  2: {}\ncontext: {'3': x, 4: y}\n";
    let plan = Plan::from_yaml(distinct).unwrap();
    assert_eq!(plan.environments().len(), 2);
    assert_eq!(plan.context()["4"], "y");
}

/// A key written twice alike (a copied target block, a field repeated) is refused at its path,
/// in the file's terms, not with advice for the reader's settings.
#[test]
fn a_key_written_twice_alike_is_refused_at_its_path() {
    for (file, path) in [
        (
            "application: a\ntargets:\n  prod:\n    account: a\n  prod:\n    account: b\n",
            "targets",
        ),
        (
            "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: w}]}}}\nwebhooks:\n  - name: w\n    uriTemplate: https://a.example\n    retryCount: 1\n    retryCount: 2\n",
            "webhooks[0]",
        ),
    ] {
        let e = Plan::from_yaml(file).unwrap_err();
        let ConfigError::Syntax { path: at, message } = &e else {
            panic!("{file}: {e:?}")
        };
        assert_eq!(at, path, "{file}: {message}");
        assert!(message.contains("duplicate"), "{file}: {message}");
        assert!(!message.contains("DuplicateKeyPolicy"), "{file}: {message}");
    }
}

/// A JSON file is read as YAML, which limits a key to 1,024 characters as written: a longer one
/// is refused as such, at the path of the object holding it, not as a value missing beside it.
#[test]
fn a_json_key_longer_than_yaml_reads_is_refused_as_such() {
    let file = |key: &str| {
        format!(
            r#"{{"application": "a", "context": {{"{key}": "v"}}, "targets": {{"dev": {{}}}}}}"#
        )
    };
    let longest = "k".repeat(1022);
    assert_eq!(
        Plan::from_json(&file(&longest)).unwrap().context()[&longest],
        "v"
    );
    let e = Plan::from_json(&file(&"k".repeat(1023))).unwrap_err();
    let ConfigError::Syntax { path, message } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "context");
    assert!(
        message.contains("longer than the 1024 characters"),
        "{message}"
    );
}

/// A field left empty is refused at its path, in the file's terms rather than Rust's.
#[test]
fn an_empty_required_field_is_refused_in_the_files_terms() {
    let e = Plan::from_yaml("application:\ntargets:\n  dev: {}\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("application"), "{text}");
    assert!(text.contains("null is not allowed"), "{text}");
    assert!(!text.contains("Option<String>"), "{text}");
}

/// A `.nan` or `.inf` is a well-formed scalar, kept as written where text is wanted: a shape
/// error elsewhere in the file is reported at its own path, not blamed on it.
#[test]
fn a_shape_error_is_reported_at_its_path_beside_a_non_finite_scalar() {
    let fine = "application: a\ncontext: {ratio: .nan, top: .inf}\ntargets: {dev: {}}\n";
    assert_eq!(Plan::from_yaml(fine).unwrap().context()["ratio"], ".nan");
    let broken =
        "application: a\ncontext: {ratio: .nan}\ntargets: {dev: {constraints: {dependsOn: 5}}}\n";
    let e = Plan::from_yaml(broken).unwrap_err();
    let ConfigError::Syntax { path, message } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "targets.dev.constraints.dependsOn", "{message}");
}

/// Every gate list is in increasing gate order, whatever the targets and strategies: the core
/// finds a gate in its list by binary search.
#[test]
fn every_gate_list_is_in_increasing_gate_order() {
    let plan = Plan::from_yaml(
        r#"
application: lists
targets:
  b:
    strategy: bg
    constraints:
      beforeDeployment: [pause: {untilApproved: true}, pause: {duration: 1, unit: seconds}]
      afterDeployment: [pause: {duration: 2, unit: seconds}, pause: {untilApproved: true}]
  a:
    strategy: can
    constraints:
      dependsOn: [b]
      beforeDeployment: [pause: {duration: 3, unit: seconds}, pause: {untilApproved: true}, pause: {duration: 4, unit: seconds}]
strategies:
  can: {canary: {steps: [pause: {duration: 5, unit: seconds}, setWeight: {weight: 50}, pause: {untilApproved: true}]}}
  bg:
    blueGreen:
      activeService: web
      redirectTrafficAfter: [pause: {duration: 6, unit: seconds}, pause: {untilApproved: true}]
      shutDownOldVersionAfter: [pause: {untilApproved: true}, pause: {duration: 7, unit: seconds}]
"#,
    )
    .unwrap();
    let mut lists = 0;
    for env in plan.environments() {
        let mut of_env = vec![env.before().to_vec(), env.after().to_vec()];
        if let Strategy::BlueGreen {
            redirect_after,
            shutdown_after,
            ..
        } = env.strategy()
        {
            of_env.push(redirect_after.clone());
            of_env.push(shutdown_after.clone());
        }
        for list in of_env.into_iter().filter(|l| !l.is_empty()) {
            assert!(list.is_sorted(), "{}: {list:?}", env.name());
            lists += 1;
        }
    }
    assert_eq!(lists, 5, "every list of the file was looked at");
}
