//! A runnable approval-gate server, for trying hookgate against any external system.
//!
//! ```text
//! cargo run --example gate_server --features runtime,axum,issuer,reqwest,sqlite -- \
//!     --config FILE --listen ADDR [--public-url URL] [--db PATH] \
//!     [--client-id ID --client-secret-file PATH] [--callback-timeout SECONDS] \
//!     [--context KEY=VALUE]... [--linger SECONDS]
//! ```
//!
//! It serves hookgate's router at `--listen` (port 0 picks a free port), starts one deployment
//! of the file — or resumes the unfinished one of the same application that `--db` holds, with
//! the file and context it was started with — simulates host steps (logged on stderr;
//! `RUST_LOG` filters), and writes one JSON object per
//! line on stdout, each with an `"event"` field: `listening` (with the bound `address`), once
//! the router serves; `ready` (with the `deployment` id and whether it was `resumed`), once the
//! unfinished deployments in `--db` were recovered and this one started or resumed (a client
//! waits for it before it sends a callback, which would otherwise race recovery); then
//! `environment_status`, `webhook_called`, `callback_received`, `approval_requested`,
//! `rollback_started`, and last `deployment_finished`. External systems get tokens from
//! `POST /oauth/token` with the client credentials (default: the environment variables
//! `CDAAS_CLIENT_ID` / `CDAAS_CLIENT_SECRET`); those tokens hold the scope `approvals`, which
//! the approval URLs ask for. The secret is read from a file or the
//! environment, never from the command line, where `ps` and the shell's history would show it.
//!
//! Exit status: 0 when the deployment succeeded, 1 for any other outcome or a failure once
//! running (the store, the listener, recovery), 2 for an invalid file or arguments (every
//! validation error on stderr).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hookgate::Secret;
use hookgate::auth::{IssuerClient, TokenIssuer};
use hookgate::config::{GateKind, Plan};
use hookgate::core::{DeploymentId, EventKind, Settings};
use hookgate::outbound::Dispatcher;
use hookgate::runtime::{Engine, EngineEvent, SimulatedHost};
use hookgate::secrets::EnvSecrets;
use hookgate::server::{CallbackHandler, ServerState, router};
use hookgate::store::{DynStore, MemoryStore, SqliteStore, Store};
use hookgate::transport::{ReqwestTransport, TransportRegistry};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

/// The audience tokens are issued for: Armory's, so Armory-targeting clients work unchanged.
const AUDIENCE: &str = "https://api.cloud.armory.io";
/// The scope a token needs to approve or reject.
const APPROVAL_SCOPE: &str = "approvals";

struct Args {
    config: String,
    listen: String,
    public_url: Option<String>,
    db: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    callback_timeout: Option<u64>,
    context: BTreeMap<String, String>,
    linger: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        config: String::new(),
        listen: String::new(),
        public_url: None,
        db: None,
        client_id: std::env::var("CDAAS_CLIENT_ID").ok(),
        client_secret: std::env::var("CDAAS_CLIENT_SECRET").ok(),
        callback_timeout: None,
        context: BTreeMap::new(),
        linger: 0,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => parsed.config = value()?,
            "--listen" => parsed.listen = value()?,
            "--public-url" => parsed.public_url = Some(value()?),
            "--db" => parsed.db = Some(value()?),
            "--client-id" => parsed.client_id = Some(value()?),
            "--client-secret-file" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the client secret from {path}: {e}"))?;
                // The line end an editor or `echo` leaves is not part of the secret.
                parsed.client_secret = Some(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            "--callback-timeout" => {
                let v = value()?;
                // Zero is refused as a file's `callbackTimeout: 0` is: every gate would time
                // out as soon as its call was answered.
                parsed.callback_timeout =
                    Some(v.parse().ok().filter(|&s: &u64| s > 0).ok_or_else(|| {
                        format!("--callback-timeout takes whole seconds above zero, not {v:?}")
                    })?);
            }
            "--context" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or(format!("--context takes KEY=VALUE, not {v:?}"))?;
                parsed.context.insert(k.to_owned(), val.to_owned());
            }
            "--linger" => {
                let v = value()?;
                parsed.linger = v
                    .parse()
                    .map_err(|_| format!("--linger takes whole seconds, not {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if parsed.config.is_empty() || parsed.listen.is_empty() {
        return Err("--config and --listen are required".into());
    }
    Ok(parsed)
}

fn emit(line: Value) {
    println!("{line}");
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs (simulated host steps among them) go to stderr; stdout carries only the JSON lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hookgate=info")),
        )
        .init();
    match run().await {
        Ok(code) => code,
        Err(Failure::Invalid(message)) => {
            eprintln!("gate_server: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("gate_server: {message}");
            ExitCode::from(1)
        }
    }
}

/// Why the server stopped before the deployment finished.
enum Failure {
    /// The file or the arguments: exit status 2.
    Invalid(String),
    /// Anything once running: exit status 1.
    Failed(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

async fn run() -> Result<ExitCode, Failure> {
    let args = parse_args().map_err(|e| {
        Failure::Invalid(format!(
            "{e}\nsee the usage at the top of examples/gate_server.rs"
        ))
    })?;
    let source = std::fs::read_to_string(&args.config)
        .map_err(|e| Failure::Invalid(format!("cannot read {}: {e}", args.config)))?;
    let plan = Plan::from_yaml(&source).map_err(|e| Failure::Invalid(e.to_string()))?;
    for field in plan.ignored_fields() {
        if !plan.near_misses().iter().any(|miss| &miss.path == field) {
            let field = field.escape_debug();
            eprintln!(
                "gate_server: note: {field} in {} is not read by hookgate",
                args.config
            );
        }
    }
    for miss in plan.near_misses() {
        eprintln!("gate_server: warning: {miss} (in {})", args.config);
    }
    for webhook in plan.webhooks_with_unescaped_json() {
        eprintln!(
            "gate_server: warning: webhook {:?} in {} sends a JSON-looking body without a JSON Content-Type, so its values go in unescaped",
            webhook.name, args.config
        );
    }
    let (Some(client_id), Some(client_secret)) = (args.client_id, args.client_secret) else {
        return Err(Failure::Invalid("client credentials are required: --client-id and --client-secret-file, or CDAAS_CLIENT_ID and CDAAS_CLIENT_SECRET".into()));
    };
    // A variable set but empty (`CDAAS_CLIENT_SECRET=$UNSET`) would serve a token endpoint that
    // refuses every request.
    if client_id.is_empty() || client_secret.is_empty() {
        return Err(Failure::Invalid(
            "the client id and secret must not be empty (check CDAAS_CLIENT_ID, \
             CDAAS_CLIENT_SECRET or the secret file)"
                .into(),
        ));
    }

    // Resolved before binding: an address that names nothing (`999.1.1.1:80`, a host name
    // that does not resolve) is the arguments' fault, one that cannot be bound the machine's.
    let no_address = |why: &dyn std::fmt::Display| {
        Failure::Invalid(format!("--listen {} is no address: {why}", args.listen))
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(&args.listen)
        .await
        .map_err(|e| no_address(&e))?
        .collect();
    if addresses.is_empty() {
        return Err(no_address(&"it resolves to none"));
    }
    let listener = tokio::net::TcpListener::bind(addresses.as_slice())
        .await
        .map_err(|e| Failure::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let address: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    // Without its trailing `/`, as the dispatcher takes a base URL: the approval URLs printed
    // below are built on it.
    let public_url = args.public_url.map_or_else(
        || format!("http://{address}"),
        |url| url.trim_end_matches('/').to_owned(),
    );

    let store: Arc<DynStore> = match &args.db {
        Some(path) => Arc::new(SqliteStore::open(path).await.map_err(|e| e.to_string())?),
        None => Arc::new(MemoryStore::new()),
    };
    // An unfinished deployment of the application goes on with the file it was started with,
    // which the engine reads from the store: its names and roles come from that file too.
    let resumable = store
        .list_unfinished()
        .await
        .map_err(|e| e.to_string())?
        .deployments
        .into_iter()
        .find(|d| d.application == plan.application());
    let plan = match &resumable {
        Some(stored) => {
            if stored.plan_source != source || !args.context.is_empty() {
                eprintln!(
                    "gate_server: deployment {} goes on with the file and context it was started with; {} and --context apply to the next deployment",
                    stored.id, args.config
                );
            }
            Plan::from_yaml(&stored.plan_source).map_err(|e| {
                format!(
                    "the file deployment {} was started with no longer validates: {e}",
                    stored.id
                )
            })?
        }
        None => plan,
    };
    let resumable = resumable.map(|d| d.id);
    let transport = ReqwestTransport::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let dispatcher = Dispatcher::builder(
        TransportRegistry::new(Arc::new(transport)),
        Arc::new(EnvSecrets::new()),
        public_url.clone(),
    )
    .build()
    .map_err(|e| Failure::Invalid(format!("--public-url: {e}")))?;
    let mut settings = Settings::default();
    if let Some(seconds) = args.callback_timeout {
        settings = settings.with_callback_timeout(Duration::from_secs(seconds));
    }
    let engine = Engine::builder(dispatcher, SimulatedHost)
        .shared_store(Arc::clone(&store))
        .settings(settings)
        .build();

    // The one client may decide every approval of the file, so it holds every role named, and
    // the scope the server asks of deciders (a real server gives it to people's tokens only).
    let roles: Vec<String> = plan
        .gates()
        .iter()
        .filter_map(|g| match g.kind() {
            GateKind::Approval { roles, .. } => Some(roles.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for the signing key: {e}"))?;
    let issuer = Arc::new(
        TokenIssuer::builder(
            public_url.clone(),
            AUDIENCE,
            Secret::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        )
        .client(
            IssuerClient::from_secret(client_id, &Secret::new(client_secret))
                .with_roles(roles)
                .with_scopes([APPROVAL_SCOPE]),
        )
        .build()
        .map_err(|e| Failure::Invalid(e.to_string()))?,
    );
    let handler = CallbackHandler::new(Arc::new(engine.clone()), issuer.clone())
        .with_approval_scope(APPROVAL_SCOPE);
    let app = router(ServerState::new(handler).with_issuer(issuer));
    tokio::spawn(async move {
        if let Err(e) = hookgate::axum::serve(listener, app).await {
            eprintln!("gate_server: the server stopped: {e}");
        }
    });
    emit(json!({"event": "listening", "address": address.to_string()}));

    let mut events = engine.subscribe();
    let recovered = engine.recover().await.map_err(|e| e.to_string())?;
    if !recovered.not_resumed.is_empty() {
        return Err(Failure::Failed(format!(
            "deployments {:?} cannot be resumed (see the log); restore them from a backup or remove them",
            recovered.not_resumed
        )));
    }
    {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run_scheduler().await });
    }
    let resumed = resumable.is_some();
    let id: DeploymentId = match resumable {
        Some(id) => {
            eprintln!("gate_server: resuming deployment {id}");
            id
        }
        None => {
            engine
                .start(&source, args.context)
                .await
                .map_err(|e| e.to_string())?
                .id
        }
    };
    // Only now, with recovery done and the deployment under way: a client that waits for this
    // line does not race recovery with its callback. The deployment's own lines wait in
    // `events` until the loop below prints them, so they all come after this one.
    emit(json!({"event": "ready", "deployment": id.to_string(), "resumed": resumed}));

    let plan = Arc::new(plan);
    let outcome = loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                eprintln!("gate_server: {n} events were missed");
                continue;
            }
            Err(RecvError::Closed) => return Err(Failure::Failed("the engine stopped".into())),
        };
        if let Some(status) = report(&plan, &id, &public_url, event) {
            break status;
        }
    };
    let view = engine.view(&id).await.map_err(|e| e.to_string())?;
    let environments: serde_json::Map<String, Value> = view
        .environments
        .iter()
        .map(|(name, status)| (name.clone(), json!(status.as_str())))
        .collect();
    emit(
        json!({"event": "deployment_finished", "status": outcome.as_str(), "environments": environments}),
    );
    tokio::time::sleep(Duration::from_secs(args.linger)).await;
    engine.shutdown().await;
    Ok(if outcome.as_str() == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints the line for one engine event; returns the outcome when the deployment finished.
fn report(
    plan: &Plan,
    id: &DeploymentId,
    public_url: &str,
    event: EngineEvent,
) -> Option<hookgate::core::DeploymentStatus> {
    let env_name = |env: hookgate::config::EnvId| plan.environment(env).name().to_owned();
    let gate_names = |gate: hookgate::config::GateId| {
        let g = plan.gate(gate);
        let webhook = match g.kind() {
            GateKind::Webhook { webhook, .. } => plan.webhook(*webhook).name.clone(),
            _ => String::new(),
        };
        (env_name(g.env()), webhook)
    };
    let called = |gate, attempt: u32, status: Option<u16>| {
        let (environment, webhook) = gate_names(gate);
        emit(
            json!({"event": "webhook_called", "environment": environment, "webhook": webhook,
                    "attempt": attempt, "status_code": status}),
        );
    };
    match event {
        EngineEvent::ApprovalRequested {
            id: got, gate, env, ..
        } if &got == id => {
            let url = format!("{public_url}/deployments/{id}/gates/{}", gate.0);
            emit(json!({
                "event": "approval_requested",
                "environment": env_name(env),
                "approve_url": format!("{url}/approve"),
                "reject_url": format!("{url}/reject"),
            }));
        }
        EngineEvent::Deployment { id: got, event } if &got == id => match event.kind {
            EventKind::EnvironmentStatus { env, status } => emit(json!({
                "event": "environment_status", "environment": env_name(env), "status": status.as_str(),
            })),
            EventKind::WebhookSent {
                gate,
                attempt,
                status,
            } => called(gate, attempt, Some(status)),
            EventKind::WebhookFailed {
                gate,
                attempt,
                status,
                ..
            } => called(gate, attempt, status),
            EventKind::CallbackReceived {
                gate,
                success,
                message,
            } => {
                let (environment, webhook) = gate_names(gate);
                emit(
                    json!({"event": "callback_received", "environment": environment, "webhook": webhook, "success": success, "message": message}),
                );
            }
            EventKind::RollbackStarted { env } => {
                emit(json!({"event": "rollback_started", "environment": env_name(env)}));
            }
            EventKind::DeploymentFinished { status } => return Some(status),
            _ => {}
        },
        _ => {}
    }
    None
}
