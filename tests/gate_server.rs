//! The `gate_server` example as a separate process: its stdout contract, its exit codes, and
//! crash recovery with SIGKILL.
#![cfg(all(
    feature = "runtime",
    feature = "axum",
    feature = "issuer",
    feature = "reqwest",
    feature = "sqlite",
    feature = "receiver"
))]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use hookgate::receiver::{
    Callback, CallbackClient, CallbackOutcome, ClientCredentials, ReceivedRequest,
};
use hookgate::transport::ReqwestTransport;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn binary() -> PathBuf {
    let deps = std::env::current_exe().expect("the test binary's path");
    let target = deps
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    target.join("examples").join("gate_server")
}

struct Server {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    address: String,
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let mut child = Command::new(binary())
            .args(args)
            .args(["--client-id", "ci", "--client-secret", "s3cret-for-tests"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gate_server starts (cargo test builds the examples)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(first["event"], "listening");
        let address = first["address"].as_str().unwrap().to_owned();
        Server {
            child,
            lines,
            address,
        }
    }

    /// Reads lines until one with this event; returns it.
    fn until(&mut self, event: &str) -> Value {
        for line in self.lines.by_ref() {
            let line: Value = serde_json::from_str(&line.unwrap()).expect("every line is JSON");
            if line["event"] == event {
                return line;
            }
        }
        panic!("gate_server ended before printing {event}");
    }
}

fn config(dir: &Path, external: &str) -> PathBuf {
    let path = dir.join("deploy.yml");
    std::fs::write(
        &path,
        format!(
            r#"
application: crashy
targets:
  prod:
    constraints:
      beforeDeployment: [runWebhook: {{name: ticket}}]
webhooks:
  - name: ticket
    uriTemplate: {external}/ticket
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}"}}'}}
"#
        ),
    )
    .unwrap();
    path
}

async fn external() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

async fn callback_uri(external: &MockServer) -> url::Url {
    let requests = external.received_requests().await.unwrap();
    let last = requests.last().expect("the webhook arrived");
    ReceivedRequest::new()
        .with_body(&last.body)
        .callback_uri()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_sigkill_and_completes_with_a_fresh_token() {
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), &external.uri());
    let db = dir.path().join("state.db");
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ];
    let mut first = Server::spawn(&args);
    let called = first.until("webhook_called");
    assert_eq!(called["environment"], "prod");
    assert_eq!(called["webhook"], "ticket");
    assert_eq!(called["status_code"], 202);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let address = first.address.clone();
    let mut args = args.to_vec();
    args[3] = &address;
    let mut second = Server::spawn(&args);
    assert_eq!(second.address, address);

    let url = callback_uri(&external).await;
    let tokens = ClientCredentials::builder("ci", "s3cret-for-tests")
        .token_url(format!("http://{address}/oauth/token").parse().unwrap())
        .build(ReqwestTransport::builder().build().unwrap())
        .unwrap();
    let client = CallbackClient::new(ReqwestTransport::builder().build().unwrap(), tokens);
    let outcome = client
        .send(&url, &Callback::success().with_message("ticket approved"))
        .await
        .unwrap();
    assert_eq!(outcome, CallbackOutcome::Delivered);
    let received = second.until("callback_received");
    assert_eq!(received["success"], true);
    assert_eq!(received["message"], "ticket approved");
    let finished = second.until("deployment_finished");
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["environments"]["prod"], "succeeded");
    assert!(second.child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_timeout_that_passes_while_down_fails_the_gate_on_restart() {
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), &external.uri());
    let db = dir.path().join("state.db");
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--callback-timeout",
        "1",
    ];
    let mut first = Server::spawn(&args);
    first.until("webhook_called");
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // The deadline is wall-clock and stored; it must pass while no process runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut second = Server::spawn(&args);
    let finished = second.until("deployment_finished");
    assert_eq!(finished["status"], "failed");
    assert_eq!(second.child.wait().unwrap().code(), Some(1));
}

#[test]
fn an_invalid_file_exits_2_with_every_problem_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    std::fs::write(
        &path,
        "application: a\ntargets: {prod: {strategy: nope, constraints: {dependsOn: [ghost]}}}",
    )
    .unwrap();
    let out = Command::new(binary())
        .args([
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--client-id", "a", "--client-secret", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("targets.prod.constraints.dependsOn[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("targets.prod.strategy"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_arguments_exit_2() {
    let out = Command::new(binary()).arg("--listen").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

async fn token(address: &str) -> String {
    use hookgate::receiver::TokenSource;
    let tokens = ClientCredentials::builder("ci", "s3cret-for-tests")
        .token_url(format!("http://{address}/oauth/token").parse().unwrap())
        .build(ReqwestTransport::builder().build().unwrap())
        .unwrap();
    tokens.token().await.unwrap().expose().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_are_decided_at_the_printed_url_and_late_callbacks_get_real_answers() {
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.yml");
    std::fs::write(
        &path,
        format!(
            r#"
application: approvals
targets:
  prod:
    constraints:
      beforeDeployment:
        - pause: {{untilApproved: true, requiresRoles: [release-manager]}}
      afterDeployment: [runWebhook: {{name: smoke}}]
webhooks:
  - name: smoke
    uriTemplate: {}/smoke
    headers: [{{key: Content-Type, value: application/json}}]
    bodyTemplate: {{inline: '{{"callbackUri": "{{{{armory.callbackUri}}}}/callback"}}'}}
"#,
            external.uri()
        ),
    )
    .unwrap();
    let mut server = Server::spawn(&[
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--linger",
        "30",
    ]);
    let requested = server.until("approval_requested");
    assert_eq!(requested["environment"], "prod");
    let approve = requested["approve_url"].as_str().unwrap().to_owned();
    assert!(
        requested["reject_url"]
            .as_str()
            .unwrap()
            .ends_with("/reject")
    );

    let bearer = token(&server.address).await;
    let http = reqwest::Client::new();
    let unauthenticated = http.post(&approve).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let approved = http
        .post(&approve)
        .bearer_auth(&bearer)
        .header("content-type", "application/json")
        .body(r#"{"comment": "ship it"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200, "{}", approved.text().await.unwrap());

    server.until("webhook_called");
    let url = callback_uri(&external).await;
    let send = |success: bool| {
        let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
        async move {
            http.post(url)
                .bearer_auth(bearer)
                .header("content-type", "application/json")
                .body(format!(r#"{{"success": {success}}}"#))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(send(true).await, 200);
    let finished = server.until("deployment_finished");
    assert_eq!(finished["status"], "succeeded");
    // Still serving (--linger): a repeat is 200, the opposite 409, an unknown id 404.
    assert_eq!(send(true).await, 200);
    assert_eq!(send(false).await, 409);
    let unknown = http
        .post(format!(
            "http://{}/callbacks/{}",
            server.address,
            "0".repeat(32)
        ))
        .bearer_auth(&bearer)
        .header("content-type", "application/json")
        .body(r#"{"success": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
