//! Webhooks whose JSON-looking body goes out without a JSON `Content-Type`, and so with its
//! values unescaped (PROTOCOL.md §3): listed by the plan and warned of by the `simulate`
//! example, the file still accepted.

use hookgate::config::Plan;

#[allow(dead_code, reason = "only `simulate_stderr` is used here")]
mod example_process;

const FILE: &str = r#"
application: checkout
targets:
  prod:
    constraints:
      beforeDeployment:
        - runWebhook: {name: ticket}
        - runWebhook: {name: smoke}
        - runWebhook: {name: notify}
webhooks:
  - name: ticket
    uriTemplate: https://tickets.example.com/hooks
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}", "env": "{{armory.environmentName}}"}'}
  - name: smoke
    uriTemplate: https://ci.example.com/run
    headers: [{key: content-type, value: application/json}]
    bodyTemplate: {inline: '{"callbackUri": "{{armory.callbackUri}}"}'}
  - name: notify
    uriTemplate: https://chat.example.com/post
    headers: [{key: Content-Type, value: text/plain}]
    bodyTemplate: {inline: 'deploying to {{armory.environmentName}}: {{armory.callbackUri}}'}
"#;

#[test]
fn the_plan_lists_the_webhooks_whose_json_goes_out_unescaped() {
    let plan = Plan::from_yaml(FILE).unwrap();
    let names: Vec<&str> = plan
        .webhooks_with_unescaped_json()
        .map(|webhook| webhook.name.as_str())
        .collect();
    assert_eq!(names, ["ticket"]);
}

#[test]
fn simulate_warns_of_a_json_body_sent_unescaped_and_runs_the_file() {
    let stderr = example_process::simulate_stderr(FILE);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("unescaped"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: webhook \"ticket\" sends a JSON-looking body without a JSON Content-Type, so its values go in unescaped"
        ],
        "{stderr}"
    );
}
