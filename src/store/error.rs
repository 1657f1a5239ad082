use std::error::Error as StdError;
use std::path::PathBuf;

use crate::core::{CallbackId, DeploymentId};

/// Why a store operation failed.
///
/// Every backend converts its own errors into this one enum, so the runtime handles a conflict
/// or a corrupt row the same way whatever the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` was given an id that is already stored.
    #[error(
        "deployment {id} already exists: pick a fresh id, or load the stored deployment and save it"
    )]
    AlreadyExists {
        /// The id.
        id: DeploymentId,
    },
    /// `create` was given a callback id that another deployment already owns.
    // Shown as `Debug` shows it, cut short: a callback id resolves its gate for any holder of
    // a callback token, and this message may reach a log.
    #[error(
        "callback id {callback:?} already belongs to another deployment: callback ids must be \
         unique, so take them from `hookgate::ids::RandomIds`"
    )]
    CallbackTaken {
        /// The callback id.
        callback: CallbackId,
    },
    /// `create` or `save` was given the state of another deployment than the one named: the
    /// row would be refused as [`StoreError::Corrupt`] when read back. Nothing was written.
    #[error(
        "the state given for deployment {id} is the state of deployment {state_of}: give each \
         deployment its own state (build a new one with `NewDeployment::new`)"
    )]
    WrongState {
        /// The deployment named.
        id: DeploymentId,
        /// The deployment the state is of.
        state_of: DeploymentId,
    },
    /// The store was closed (`close`): it takes no more operations. Nothing was written.
    #[error("the {store} store is closed, and nothing was done: open a new store to go on")]
    Closed {
        /// Which store: `SQLite` or `PostgreSQL`.
        store: &'static str,
    },
    /// An exclusive `create` ([`NewDeployment::exclusive`](super::NewDeployment::exclusive))
    /// found another deployment of its application running; nothing was written.
    #[error(
        "deployment {running} of application `{application}` is running: wait for it to finish, \
         or queue the new one (ifDeploymentInProgress: enqueueOne)"
    )]
    ApplicationBusy {
        /// The application.
        application: String,
        /// A deployment of it that is running.
        running: DeploymentId,
    },
    /// `save` was given an id that is not stored.
    #[error("deployment {id} is not stored: create it before saving it")]
    NotFound {
        /// The id.
        id: DeploymentId,
    },
    /// `save` expected a version that is no longer the stored one: someone else saved first.
    #[error(
        "deployment {id} was saved by someone else (expected version {expected}, stored version \
         {actual}): load it again, re-apply the input and save with the new version"
    )]
    Conflict {
        /// The deployment.
        id: DeploymentId,
        /// The version the caller expected.
        expected: u64,
        /// The version stored now.
        actual: u64,
    },
    /// A stored value cannot be read back.
    #[error(
        "the stored {what} of deployment {id} cannot be read ({source}): it was edited by hand or \
         written by an incompatible release; restore it from a backup"
    )]
    Corrupt {
        /// The deployment whose row it is; for an unreadable `id`, as nearly as it can be
        /// read (bytes that are not UTF-8 replaced).
        id: DeploymentId,
        /// Which value: `state`, `status`, `event`, `version`, `id`, ...
        what: &'static str,
        /// What is wrong with it.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A deployment's state or event could not be written as JSON.
    #[error(
        "the {what} of deployment {id} cannot be written as JSON ({source}): please report this bug"
    )]
    Encode {
        /// The deployment.
        id: DeploymentId,
        /// `state` or `event`.
        what: &'static str,
        /// The serializer's error.
        source: serde_json::Error,
    },
    /// The database could not be opened.
    #[error(
        "cannot open the database at {path} ({source}): check that its directory exists and is \
         writable by this process"
    )]
    Open {
        /// Where.
        path: PathBuf,
        /// The driver's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The path given to the SQLite store names no file: `:memory:`, an in-memory URI
    /// (`file::memory:`, `mode=memory`, `vfs=memdb`) or an empty path, which SQLite opens as a database of
    /// each connection's own, so that the store's connections would not share one.
    #[error(
        "{path:?} names no database file but one each connection opens apart ({why}): give \
         the SQLite store a file path (a temporary directory's, for tests), or use \
         `MemoryStore` for a store in memory"
    )]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What SQLite would open instead of a file.
        why: &'static str,
    },
    /// The database server could not be reached or refused the connection.
    #[error(
        "cannot connect to the database at {server} ({source}): check that the server runs and \
         is reachable from here, and that the user, password and database are right"
    )]
    Connect {
        /// Where, without password or query.
        server: String,
        /// The driver's error, as text with any password removed.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The database's schema is newer than this release understands.
    #[error(
        "the database has schema version {found} but this release knows versions up to \
         {supported}: run the release that last opened it, or restore a backup"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this release can apply.
        supported: usize,
    },
    /// A schema migration failed; it ran in a transaction, so the database is unchanged.
    #[error(
        "schema migration {version} failed ({source}); the database is unchanged: fix the cause \
         (disk full, a read-only file, a role without the CREATE privilege on the PostgreSQL \
         schema, ...) and open it again"
    )]
    Migration {
        /// The migration's version.
        version: i64,
        /// The driver's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The database's encoding is not UTF-8. One that cannot hold every character a deployment
    /// stores would fail its saves on the first progress note or context outside it; SQL_ASCII,
    /// which checks nothing, would keep a row another tool wrote with bytes that are not UTF-8,
    /// and every listing that reads it (recovery, lease upkeep) would fail.
    #[error(
        "the database's encoding is {found}, which cannot hold every character deployments \
         store (progress notes, contexts, deployment files): use a database created with \
         ENCODING 'UTF8'"
    )]
    Encoding {
        /// The server's encoding (`server_encoding`).
        found: String,
    },
    /// The store does not offer what several replicas need (leases, change notices): it is
    /// built for one process.
    #[error(
        "this store does not support {what}, which several replicas sharing it need: use one \
         built for that (`MemoryStore` within one process, `PostgresStore` across processes), \
         or run a single replica"
    )]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// A text to store holds a NUL character, which PostgreSQL's text cannot: every store
    /// refuses it, so that a write one store takes no other store fails. Nothing was written.
    #[error(
        "the {what} holds a NUL character, which the PostgreSQL store cannot keep, so no store \
         takes it; nothing was written: remove the character"
    )]
    Unstorable {
        /// Which text: `deployment id`, `application`, `deployment file`, `lease owner` or
        /// `replica run`.
        what: &'static str,
    },
    /// A deployment id, lease owner or replica run is longer than
    /// [`MAX_KEY_BYTES`](super::MAX_KEY_BYTES): every store refuses it, as PostgreSQL's indexes
    /// cannot take it. Nothing was written.
    #[error(
        "the {what} is {len} bytes long, more than the {max} bytes every store keeps; nothing \
         was written: use a shorter one"
    )]
    TooLong {
        /// Which text: `deployment id`, `lease owner` or `replica run`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most a store keeps.
        max: usize,
    },
    /// The database failed (locked for longer than the busy timeout, disk full, I/O error, ...).
    /// Nothing changed, unless the connection to a networked database dropped after it
    /// committed: a write may then have been stored, which loading the row tells.
    #[error(
        "the database failed ({source}): check that it is reachable and writable; the operation \
         can be retried"
    )]
    Backend {
        /// The driver's error.
        source: Box<dyn StdError + Send + Sync>,
    },
}
