//! Where `{{secrets.*}}` values come from: the [`SecretSource`] trait and its implementations.
//!
//! A webhook's templates name the secrets they need (`RequestTemplate::secret_names`); the
//! runtime fetches exactly those from the host's source just before rendering each attempt and
//! drops them afterwards (PROTOCOL.md §3), so a source is asked often and should be cheap or
//! cache on its own side.
//!
//! Two sources are built in: [`EnvSecrets`] (environment variables) and [`MemorySecrets`] (for
//! tests and for hosts that load secrets themselves). A host with a vault implements the trait.

mod env;
mod memory;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;

use crate::Secret;

pub use env::EnvSecrets;
pub use memory::MemorySecrets;

/// A source of secret values, looked up by the name written after `secrets.` in a template.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use hookgate::secrets::{MemorySecrets, SecretSource};
/// let source = MemorySecrets::new().with("ticket_token", "t0k3n");
/// assert_eq!(source.get("ticket_token").await.unwrap().expose(), "t0k3n");
/// assert!(source.get("other").await.is_err());
/// # }
/// ```
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret called `name`, or [`SecretError::NotFound`] when the source has none.
    async fn get(&self, name: &str) -> Result<Secret, SecretError>;
}

/// A shareable, type-erased [`SecretSource`].
pub type DynSecretSource = Arc<dyn SecretSource>;

#[async_trait]
impl<T: SecretSource + ?Sized> SecretSource for Arc<T> {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        (**self).get(name).await
    }
}

#[async_trait]
impl<T: SecretSource + ?Sized> SecretSource for Box<T> {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        (**self).get(name).await
    }
}

/// Fetches every secret in `names` from `source`, stopping at the first failure.
///
/// Pass `RequestTemplate::secret_names()` so exactly the secrets a request needs are read.
pub async fn fetch_all<'a, S>(
    source: &S,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, Secret>, SecretError>
where
    S: SecretSource + ?Sized,
{
    let mut fetched = BTreeMap::new();
    for name in names {
        if !fetched.contains_key(name) {
            let value = source.get(name).await?;
            fetched.insert(name.to_owned(), value);
        }
    }
    Ok(fetched)
}

/// Why a secret could not be read. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The source has no secret by that name.
    #[error(
        "secret `{name}` not found in {location}: define it there, or fix the name in the template"
    )]
    NotFound {
        /// The name after `secrets.` in the template.
        name: String,
        /// Where the source looked, e.g. `environment variable HOOKGATE_SECRET_ticket_token`.
        location: String,
    },
    /// The name cannot exist in this source (for example `=` in an environment variable name).
    #[error("secret name `{name}` cannot be used with {source_kind}: {reason}")]
    InvalidName {
        /// The name after `secrets.` in the template.
        name: String,
        /// The kind of source, e.g. `environment variables`.
        source_kind: &'static str,
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// The secret is there but its value cannot be used (an environment variable that is not
    /// UTF-8): asking again gets the same value, so the call fails rather than retrying.
    #[error("secret `{name}` in {location} cannot be used: {reason}; fix its value")]
    Unusable {
        /// The name after `secrets.` in the template.
        name: String,
        /// Where the source looked, e.g. `environment variable HOOKGATE_SECRET_ticket_token`.
        location: String,
        /// What is wrong with the value (never the value itself).
        reason: &'static str,
    },
    /// The source failed (unreachable vault...).
    ///
    /// The wrapped error comes from the source's implementation, which must keep values out of
    /// it.
    #[error("secret `{name}` could not be read: {source}; check the secret source and retry")]
    Backend {
        /// The name after `secrets.` in the template.
        name: String,
        /// What failed.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl SecretError {
    /// A [`SecretError::Backend`] for secret `name`, for implementations outside this crate.
    pub fn backend(name: &str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Backend {
            name: name.to_owned(),
            source: source.into(),
        }
    }
}
