//! The PostgreSQL store (feature `postgres`): one database shared by several replicas.
//!
//! # What it guarantees
//!
//! - **Durability.** `create` and `save` run in one transaction each and return only after its
//!   `COMMIT` returned, so an acknowledged write is as durable as the server makes a commit:
//!   with PostgreSQL's defaults (`fsync=on`, `synchronous_commit=on`) it survives a crash of
//!   the server or of its machine. The state, the status, the new version and the events are
//!   written together or not at all.
//! - **Isolation.** Transactions run at `READ COMMITTED` (PostgreSQL's default; the store
//!   asks for it explicitly). Correctness rests on row locks, not on snapshots: a `save` is a
//!   guarded `UPDATE ... SET version = version + 1 WHERE id = $1 AND version = $2`, so of two
//!   saves of one version the second waits for the first, finds the version changed and is a
//!   [`StoreError::Conflict`] carrying the stored version. The events are numbered after the
//!   deployment's last one while its row is locked, so no two writers take the same numbers.
//! - **Leases.** `claim` is one conditional `UPDATE`; `claim_orphans` locks its candidates
//!   with `FOR UPDATE SKIP LOCKED`, so concurrent callers on any replica never take the same
//!   deployment. Every lease time comes from the caller's [`Lease`](super::Lease) (`now`,
//!   `until`), never from the database's `now()`: replicas compare times from their own
//!   clocks, which must agree to well within the lease time (NTP does that), and tests can
//!   drive leases on a manual clock. `created_at` and `updated_at` come from
//!   [`PostgresOptions::clock`].
//! - **Change notices.** Every `create` and `save` calls `pg_notify` inside its transaction,
//!   so the notice is delivered at commit, to every store on the same database and schema
//!   (the channel is named after the schema, so stores on other schemas do not hear it).
//!   [`Store::watch`](super::Store::watch) listens on a dedicated connection in a Tokio task,
//!   which replaces the connection when it drops, fails or does not answer a heartbeat
//!   ([`PostgresOptions::notice_heartbeat`]); notices sent while it is down are lost,
//!   which [`ChangeWatcher`](super::ChangeWatcher) allows for. The task ends when the store
//!   is closed or its last clone dropped. PostgreSQL queues the notices of committing
//!   transactions under one server-wide lock, so writes that notify commit one at a time,
//!   which can bound the rate of many concurrent saves.
//! - **Migrations.** The embedded schema migrations are applied when a store connects, in
//!   one transaction holding a transaction-level advisory lock, so replicas starting together
//!   apply each migration once; a database migrated by a newer release is refused with
//!   [`StoreError::SchemaTooNew`]. A schema with every migration applied needs no privilege
//!   beyond the use of the schema (`USAGE`) and of its tables (`SELECT`, `INSERT`, `UPDATE`),
//!   so an administrator's role can migrate it and the replicas run as a role that may create
//!   nothing. Creating or migrating it takes a role that may (the CREATE privilege on the
//!   database for the schema, on the schema for its tables); another connect fails with
//!   [`StoreError::Migration`].
//! - **Secrets.** A connection URL's password never appears in an error, a `Debug` output or
//!   a log line: [`StoreError::Connect`] shows the URL without password and query, and the
//!   driver's message with any password text replaced.
//!
//! Tables live in the schema [`PostgresOptions::schema`] (default `public`), created if
//! missing, and every statement names it, so one database can hold several independent
//! hookgate installations (or test runs) side by side.

mod listen;
mod queries;
mod rows;
mod schema;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use super::StoreError;
use crate::clock::{Clock, SystemClock};
use queries::Statements;

/// The longest schema name accepted: PostgreSQL's identifier limit (63 bytes) less the
/// prefix of the change-notice channel named after it.
const MAX_SCHEMA_LEN: usize = 63 - CHANNEL_PREFIX.len();
const CHANNEL_PREFIX: &str = "hookgate.";

/// How [`PostgresStore::connect_with`] and [`PostgresStore::from_pool`] set up a store.
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The schema holding hookgate's tables, created if missing. Stores with different
    /// schemas share nothing, change notices included. At most 54 bytes. Default: `public`.
    pub schema: String,
    /// The most connections the pool opens; a store that watches for changes opens one more
    /// of its own (and, after replacing one that stopped answering, keeps the old one until
    /// the network gives up on it). Ignored by [`PostgresStore::from_pool`], whose pool is
    /// already sized. Default: 10. At least 1 and at most
    /// [`PostgresOptions::MAX_CONNECTIONS`]: the driver sets room for every connection aside
    /// when the pool is built, and panics on a pool of none.
    pub max_connections: u32,
    /// How long connecting, or waiting for a free connection, may take before the operation
    /// fails. Default: 10 seconds. At most [`PostgresOptions::MAX_CONNECT_TIMEOUT`]: a longer
    /// one (`Duration::MAX` for "wait for ever") waits that long.
    pub connect_timeout: Duration,
    /// How long the change-notice connection may go without a notice before the store asks the
    /// server something on it. That traffic keeps network devices that drop quiet connections
    /// (a NAT) from dropping it, and a connection that does not answer within another
    /// heartbeat is replaced; until then, a lease holder hears of other replicas' inputs only
    /// at its lease upkeep. At least 100 ms. Default: 30 seconds.
    pub notice_heartbeat: Duration,
    /// Stamps `created_at` and `updated_at`. Default: the system clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "public".to_owned(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(10),
            notice_heartbeat: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("notice_heartbeat", &self.notice_heartbeat)
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// The longest connect timeout the store keeps to, a year: the driver adds the timeout to
    /// the time it starts waiting, which a timeout near `Duration::MAX` overflows (a panic).
    pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

    /// The largest pool the store opens, far above what a PostgreSQL server serves (its
    /// `max_connections` defaults to 100).
    pub const MAX_CONNECTIONS: u32 = 10_000;

    /// Sets the schema.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Sets the pool size.
    #[must_use]
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// These options with the connect timeout at most [`Self::MAX_CONNECT_TIMEOUT`], and the
    /// pool size between 1 and [`Self::MAX_CONNECTIONS`].
    fn within_limits(self) -> Self {
        Self {
            connect_timeout: self.connect_timeout.min(Self::MAX_CONNECT_TIMEOUT),
            max_connections: self.max_connections.clamp(1, Self::MAX_CONNECTIONS),
            ..self
        }
    }

    /// Sets the change-notice heartbeat.
    #[must_use]
    pub fn with_notice_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.notice_heartbeat = heartbeat;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// A [`Store`](super::Store) in a PostgreSQL database, for one process or for several
/// replicas sharing the database: it implements leases and change notices.
///
/// Cloning it is cheap and shares the pool. Use it on a Tokio runtime; [`watch`] spawns its
/// listener task on the runtime it is called on.
///
/// [`watch`]: super::Store::watch
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    sql: Statements,
    clock: Arc<dyn Clock>,
    notices: listen::Notices,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("connections", &self.inner.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// libpq's query parameters such as `sslmode`) with the default options, and applies any
    /// schema migration it lacks.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url` with a pool of `options.max_connections`, and
    /// applies any schema migration it lacks. A server that cannot be reached within
    /// `options.connect_timeout`, or that refuses the credentials, is [`StoreError::Connect`];
    /// a database in another encoding than UTF-8, [`StoreError::Encoding`].
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let target = Target::from_url(url);
        let connect = PgConnectOptions::from_str(url).map_err(|e| target.open_error(&e))?;
        let connect = match connect.get_application_name() {
            Some(_) => connect,
            None => connect.application_name("hookgate"),
        };
        let schema = valid_schema(&options.schema).map_err(|e| target.open_error(&e))?;
        let options = options.within_limits();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            // The server's default may have been changed; the guarantees rest on this level.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET default_transaction_isolation = 'read committed'")
                        .await
                        .map(drop)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| target.open_error(&e))?;
        Self::start(pool, schema, options).await
    }

    /// A store on a pool the host built, and applies any schema migration the database
    /// lacks. The pool's sessions must use `READ COMMITTED` (PostgreSQL's default): `create`
    /// asks for it itself, but `save` is one statement run at the session's level, and so are
    /// the lease statements, which rely on it. At a stricter level two racing saves of one
    /// deployment end in a serialization failure, reported as a database error rather than a
    /// [`StoreError::Conflict`]. A database in another encoding than UTF-8 is
    /// [`StoreError::Encoding`].
    pub async fn from_pool(pool: PgPool, options: PostgresOptions) -> Result<Self, StoreError> {
        let options = options.within_limits();
        let schema = valid_schema(&options.schema)
            .map_err(|e| Target::from_options(&pool.connect_options()).open_error(&e))?;
        Self::start(pool, schema, options).await
    }

    async fn start(
        pool: PgPool,
        schema: String,
        options: PostgresOptions,
    ) -> Result<Self, StoreError> {
        // States and events are JSON text holding whatever a sender wrote: a database in
        // another encoding would refuse them only on the first such save, as a failure the
        // runtime retries.
        let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
            .fetch_one(&pool)
            .await
            .map_err(backend)?;
        // SQL_ASCII keeps whatever bytes it is given, unchecked: one row holding bytes that
        // are not UTF-8 (written by another tool) would fail every statement that reads it,
        // the listings of recovery and lease upkeep among them, for every deployment.
        if encoding != "UTF8" {
            return Err(StoreError::Encoding { found: encoding });
        }
        let quoted = quote_identifier(&schema);
        schema::migrate(&pool, &schema, &quoted, options.clock.now()).await?;
        let channel = format!("{CHANNEL_PREFIX}{schema}");
        Ok(Self {
            inner: Arc::new(Inner {
                notices: listen::Notices::new(
                    channel,
                    options.connect_timeout,
                    options.notice_heartbeat,
                ),
                sql: Statements::new(&quoted),
                pool,
                schema,
                clock: options.clock,
            }),
        })
    }

    /// Stops the change-notice task and closes every connection, waiting for the queries
    /// under way; later operations fail with [`StoreError::Closed`]. Writes already
    /// acknowledged are committed without it. It closes the pool for every clone. A change-notice
    /// connection that has stopped answering is left to the network after 5 s.
    pub async fn close(&self) {
        self.inner.notices.stop().await;
        self.inner.pool.close().await;
    }
}

fn backend(e: sqlx::Error) -> StoreError {
    if matches!(e, sqlx::Error::PoolClosed) {
        return StoreError::Closed {
            store: "PostgreSQL",
        };
    }
    StoreError::Backend {
        source: Box::new(e),
    }
}

fn valid_schema(schema: &str) -> Result<String, String> {
    if schema.is_empty() || schema.len() > MAX_SCHEMA_LEN || schema.contains('\0') {
        return Err(format!(
            "the schema name {schema:?} is not 1 to {MAX_SCHEMA_LEN} bytes without NUL"
        ));
    }
    Ok(schema.to_owned())
}

/// `name` as a quoted SQL identifier, so any schema name is taken literally.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where a store connects, as [`StoreError::Connect`] shows it, and the secrets its messages
/// must not show.
struct Target {
    shown: String,
    secrets: Vec<String>,
}

impl Target {
    fn from_url(url: &str) -> Self {
        let mut secrets = Vec::new();
        let shown = match url::Url::parse(url) {
            Ok(mut parsed) => {
                if let Some(password) = parsed.password() {
                    secrets.push(
                        percent_encoding::percent_decode_str(password)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                    secrets.push(password.to_owned());
                }
                secrets.extend(
                    parsed
                        .query_pairs()
                        .filter(|(key, _)| key == "password")
                        .map(|(_, value)| value.into_owned()),
                );
                // Neither fails on a URL with a host, which is all a PostgreSQL URL can be.
                let _ = parsed.set_password(None);
                parsed.set_query(None);
                parsed.set_fragment(None);
                parsed.to_string()
            }
            Err(_) => "(a PostgreSQL URL that cannot be parsed)".to_owned(),
        };
        Self::with_secrets(shown, secrets)
    }

    fn from_options(options: &PgConnectOptions) -> Self {
        let shown = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        Self::with_secrets(shown, Vec::new())
    }

    fn with_secrets(shown: String, mut secrets: Vec<String>) -> Self {
        // libpq's variable, which the driver reads when the URL has no password.
        secrets.extend(std::env::var("PGPASSWORD").ok());
        secrets.retain(|s| !s.is_empty());
        Self { shown, secrets }
    }

    /// The error for failing to connect: the driver's message, as text so that no source
    /// chain can carry a secret past the redaction.
    fn open_error(&self, error: &dyn fmt::Display) -> StoreError {
        let mut message = error.to_string();
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "[redacted]");
        }
        StoreError::Connect {
            server: self.shown.clone(),
            source: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_errors_show_the_url_without_its_secrets() {
        let target = Target::from_url(
            "postgres://app:p%40ss@db.example:6543/gates?password=q&sslmode=require",
        );
        let error = target.open_error(&"auth failed for p@ss, p%40ss and q");
        let text = format!("{error} {error:?}");
        assert!(
            text.contains("postgres://app@db.example:6543/gates"),
            "{text}"
        );
        assert!(!text.contains("p@ss") && !text.contains("p%40ss"), "{text}");
        assert!(!text.contains("=q") && !text.contains(" q"), "{text}");
    }

    /// The URL of a server on loopback that hangs up on every connection.
    async fn hanging_up() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((hung_up, _)) = listener.accept().await {
                drop(hung_up);
            }
        });
        format!("postgres://app@127.0.0.1:{port}/gates")
    }

    /// A server that hangs up at once fails the connect with a clear error, whatever the
    /// timeout: one of `Duration::MAX` ("wait for ever") once overflowed the driver's deadline
    /// arithmetic, a panic.
    #[tokio::test]
    async fn a_connect_timeout_of_for_ever_is_kept_to_the_longest() {
        let options = PostgresOptions::default().with_connect_timeout(Duration::MAX);
        let error = PostgresStore::connect_with(&hanging_up().await, options)
            .await
            .expect_err("a server that hangs up is no store");
        assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
        assert_eq!(
            PostgresOptions::default()
                .with_connect_timeout(Duration::MAX)
                .within_limits()
                .connect_timeout,
            PostgresOptions::MAX_CONNECT_TIMEOUT
        );
    }

    /// A pool of no connections once panicked in the driver, which sets room for each
    /// connection aside when it builds the pool; sizes are kept between one and the most.
    #[tokio::test]
    async fn any_pool_size_is_kept_within_its_bounds() {
        for (asked, kept) in [(0, 1), (1, 1), (u32::MAX, PostgresOptions::MAX_CONNECTIONS)] {
            let options = PostgresOptions::default()
                .with_max_connections(asked)
                .with_connect_timeout(Duration::from_secs(5));
            assert_eq!(options.clone().within_limits().max_connections, kept);
            let error = PostgresStore::connect_with(&hanging_up().await, options)
                .await
                .expect_err("a server that hangs up is no store");
            assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
        }
    }

    #[test]
    fn schema_names_are_quoted_and_bounded() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert!(valid_schema("public").is_ok());
        assert!(valid_schema("").is_err());
        assert!(valid_schema(&"s".repeat(MAX_SCHEMA_LEN)).is_ok());
        assert!(valid_schema(&"s".repeat(MAX_SCHEMA_LEN + 1)).is_err());
    }
}
