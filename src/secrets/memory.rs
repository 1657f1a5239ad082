use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use super::{SecretError, SecretSource};
use crate::Secret;

/// Secrets held in memory, for tests and for hosts that load secrets themselves.
///
/// `Debug` lists the names only.
///
/// ```
/// use hookgate::secrets::MemorySecrets;
/// let source: MemorySecrets = [("github_token", "ghp_x")].into_iter().collect();
/// assert_eq!(format!("{source:?}"), r#"MemorySecrets { names: ["github_token"] }"#);
/// ```
#[derive(Clone, Default)]
pub struct MemorySecrets {
    values: BTreeMap<String, Secret>,
}

impl MemorySecrets {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) secret `name`; for building a source in one expression.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds (or replaces) secret `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Secret>) {
        self.values.insert(name.into(), value.into());
    }
}

impl<N: Into<String>, V: Into<Secret>> FromIterator<(N, V)> for MemorySecrets {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut source = Self::new();
        for (name, value) in iter {
            source.insert(name, value);
        }
        source
    }
}

impl fmt::Debug for MemorySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySecrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[async_trait]
impl SecretSource for MemorySecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound {
                name: name.to_owned(),
                location: "the in-memory secret source".to_owned(),
            })
    }
}
