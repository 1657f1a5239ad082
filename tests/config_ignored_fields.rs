//! The keys of a deployment file that hookgate does not read: ignored (PROTOCOL.md §2), and
//! listed, so that a misspelt one can be shown to whoever wrote the file.

use hookgate::config::{DeploymentFile, Plan, Slip};

/// Armory's own fields that hookgate has no use for are listed, and nothing it reads.
#[test]
fn an_armory_file_lists_the_fields_hookgate_does_not_read() {
    let plan = Plan::from_yaml(include_str!("data/armory-deploy.yml")).unwrap();
    assert_eq!(plan.ignored_fields(), ["version", "kind", "manifests"]);
    assert!(plan.near_misses().is_empty(), "{:?}", plan.near_misses());
}

/// A misspelt key is no error, and drops what it meant: here the approval before prod. The
/// list names it where it is, in YAML and in JSON alike.
#[test]
fn misspelt_keys_are_listed_with_their_paths() {
    let yaml = r#"
application: a
targets:
  dev: {}
  prod:
    constraints:
      dependson: [dev]
      beforDeployment:
        - pause: {untilApproved: true}
      afterDeployment:
        - runWebhook: {name: smoke}
          note: checks the pods
webhooks:
  - {name: smoke, uriTemplate: 'https://s.example', retryCont: 3}
"#;
    let expected = [
        "targets.prod.constraints.dependson",
        "targets.prod.constraints.beforDeployment",
        "targets.prod.constraints.afterDeployment[0].note",
        "webhooks[0].retryCont",
    ];
    let plan = Plan::from_yaml(yaml).unwrap();
    assert!(
        plan.gates().len() == 1,
        "only the webhook after deploying is a gate"
    );
    assert_eq!(plan.ignored_fields(), expected);

    // Written out, not built with `json!`, whose map sorts the keys.
    let json = r#"{"application": "a", "targets": {"dev": {}, "prod": {"constraints": {
        "dependson": ["dev"],
        "beforDeployment": [{"pause": {"untilApproved": true}}],
        "afterDeployment": [{"runWebhook": {"name": "smoke"}, "note": "checks the pods"}]}}},
      "webhooks": [{"name": "smoke", "uriTemplate": "https://s.example", "retryCont": 3}]}"#;
    let file = DeploymentFile::from_json(json).unwrap();
    assert_eq!(file.ignored_fields(), expected);
    assert_eq!(file.validate().unwrap().ignored_fields(), expected);

    // All but the note are spelt like a key hookgate reads.
    let near = [
        ("targets.prod.constraints.dependson", "dependsOn"),
        (
            "targets.prod.constraints.beforDeployment",
            "beforeDeployment",
        ),
        ("webhooks[0].retryCont", "retryCount"),
    ];
    for listed in [
        plan.near_misses(),
        file.near_misses(),
        file.validate().unwrap().near_misses(),
    ] {
        let listed: Vec<(&str, &str)> = listed
            .iter()
            .map(|miss| (miss.path.as_str(), miss.known))
            .collect();
        assert_eq!(listed, near);
    }
    assert_eq!(
        plan.near_misses()[1].to_string(),
        "targets.prod.constraints.beforDeployment: hookgate does not read this key; did you mean \
         `beforeDeployment`?"
    );
}

/// A key hookgate reads, written in a place that does not read it, is a slip of place: an
/// under-indented `requiresRoles` that leaves prod's approval open to anyone, a `dependsOn`
/// beside `constraints` that lets prod go first. Keys inside one not read are not looked at.
#[test]
fn a_known_key_in_the_wrong_place_is_a_slip_of_place() {
    let yaml = r#"
application: a
targets:
  dev: {}
  prod:
    dependsOn: [dev]
    constraints:
      beforeDeployment:
        - pause: {untilApproved: true}
          requiresRoles: [release-managers]
manifests:
  - {path: m.yml, targets: [prod]}
"#;
    let plan = Plan::from_yaml(yaml).unwrap();
    assert_eq!(
        plan.ignored_fields(),
        [
            "targets.prod.dependsOn",
            "targets.prod.constraints.beforeDeployment[0].requiresRoles",
            "manifests"
        ]
    );
    let misses: Vec<(&str, &str, Slip)> = plan
        .near_misses()
        .iter()
        .map(|miss| (miss.path.as_str(), miss.known, miss.slip))
        .collect();
    assert_eq!(
        misses,
        [
            ("targets.prod.dependsOn", "dependsOn", Slip::Place),
            (
                "targets.prod.constraints.beforeDeployment[0].requiresRoles",
                "requiresRoles",
                Slip::Place
            ),
        ]
    );
}

/// An entry holding no kind it may hold is refused, naming the kind a key of it is spelt like.
#[test]
fn an_entry_of_a_misspelt_kind_is_refused_with_the_kind_it_is_like() {
    let yaml = "application: a\ntargets:\n  prod:\n    constraints:\n      \
                beforeDeployment:\n        - puase: {untilApproved: true}\n";
    let error = Plan::from_yaml(yaml).unwrap_err().to_string();
    assert!(
        error.contains("did you mean `pause` for `puase`?"),
        "{error}"
    );
}

/// A file may hold any number of keys; a plan keeps the first few, for as long as it runs.
#[test]
fn the_list_keeps_the_first_keys_only() {
    let mut yaml = "application: a\ntargets: {dev: {}}\n".to_owned();
    for i in 0..DeploymentFile::MAX_IGNORED_LISTED + 10 {
        yaml.push_str(&format!("extra{i}: {i}\n"));
    }
    let plan = Plan::from_yaml(&yaml).unwrap();
    let listed = plan.ignored_fields();
    assert_eq!(listed.len(), DeploymentFile::MAX_IGNORED_LISTED);
    assert_eq!(listed[0], "extra0");
    assert_eq!(listed.last().unwrap(), "extra63");
}

/// Near misses are looked for past the listed keys (a file of many targets may fill the list
/// with Armory's own keys), but among the first 1,024 keys not read only: spelling each of a
/// hostile file's hundred thousand against every key hookgate reads would cost more than
/// reading it.
#[test]
fn near_misses_are_looked_for_among_the_first_keys_not_read() {
    let misses = |extra: usize| {
        let mut yaml = "application: a\n".to_owned();
        for i in 0..extra {
            yaml.push_str(&format!("extra{i}: {i}\n"));
        }
        yaml.push_str("targets:\n  prod:\n    constraints:\n      beforDeployment: []\n");
        let plan = Plan::from_yaml(&yaml).unwrap();
        let known: Vec<&str> = plan.near_misses().iter().map(|m| m.known).collect();
        known
    };
    assert_eq!(
        misses(DeploymentFile::MAX_IGNORED_LISTED),
        ["beforeDeployment"],
        "past the list of keys not read"
    );
    assert_eq!(
        misses(DeploymentFile::MAX_IGNORED_EXAMINED - 1),
        ["beforeDeployment"]
    );
    assert_eq!(
        misses(DeploymentFile::MAX_IGNORED_EXAMINED),
        [] as [&str; 0],
        "past the keys looked at"
    );
}

/// Read through another serde format, nothing is known of what was ignored.
#[test]
fn a_file_read_by_another_reader_lists_nothing() {
    let file: DeploymentFile =
        serde_json::from_str(r#"{"application": "a", "targets": {"dev": {}}, "extra": 1}"#)
            .unwrap();
    assert!(file.ignored_fields().is_empty());
    assert!(file.validate().unwrap().ignored_fields().is_empty());
    assert!(file.near_misses().is_empty());
}

#[allow(dead_code, reason = "only `simulate_stderr` is used here")]
mod example_process;

/// The `simulate` example, which runs a file on simulated time to check it, notes each key it
/// does not read on stderr, warns of one likely meant to be a key it reads, and runs the file
/// all the same.
#[test]
fn simulate_notes_the_keys_it_does_not_read() {
    let file = "application: a\ntargets:\n  prod:\n    constraints:\n      beforDeployment: []\n";
    let stderr = example_process::simulate_stderr(file);
    assert_eq!(
        stderr.lines().next(),
        Some(
            "warning: targets.prod.constraints.beforDeployment: hookgate does not read this key; \
             did you mean `beforeDeployment`?"
        ),
        "{stderr}"
    );
}

/// A key of any case, separators and alphabets (the lower case of some longer than the key),
/// or one a character away from a key `constraints` reads.
fn key() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let read = proptest::sample::select(vec!["dependsOn", "beforeDeployment", "afterDeployment"]);
    prop_oneof![
        "[a-zA-Z_\\-İẞΣ]{1,20}",
        (read, any::<proptest::sample::Index>(), "[a-zA-Z_İ]").prop_map(|(key, at, c)| {
            let mut key = key.to_owned();
            key.insert_str(at.index(key.len() + 1), &c);
            key
        }),
    ]
}

proptest::proptest! {
    /// Whatever keys a file holds (fewer than the list keeps), near misses are among the
    /// listed keys, a misspelt one names a key other than itself, a misplaced one itself, and
    /// reading never panics.
    #[test]
    fn near_misses_are_listed_keys_named_otherwise(
        keys in proptest::collection::btree_set(key(), 0..20),
    ) {
        let mut yaml = "application: a\ntargets:\n  dev:\n    constraints:\n".to_owned();
        for key in &keys {
            yaml.push_str(&format!("      \"{key}\": 1\n"));
        }
        let Ok(plan) = Plan::from_yaml(&yaml) else {
            // A key hookgate reads, given a value of the wrong kind.
            return Ok(());
        };
        for miss in plan.near_misses() {
            proptest::prop_assert!(plan.ignored_fields().contains(&miss.path), "{miss}");
            let key = miss.path.trim_start_matches("targets.dev.constraints.");
            match miss.slip {
                Slip::Spelling => proptest::prop_assert_ne!(key, miss.known),
                _ => proptest::prop_assert_eq!(key, miss.known),
            }
        }
    }
}
