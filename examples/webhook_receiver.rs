//! The external-process side as a small service: receives a webhook, answers at once, runs a
//! (simulated) job, then calls back with the receiver SDK.
//!
//! ```text
//! CDAAS_CLIENT_ID=... CDAAS_CLIENT_SECRET=... \
//! cargo run --example webhook_receiver --features axum,reqwest,receiver -- \
//!     --listen 127.0.0.1:8090 [--token-url URL] [--allow-http-token-url] [--audience AUDIENCE] \
//!     [--work-ms N] [--fail] [--progress] [--callback-origin URL]... [--any-callback-origin] \
//!     [--allow-http-callbacks]
//! ```
//!
//! `--progress` also sends a progress note (`{"inProgress": true, ...}`) half way through the
//! job: a hookgate extension (PROTOCOL.md §8) that Armory's service does not take, so leave
//! it out when Armory sends the webhook.
//!
//! Exit status: 1 when the server cannot listen or stops, 2 for invalid arguments or a missing
//! client id or secret.
//!
//! With no `--token-url` it asks Armory's token endpoint, so pointed at by an Armory webhook
//! it works against the real service; pointed at by `gate_server`, pass
//! `--token-url http://<gate_server address>/oauth/token` (plain http is accepted on loopback
//! only; `--allow-http-token-url` accepts it elsewhere, sending the client secret in the clear).
//! It finds the callback URI wherever
//! Armory's examples put it: in the JSON body (`callbackUri`, `client_payload.callbackUri`, ...),
//! in a query parameter, or in a `CallbackURI` header. Callbacks, and so the token, go only to
//! the origins given with `--callback-origin`; without one, only to where the token is for:
//! Armory's API (`https://api.cloud.armory.io`), or the `--token-url`'s origin when one is
//! given (as `gate_server` serves both). Anyone who can reach the receiver names the callback
//! URI, so `--any-callback-origin`, which accepts any (and is refused beside
//! `--callback-origin`), hands the token to whoever asks. A plain
//! `http` callback URI is used on loopback only; `--allow-http-callbacks` accepts it elsewhere,
//! sending the token in the clear.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hookgate::axum::extract::{RawQuery, State};
use hookgate::axum::http::{HeaderMap, StatusCode};
use hookgate::axum::routing::post;
use hookgate::receiver::{
    Callback, CallbackClient, ClientCredentials, DEFAULT_AUDIENCE, ReceivedRequest,
};
use hookgate::transport::ReqwestTransport;

struct Job {
    client: CallbackClient,
    work: Duration,
    fail: bool,
    progress: bool,
}

/// Why the receiver stopped.
enum Failure {
    /// The arguments or the environment: exit status 2.
    Invalid(String),
    /// Listening or serving: exit status 1.
    Failed(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    let (code, message) = match run().await {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Invalid(message)) => (2, message),
        Err(Failure::Failed(message)) => (1, message),
    };
    eprintln!("webhook_receiver: {message}");
    ExitCode::from(code)
}

async fn run() -> Result<(), Failure> {
    let (listen, job) = configure().map_err(Failure::Invalid)?;
    let app = hookgate::axum::Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state(Arc::new(job));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Failure::Failed(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    println!("webhook_receiver listening on {address}");
    hookgate::axum::serve(listener, app)
        .await
        .map_err(|e| Failure::Failed(format!("the server stopped: {e}")))
}

/// The address to listen on and the job, from the arguments and the environment; errors name
/// the flag or variable at fault.
fn configure() -> Result<(String, Job), String> {
    let mut listen = "127.0.0.1:8090".to_owned();
    let mut token_url: Option<url::Url> = None;
    let mut allow_http = false;
    let mut allow_http_callbacks = false;
    let mut audience = DEFAULT_AUDIENCE.to_owned();
    let mut work = Duration::from_secs(2);
    let mut fail = false;
    let mut progress = false;
    let mut origins = Vec::new();
    let mut any_origin = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--token-url" => {
                let v = value()?;
                token_url = Some(
                    v.parse()
                        .map_err(|e| format!("--token-url {v:?} is not a URL: {e}"))?,
                );
            }
            "--audience" => audience = value()?,
            "--work-ms" => {
                let v = value()?;
                work = Duration::from_millis(
                    v.parse()
                        .map_err(|_| format!("--work-ms takes whole milliseconds, not {v:?}"))?,
                );
            }
            "--fail" => fail = true,
            "--progress" => progress = true,
            "--allow-http-token-url" => allow_http = true,
            "--allow-http-callbacks" => allow_http_callbacks = true,
            "--any-callback-origin" => any_origin = true,
            "--callback-origin" => {
                let origin = value()?;
                // `localhost:8080` parses as a URL of scheme `localhost`, whose origin no
                // callback URI ever has: every callback would be refused.
                match origin.parse::<url::Url>() {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => origins.push(url),
                    _ => {
                        return Err(format!(
                            "--callback-origin {origin:?} is not an http(s) URL; give one such \
                             as https://cd.example.com"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if any_origin && !origins.is_empty() {
        return Err("give --callback-origin or --any-callback-origin, not both".into());
    }
    if origins.is_empty() && !any_origin {
        origins.push(match &token_url {
            Some(url) => url.clone(),
            None => url::Url::parse(DEFAULT_AUDIENCE).map_err(|e| e.to_string())?,
        });
    }
    let id = std::env::var("CDAAS_CLIENT_ID").map_err(|_| "set CDAAS_CLIENT_ID")?;
    let secret = std::env::var("CDAAS_CLIENT_SECRET").map_err(|_| "set CDAAS_CLIENT_SECRET")?;
    let mut tokens = ClientCredentials::builder(id, secret).audience(audience);
    if let Some(url) = token_url {
        tokens = tokens.token_url(url);
    }
    if allow_http {
        tokens = tokens.allow_http_token_url();
    }
    let transport = || {
        ReqwestTransport::builder()
            .build()
            .map_err(|e| e.to_string())
    };
    let tokens = tokens.build(transport()?).map_err(|e| e.to_string())?;
    let client = CallbackClient::new(transport()?, tokens);
    let mut client = if any_origin {
        client.allow_any_origin()
    } else {
        client.with_allowed_origins(origins)
    };
    if allow_http_callbacks {
        client = client.allow_http_callbacks();
    }
    let job = Job {
        client,
        work,
        fail,
        progress,
    };
    Ok((listen, job))
}

async fn receive(
    State(job): State<Arc<Job>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: hookgate::axum::body::Bytes,
) -> (StatusCode, String) {
    let mut received = ReceivedRequest::new()
        .with_headers(&headers)
        .with_body(&body);
    if let Some(q) = query.as_deref() {
        received = received.with_query(q);
    }
    let url = match received.callback_uri() {
        Ok(url) => url,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    // Refused now, the call fails where the orchestrator sees it; accepted, its gate would
    // wait for a callback this receiver will never send.
    if let Err(e) = job.client.check(&url) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n"));
    }
    // Not the path: the callback id in it resolves the gate with any callback token.
    println!(
        "webhook received; calling back to {} after the job",
        url.host_str().unwrap_or("?")
    );
    tokio::spawn(async move {
        tokio::time::sleep(job.work / 2).await;
        if job.progress
            && let Err(e) = job
                .client
                .send(&url, &Callback::progress("job half done"))
                .await
        {
            eprintln!("progress note failed: {e}");
        }
        tokio::time::sleep(job.work / 2).await;
        let callback = Callback::outcome(!job.fail).with_message(if job.fail {
            "the job **failed**"
        } else {
            "the job **passed**"
        });
        match job.client.send(&url, &callback).await {
            Ok(outcome) => println!("callback answered: {outcome:?}"),
            Err(e) => eprintln!("callback failed: {e}"),
        }
    });
    (StatusCode::ACCEPTED, "accepted\n".into())
}
