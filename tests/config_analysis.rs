//! Analysis steps: what of Armory's analysis fields reaches the host (`AnalysisSpec`), the
//! file's `analysis` section of queries, and the files refused for them.

use std::time::Duration;

use hookgate::config::{AnalysisSpec, GateKind, Plan, ProblemKind};

mod analysis_files;

use analysis_files::canary_analysis as file;

const PATH: &str = "strategies.c.canary.steps[1].analysis";

const SECTION: &str = "analysis:
  defaultMetricProviderName: prom
  queries:
    - {name: cpu, lowerLimit: 0, upperLimit: 0.5, queryTemplate: 'avg(cpu)'}
    - {name: errors, upperLimit: 10, queryTemplate: 'sum(errors)'}
";

fn spec(yaml: &str) -> AnalysisSpec {
    let plan = Plan::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    let gate = plan.gates().iter().next().expect("the analysis gate");
    match gate.kind() {
        GateKind::Analysis(spec) => spec.clone(),
        other => panic!("{other:?}"),
    }
}

fn problems(yaml: &str) -> Vec<(String, ProblemKind)> {
    match Plan::from_yaml(yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.problems().into_iter().map(|p| (p.path, p.kind)).collect(),
    }
}

#[test]
fn a_steps_judgment_fields_reach_the_host_with_the_files_default_provider() {
    let spec = spec(&file(
        "queries: [cpu, errors], interval: 2, units: minutes, numberOfJudgmentRuns: 3",
        SECTION,
    ));
    assert_eq!(spec.queries, ["cpu", "errors"]);
    assert_eq!(spec.metric_provider_name.as_deref(), Some("prom"));
    assert_eq!(spec.interval, Some(Duration::from_secs(120)));
    assert_eq!(spec.judgment_runs, Some(3));
}

#[test]
fn a_steps_own_provider_wins_and_every_field_may_be_left_out() {
    let own = spec(&file(
        "queries: [cpu], metricProviderName: datadog",
        SECTION,
    ));
    assert_eq!(own.metric_provider_name.as_deref(), Some("datadog"));
    let bare = spec(&file("queries: [anything]", ""));
    assert_eq!(
        (bare.metric_provider_name, bare.interval, bare.judgment_runs),
        (None, None, None)
    );
}

#[test]
fn the_files_queries_are_the_hosts_to_look_up() {
    let plan = Plan::from_yaml(&file("queries: [cpu]", SECTION)).unwrap();
    let names: Vec<&str> = plan
        .analysis_queries()
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(names, ["cpu", "errors"]);
    let errors = plan.analysis_query("errors").expect("defined");
    assert_eq!((errors.lower_limit, errors.upper_limit), (None, Some(10.0)));
    assert_eq!(errors.query_template, "sum(errors)");
    assert!(plan.analysis_query("memory").is_none());
    assert!(
        plan.ignored_fields().is_empty(),
        "{:?}",
        plan.ignored_fields()
    );
}

/// Where the file defines its queries, a step naming another is a slip that would fail the
/// analysis every time; without the section the names are the host's to know.
#[test]
fn a_step_naming_a_query_the_section_lacks_is_refused() {
    assert_eq!(
        problems(&file("queries: [cpu, memory]", SECTION)),
        [(
            format!("{PATH}.queries[1]"),
            ProblemKind::UnknownQuery {
                name: "memory".into()
            }
        )]
    );
}

#[test]
fn queries_that_could_never_be_judged_are_refused() {
    let section = "analysis:
  defaultMetricProviderName: ' '
  queries:
    - {name: cpu, queryTemplate: 'a'}
    - {name: cpu, queryTemplate: 'b'}
    - {name: '', queryTemplate: 'c'}
    - {name: latency}
    - {name: p99, lowerLimit: 5, upperLimit: 1, queryTemplate: 'd'}
    - {name: p50, upperLimit: .inf, lowerLimit: .nan, queryTemplate: 'e'}
";
    let found = problems(&file("queries: [cpu]", section));
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "analysis.defaultMetricProviderName",
            "analysis.queries[1].name",
            "analysis.queries[2].name",
            "analysis.queries[3].queryTemplate",
            "analysis.queries[4]",
            "analysis.queries[5].lowerLimit",
            "analysis.queries[5].upperLimit",
        ]
    );
    assert_eq!(
        found[1].1,
        ProblemKind::DuplicateQuery { name: "cpu".into() }
    );
    assert!(
        found[4]
            .1
            .to_string()
            .contains("lowerLimit is above upperLimit")
    );
}

#[test]
fn judgment_fields_out_of_shape_are_refused_where_they_are() {
    let cases: [(&str, &str); 9] = [
        ("interval: 5", PATH),
        ("units: minutes", PATH),
        ("interval: 5, units: fortnights", "units"),
        ("interval: -1, units: seconds", "interval"),
        ("interval: 0, units: seconds", "interval"),
        ("interval: 10000000, units: hours", "interval"),
        ("numberOfJudgmentRuns: 0", "numberOfJudgmentRuns"),
        ("numberOfJudgmentRuns: -3", "numberOfJudgmentRuns"),
        ("numberOfJudgmentRuns: 4294967296", "numberOfJudgmentRuns"),
    ];
    for (fields, at) in cases {
        let found = problems(&file(&format!("queries: [q], {fields}"), ""));
        let expected = if at == PATH {
            PATH.to_owned()
        } else {
            format!("{PATH}.{at}")
        };
        assert_eq!(found.len(), 1, "{fields}: {found:?}");
        assert_eq!(found[0].0, expected, "{fields}");
    }
    let blank = problems(&file("queries: [q], metricProviderName: ''", ""));
    assert_eq!(blank[0].0, format!("{PATH}.metricProviderName"));
}

/// A state stored before these fields existed holds an analysis step without them: it is
/// read back with none, and one without them is written as before.
#[test]
fn an_analysis_spec_without_the_judgment_fields_reads_and_writes_as_before() {
    let before = r#"{"queries":["cpu"],"roll_back_mode":"automatic","context":{}}"#;
    let spec: AnalysisSpec = serde_json::from_str(before).unwrap();
    assert_eq!(spec.queries, ["cpu"]);
    assert_eq!(spec.interval, None);
    assert_eq!(serde_json::to_string(&spec).unwrap(), before);
}
