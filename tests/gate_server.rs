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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use hookgate::core::{DeploymentId, EventKind, Resolution};
use hookgate::receiver::{
    Callback, CallbackClient, CallbackOutcome, ClientCredentials, ReceivedRequest, StaticToken,
    TokenError, TokenSource,
};
use hookgate::store::{SqliteStore, Store};
use hookgate::transport::ReqwestTransport;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

mod example_process;

/// How long a test waits for gate_server to print a line it expects, or to exit, before it
/// fails: a missed line fails the test rather than hanging it.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running gate_server; killed when dropped (a failing test leaves no process behind).
struct Server {
    child: Child,
    /// Its stdout, line by line, read on a thread of its own so that every wait has a deadline.
    lines: Receiver<String>,
    address: String,
}

impl Server {
    fn spawn(args: &[impl AsRef<std::ffi::OsStr>]) -> Server {
        let mut command = Command::new(example_process::binary("gate_server"));
        command
            .args(args)
            .env("CDAAS_CLIENT_SECRET", "s3cret-for-tests");
        Server::start(command)
    }

    /// Starts `command` (gate_server with its arguments) as client `ci`, and waits for it to
    /// listen.
    fn start(mut command: Command) -> Server {
        let mut child = command
            .args(["--client-id", "ci"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gate_server starts");
        let lines = example_process::stdout_lines(&mut child);
        let mut server = Server {
            child,
            lines,
            address: String::new(),
        };
        let first = server.next_line("listening");
        assert_eq!(first["event"], "listening", "the first line: {first}");
        server.address = first["address"].as_str().unwrap().to_owned();
        server
    }

    /// The next line, read by `deadline`; `waiting_for` names what for, for the panic.
    fn next_line_by(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("every line is JSON, not {line:?}: {e}")),
            Err(RecvTimeoutError::Timeout) => {
                panic!("gate_server did not print {waiting_for} within {DEADLINE:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("gate_server ended before printing {waiting_for}")
            }
        }
    }

    fn next_line(&mut self, waiting_for: &str) -> Value {
        self.next_line_by(Instant::now() + DEADLINE, waiting_for)
    }

    /// Reads lines until one with this event (within [`DEADLINE`]); returns it.
    fn until(&mut self, event: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let line = self.next_line_by(deadline, event);
            if line["event"] == event {
                return line;
            }
        }
    }

    /// Every line not read yet, up to the end of its output: for a process that was killed.
    fn rest(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        let mut rest = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => rest.push(serde_json::from_str(&line).expect("every line is JSON")),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("gate_server's output did not end within {DEADLINE:?}")
                }
            }
        }
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Its exit status, once it exits (within [`DEADLINE`]).
    fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gate_server did not exit within {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Already gone when the test waited for it; otherwise the test failed half-way.
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// gate_server's arguments on [`config`] in `dir` (its webhook calling `external`), keeping its
/// state in a database in `dir`: `--config` is at index 1, `--listen` at 3, `--db` at 5.
fn with_db(dir: &Path, external: &str) -> Vec<String> {
    let file = config(dir, external);
    let db = dir.join("state.db");
    [
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
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

/// Every request the external system received: a resumed deployment does not call again.
async fn webhooks_received(external: &MockServer) -> usize {
    external.received_requests().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_sigkill_and_completes_with_a_fresh_token() {
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = with_db(dir.path(), &external.uri());
    let mut first = Server::spawn(&args);
    let ready = first.until("ready");
    assert_eq!(ready["resumed"], false, "{ready}");
    let deployment = ready["deployment"].clone();
    let called = first.until("webhook_called");
    assert_eq!(called["environment"], "prod");
    assert_eq!(called["webhook"], "ticket");
    assert_eq!(called["status_code"], 202);
    first.kill();

    let address = first.address.clone();
    args[3].clone_from(&address);
    let mut second = Server::spawn(&args);
    assert_eq!(second.address, address);
    // `listening` comes before recovery; the callback waits until the deployment is resumed.
    let ready = second.until("ready");
    assert_eq!(ready["resumed"], true, "{ready}");
    assert_eq!(ready["deployment"], deployment);

    let url = callback_uri(&external).await;
    let tokens = ClientCredentials::builder("ci", "s3cret-for-tests")
        .token_url(format!("http://{address}/oauth/token").parse().unwrap())
        .build(ReqwestTransport::builder().build().unwrap())
        .unwrap();
    let client = CallbackClient::new(ReqwestTransport::builder().build().unwrap(), tokens)
        .with_allowed_origins([url.clone()]);
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
    assert!(second.exit_status().success());
    assert_eq!(
        webhooks_received(&external).await,
        1,
        "the webhook went out once"
    );
}

/// A deployment resumed after its file was edited goes on with the file it was started with,
/// and is reported in that file's names: the edited one's environments and webhooks are other
/// ones, at other places.
#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_deployment_is_reported_with_the_file_it_was_started_with() {
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = with_db(dir.path(), &external.uri());
    let mut first = Server::spawn(&args);
    first.until("webhook_called");
    first.kill();
    // Where the callback URI points.
    args[3].clone_from(&first.address);

    std::fs::write(
        &args[1],
        "application: crashy\ntargets:\n  alpha: {}\n  beta: {constraints: {dependsOn: [alpha]}}\n",
    )
    .unwrap();
    let mut second = Server::spawn(&args);
    assert_eq!(second.until("ready")["resumed"], true);
    let url = callback_uri(&external).await;
    let client = CallbackClient::new(
        ReqwestTransport::builder().build().unwrap(),
        StaticToken::new(token(&second.address).await),
    )
    .with_allowed_origins([url.clone()]);
    assert_eq!(
        client.send(&url, &Callback::success()).await.unwrap(),
        CallbackOutcome::Delivered
    );
    let received = second.until("callback_received");
    assert_eq!(received["environment"], "prod", "{received}");
    assert_eq!(received["webhook"], "ticket", "{received}");
    let finished = second.until("deployment_finished");
    assert_eq!(finished["environments"]["prod"], "succeeded", "{finished}");
    assert!(second.exit_status().success());
}

/// An unusable `--public-url` is the arguments' fault: exit status 2.
#[test]
fn an_unusable_public_url_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.yml");
    std::fs::write(&config, "application: a\ntargets: {dev: {}}\n").unwrap();
    for public_url in [
        "not a url",
        "ftp://gates.example",
        "https://u:p@gates.example",
    ] {
        let out = Command::new(example_process::binary("gate_server"))
            .args(["--listen", "127.0.0.1:0", "--client-id", "a", "--config"])
            .arg(&config)
            .args(["--public-url", public_url])
            .env("CDAAS_CLIENT_SECRET", "b")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{public_url}: {stderr}");
        assert!(stderr.contains("public"), "{public_url}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_timeout_that_passes_while_down_fails_the_gate_on_restart() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let external = external().await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = with_db(dir.path(), &external.uri());
    args.extend([
        "--callback-timeout".to_owned(),
        TIMEOUT.as_secs().to_string(),
    ]);
    let mut first = Server::spawn(&args);
    let deployment = first.until("ready")["deployment"].clone();
    // Printed once the webhook's answer and the deadline it set are stored: killed at once,
    // the process dies seconds before its timer would fire.
    first.until("webhook_called");
    first.kill();
    let unread = first.rest();
    assert!(
        !unread.iter().any(|l| l["event"] == "deployment_finished"
            || (l["event"] == "environment_status" && l["status"] == "failed")),
        "the first process failed the gate before it was killed: {unread:?}"
    );
    // The deadline is wall-clock and stored; it must pass while no process runs.
    tokio::time::sleep(TIMEOUT + Duration::from_millis(500)).await;

    let restarted_at = chrono::Utc::now();
    let mut second = Server::spawn(&args);
    let ready = second.until("ready");
    assert_eq!(
        ready["resumed"], true,
        "the deployment was left unfinished by the kill and resumed, not started anew: {ready}"
    );
    assert_eq!(ready["deployment"], deployment);
    let finished = second.until("deployment_finished");
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["environments"]["prod"], "failed");
    assert_eq!(second.exit_status().code(), Some(1));
    assert_eq!(
        webhooks_received(&external).await,
        1,
        "the webhook went out once, before the kill"
    );

    // The record says why and when: the callback timeout, its deadline passed before the
    // restart, and the gate failed by the restarted process.
    let store = SqliteStore::open(&args[5]).await.unwrap();
    let id = DeploymentId::from(deployment.as_str().unwrap());
    let history = store.history(&id).await.unwrap();
    store.close().await;
    let sent: Vec<_> = history
        .iter()
        .filter(|h| matches!(h.event.kind, EventKind::WebhookSent { .. }))
        .map(|h| h.event.at)
        .collect();
    let failed: Vec<_> = history
        .iter()
        .filter_map(|h| match &h.event.kind {
            EventKind::GateFailed { how, .. } => Some((*how, h.event.at)),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{history:?}");
    assert_eq!(failed.len(), 1, "{history:?}");
    let (how, failed_at) = failed[0];
    assert_eq!(how, Resolution::CallbackTimeout);
    let deadline = sent[0] + TIMEOUT;
    assert!(
        deadline < restarted_at,
        "the deadline {deadline} passed while down (restarted at {restarted_at})"
    );
    assert!(
        failed_at >= restarted_at,
        "failed at {failed_at}, by the restarted process (restarted at {restarted_at})"
    );
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
    let out = Command::new(example_process::binary("gate_server"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--client-id", "a"])
        .env("CDAAS_CLIENT_SECRET", "b")
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

/// Arguments the server could run with but never usefully: an empty secret (a variable set but
/// empty) makes a token endpoint that refuses every request, a zero callback timeout fails
/// every gate as soon as its call is answered, and an address that names nothing is no place
/// to listen. Each is the arguments' fault, 2, not the listener's, 1.
#[test]
fn arguments_it_could_only_run_uselessly_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.yml");
    std::fs::write(&config, "application: a\ntargets: {dev: {}}\n").unwrap();
    for (args, secret, says) in [
        (&["--listen", "127.0.0.1:0"][..], "", "must not be empty"),
        (
            &["--listen", "127.0.0.1:0", "--callback-timeout", "0"],
            "b",
            "above zero",
        ),
        (&["--listen", "999.1.1.1:80"], "b", "is no address"),
    ] {
        let out = Command::new(example_process::binary("gate_server"))
            .args(args)
            .args(["--client-id", "a", "--config"])
            .arg(&config)
            .env("CDAAS_CLIENT_SECRET", secret)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A webhook whose JSON-looking body goes out without a JSON `Content-Type` (its values
/// unescaped) is warned of on stderr, named as the file names it, before the arguments are
/// checked further: here an empty secret then stops the server.
#[test]
fn a_json_body_sent_without_a_json_content_type_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.yml");
    let file = "application: a\ntargets: {dev: {constraints: {beforeDeployment: [runWebhook: {name: ticket}]}}}\n\
        webhooks:\n  - {name: ticket, uriTemplate: 'https://t.example/run', \
        bodyTemplate: {inline: '{\"env\": \"{{armory.environmentName}}\"}'}}\n";
    std::fs::write(&config, file).unwrap();
    let out = Command::new(example_process::binary("gate_server"))
        .args(["--listen", "127.0.0.1:0", "--client-id", "a", "--config"])
        .arg(&config)
        .env("CDAAS_CLIENT_SECRET", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let warning = stderr
        .lines()
        .find(|line| line.contains("go in unescaped"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.starts_with("gate_server: warning: webhook \"ticket\" in "),
        "{warning}"
    );
}

#[test]
fn missing_arguments_exit_2() {
    let out = Command::new(example_process::binary("gate_server"))
        .arg("--listen")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

async fn token(address: &str) -> String {
    token_for("s3cret-for-tests", address).await.unwrap()
}

/// A token from gate_server's token endpoint for client `ci` with `secret`.
async fn token_for(secret: &str, address: &str) -> Result<String, TokenError> {
    let tokens = ClientCredentials::builder("ci", secret)
        .token_url(format!("http://{address}/oauth/token").parse().unwrap())
        .build(ReqwestTransport::builder().build().unwrap())
        .unwrap();
    Ok(tokens.token().await?.expose().to_owned())
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
    // Loopback only: an HTTP_PROXY in the environment must not carry these requests.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
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
    server.kill();
}

/// A `--public-url` given with a trailing `/` (a base URL, as the dispatcher takes it) prints
/// approval URLs without a doubled `/`, which the router would not serve.
#[test]
fn a_public_url_with_a_trailing_slash_prints_approval_urls_the_router_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.yml");
    std::fs::write(
        &path,
        "application: slash\ntargets: {prod: {constraints: {beforeDeployment: [pause: {untilApproved: true}]}}}\n",
    )
    .unwrap();
    let mut server = Server::spawn(&[
        "--config",
        path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--public-url",
        "https://gates.example/hookgate/",
    ]);
    let requested = server.until("approval_requested");
    let approve = requested["approve_url"].as_str().unwrap();
    assert!(
        approve.starts_with("https://gates.example/hookgate/deployments/")
            && approve.ends_with("/gates/0/approve"),
        "{approve}"
    );
    server.kill();
}

/// The client secret comes from a file (its line end dropped) or the environment, never the
/// command line. A file that cannot be read is an argument error (2), and says which file.
#[test]
fn the_client_secret_comes_from_a_file_and_a_missing_one_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-secret");
    let out = Command::new(example_process::binary("gate_server"))
        .args(["--config", "unused.yml", "--listen", "127.0.0.1:0"])
        .args(["--client-id", "a", "--client-secret-file"])
        .arg(&missing)
        .env_remove("CDAAS_CLIENT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing-secret"), "{stderr}");

    let out = Command::new(example_process::binary("gate_server"))
        .args(["--config", "unused.yml", "--listen", "127.0.0.1:0"])
        .args(["--client-id", "a", "--client-secret", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no secret on the command line");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown argument \"--client-secret\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A secret file written on Windows, or by `echo`, ends in a line end that the client does not
/// send: the server drops it, and the secret without it gets a token.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_read_from_a_file_gets_tokens_without_its_line_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.yml");
    std::fs::write(&config, "application: a\ntargets: {dev: {}}\n").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-from-a-file\r\n").unwrap();
    let mut command = Command::new(example_process::binary("gate_server"));
    command
        .args(["--listen", "127.0.0.1:0", "--linger", "30", "--config"])
        .arg(&config)
        .arg("--client-secret-file")
        .arg(&secret)
        .env_remove("CDAAS_CLIENT_SECRET");
    let mut server = Server::start(command);

    let issued = token_for("s3cret-from-a-file", &server.address).await;
    assert!(issued.is_ok(), "{issued:?}");
    server.kill();
}

/// A failure once running (here, a database that cannot be opened) is not an invalid file or
/// argument: it exits 1.
#[test]
fn a_failure_once_running_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploy.yml");
    std::fs::write(&config, "application: a\ntargets: {dev: {}}\n").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let out = Command::new(example_process::binary("gate_server"))
        .args(["--listen", "127.0.0.1:0", "--client-id", "a", "--config"])
        .arg(&config)
        .arg("--client-secret-file")
        .arg(&secret)
        .arg("--db")
        .arg(dir.path().join("no-such-dir").join("gates.db"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
