//! Which [`Signer`] signs a webhook's calls (PROTOCOL.md §8).

use std::collections::HashMap;
use std::fmt;

use crate::signing::Signer;

/// A global signer and per-webhook overrides.
#[derive(Clone, Default)]
pub(super) struct Signers {
    pub(super) global: Option<Signer>,
    pub(super) by_webhook: HashMap<String, Signer>,
}

impl Signers {
    /// The webhook's own signer, else the global one; `None`: the call goes unsigned.
    pub(super) fn for_webhook(&self, name: &str) -> Option<&Signer> {
        self.by_webhook.get(name).or(self.global.as_ref())
    }
}

// Names only: which calls are signed matters when debugging, the keys never do.
impl fmt::Debug for Signers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut webhooks: Vec<&str> = self.by_webhook.keys().map(String::as_str).collect();
        webhooks.sort_unstable();
        f.debug_struct("Signers")
            .field("global", &self.global.is_some())
            .field("webhooks", &webhooks)
            .finish()
    }
}
