//! The engine: drives many deployments end to end (feature `runtime`).
//!
//! An [`Engine`] owns deployments and everything around their cores: it sends their webhooks
//! through an [`outbound::Dispatcher`](crate::outbound::Dispatcher), asks the [`Host`] for
//! host steps, stores every change in a [`Store`](crate::store::Store) before acknowledging it,
//! keeps one table of deadlines for all deployments, and applies callbacks that arrive through
//! the HTTP layer (it implements [`GateService`](crate::server::GateService)).
//!
//! Wired up end to end, with the callback endpoint and a durable store (features `runtime`,
//! `reqwest`, `axum`, `sqlite`; `examples/quickstart.rs` runs the whole of it). An application
//! does so with `hookgate = { version = "0.1", features = ["runtime", "axum", "sqlite"] }` and
//! tokio with its multi-thread runtime (`tokio = { version = "1", features = ["full"] }`):
//!
//! ```no_run
//! # #[cfg(all(feature = "axum", feature = "reqwest", feature = "sqlite"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hookgate::auth::{Principal, StaticTokens};
//! use hookgate::outbound::Dispatcher;
//! use hookgate::runtime::{Engine, SimulatedHost};
//! use hookgate::secrets::EnvSecrets;
//! use hookgate::server::{CallbackHandler, ServerState, router};
//! use hookgate::store::SqliteStore;
//! use hookgate::transport::{ReqwestTransport, TransportRegistry};
//!
//! // Callback URIs are built on this base: where `router` below is reachable.
//! let transports = TransportRegistry::new(ReqwestTransport::builder().build()?);
//! let dispatcher = Dispatcher::builder(transports, Arc::new(EnvSecrets::new()), "https://gates.example.com")
//!     .build()?;
//! // Without a store, the engine keeps deployments in memory only (`MemoryStore`), and a
//! // restart loses them.
//! let store = SqliteStore::open("hookgate.db").await?;
//! let engine = Engine::builder(dispatcher, SimulatedHost).store(store).build();
//! // Resume what the store holds before anything else acts on it.
//! engine.recover().await?;
//! // Deadlines (callback timeouts, retries) fire only while the scheduler runs.
//! tokio::spawn({ let engine = engine.clone(); async move { engine.run_scheduler().await } });
//!
//! // External processes post their answers here, each with a Bearer token.
//! let tokens = StaticTokens::new().with_token(std::env::var("CALLBACK_TOKEN")?, Principal::new("ci"));
//! let handler = CallbackHandler::new(Arc::new(engine.clone()), Arc::new(tokens));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! // hookgate's own axum (`hookgate::axum`): the version `router` is built with.
//! tokio::spawn(async move { hookgate::axum::serve(listener, router(ServerState::new(handler))).await });
//!
//! let started = engine.start(&std::fs::read_to_string("deploy.yml")?, Default::default()).await?;
//! println!("started {}", started.id);
//! # Ok(()) }
//! ```
//!
//! Exactly once: each deployment's inputs are applied one at a time under its lock, so
//! concurrent duplicate or conflicting callbacks for one gate apply once, and the state is
//! stored before the answer goes out. Waiting deployments cost memory, not tasks: a task exists
//! only while an outbound call or host step is under way.

mod apply;
mod builder;
mod chores;
mod engine;
mod error;
mod event;
mod failed_loads;
mod gates;
mod host;
mod launches;
mod queue;
mod recoveries;
mod replica;
mod scheduler;
mod spare;
mod timetable;
mod unsure_creates;
mod view;

pub use builder::EngineBuilder;
pub use engine::{Engine, Recovered, Started};
pub use error::RuntimeError;
pub use event::EngineEvent;
pub use host::{Host, SimulatedHost, StepContext, StepStrategy};
pub use replica::{ReplicaOptions, Upkeep};
pub use view::{DeploymentView, GateView};
