//! The `webhook_receiver` example as a separate process: it receives a webhook and calls back
//! where the webhook says, within the origins its flags allow.
#![cfg(all(feature = "axum", feature = "reqwest", feature = "receiver"))]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod example_process;

/// How long a test waits for a line it expects before it fails rather than hang.
const DEADLINE: Duration = Duration::from_secs(60);

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(example_process::binary("webhook_receiver"));
    command
        .args(args)
        .env("CDAAS_CLIENT_ID", "ci")
        .env("CDAAS_CLIENT_SECRET", "s3cret-for-tests");
    command
}

/// A running webhook_receiver, killed when dropped, and its stdout line by line.
struct Receiving {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiving {
    fn spawn(args: &[&str]) -> (Receiving, String) {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("webhook_receiver starts");
        let lines = example_process::stdout_lines(&mut child);
        let mut receiving = Receiving { child, lines };
        let first = receiving.line();
        let address = first
            .strip_prefix("webhook_receiver listening on ")
            .unwrap_or_else(|| panic!("the first line names the address: {first:?}"))
            .to_owned();
        (receiving, address)
    }

    /// Sends the receiver at `address` a webhook naming `callback_uri`, and waits until it
    /// has called back.
    async fn call_back_to(&mut self, address: &str, callback_uri: &str) {
        let answer = webhook(address, callback_uri).await;
        assert_eq!(answer.status(), 202);
        assert!(self.line().starts_with("webhook received"));
        let answered = self.line();
        assert!(answered.starts_with("callback answered"), "{answered}");
    }

    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .expect("webhook_receiver prints the line expected")
    }
}

/// Sends the receiver at `address` a webhook call naming `callback_uri`.
async fn webhook(address: &str, callback_uri: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{address}/"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "callbackUri": callback_uri }).to_string())
        .send()
        .await
        .unwrap()
}

/// An orchestrator on loopback: its token endpoint issues a token, and its callback URI
/// `/callbacks/x/callback` answers `applied`.
async fn orchestrator() -> MockServer {
    let orchestrator = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "t0ken", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .mount(&orchestrator)
        .await;
    Mock::given(method("POST"))
        .and(path("/callbacks/x/callback"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "applied"})),
        )
        .mount(&orchestrator)
        .await;
    orchestrator
}

/// `--any-callback-origin` calls back to an origin other than the token's: it set an empty
/// list of allowed origins, which allows none, so every callback was refused.
#[tokio::test(flavor = "multi_thread")]
async fn any_callback_origin_calls_back_to_any_origin() {
    let orchestrator = orchestrator().await;
    let port = orchestrator.address().port();
    let token_url = format!("http://127.0.0.1:{port}/oauth/token");
    let (mut receiving, address) = Receiving::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--token-url",
        &token_url,
        "--any-callback-origin",
        "--progress",
        "--work-ms",
        "0",
    ]);

    // `localhost`, not the token URL's `127.0.0.1`: another origin.
    let callback_uri = format!("http://localhost:{port}/callbacks/x/callback");
    receiving.call_back_to(&address, &callback_uri).await;
    let callbacks = orchestrator
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/callbacks/x/callback")
        .count();
    assert_eq!(callbacks, 2, "the progress note and the outcome");
}

/// A webhook naming a callback URI outside the allowed origins is answered `400` at once,
/// saying why, rather than accepted with a callback that is never sent; nothing is sent to
/// that origin, and no token is asked for.
#[tokio::test(flavor = "multi_thread")]
async fn a_callback_uri_outside_the_allowed_origins_is_refused_up_front() {
    let orchestrator = orchestrator().await;
    let port = orchestrator.address().port();
    let token_url = format!("http://127.0.0.1:{port}/oauth/token");
    let (_receiving, address) =
        Receiving::spawn(&["--listen", "127.0.0.1:0", "--token-url", &token_url]);

    // `localhost`, not the token URL's `127.0.0.1`: another origin.
    let callback_uri = format!("http://localhost:{port}/callbacks/x/callback");
    let answer = webhook(&address, &callback_uri).await;
    assert_eq!(answer.status(), 400);
    let text = answer.text().await.unwrap();
    assert!(text.contains("origin"), "{text}");
    assert!(orchestrator.received_requests().await.unwrap().is_empty());
}

/// Without `--progress` only the outcome is sent: a body without `success` is hookgate's
/// extension, which Armory's service does not take.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_outcome_is_sent_without_progress() {
    let orchestrator = orchestrator().await;
    let token_url = format!("{}/oauth/token", orchestrator.uri());
    let (mut receiving, address) = Receiving::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--token-url",
        &token_url,
        "--work-ms",
        "0",
    ]);

    let callback_uri = format!("{}/callbacks/x/callback", orchestrator.uri());
    receiving.call_back_to(&address, &callback_uri).await;
    let bodies: Vec<serde_json::Value> = orchestrator
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/callbacks/x/callback")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["success"], true, "{bodies:?}");
}

/// A flag's unusable value is an argument error, 2, whose message names the flag, as is a
/// missing or empty credential; an address that cannot be listened on is a failure, 1.
#[test]
fn argument_errors_name_their_flag_and_exit_2() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    for (args, secret, code, says) in [
        (&["--work-ms", "abc"][..], "s", 2, "--work-ms"),
        (&["--token-url", "not-a-url"], "s", 2, "--token-url"),
        (&["--listen"], "s", 2, "--listen needs a value"),
        (&[], "", 2, "must not be empty"),
        (&["--listen", busy.as_str()], "s", 1, "cannot listen on"),
    ] {
        let out = command(args)
            .env("CDAAS_CLIENT_SECRET", secret)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("webhook_receiver: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}

/// An origin given without a scheme (`localhost:8080`) is refused at start: it parsed as a URL
/// whose origin no callback URI has, and every callback was refused.
#[test]
fn a_callback_origin_without_a_scheme_is_refused_at_start() {
    let mut child = command(&[
        "--listen",
        "127.0.0.1:0",
        "--callback-origin",
        "localhost:8080",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("webhook_receiver starts");
    // Polled with a deadline: a receiver that starts anyway would never end.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("webhook_receiver started and kept running with an unusable origin");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("is not an http(s) URL"), "{stderr}");
}
