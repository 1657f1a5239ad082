//! Which [`Signer`] signs a webhook's calls (PROTOCOL.md §8).

use std::collections::HashMap;
use std::fmt;

use url::{Origin, Url};

use crate::signing::Signer;

/// A global signer, per-webhook overrides, and signers bound to the origin a call goes to.
#[derive(Clone, Default)]
pub(super) struct Signers {
    pub(super) global: Option<Signer>,
    pub(super) by_webhook: HashMap<String, Signer>,
    pub(super) by_origin: HashMap<Origin, Signer>,
}

impl Signers {
    /// The signer of the origin `uri` names, for a call sent `direct`ly, else the webhook's
    /// own, else the global one; `None`: the call goes unsigned. An origin's signer signs
    /// nothing sent elsewhere, nor anything sent through an agent, whose network (its DNS, its
    /// process) decides where the call goes and sees it on the way.
    pub(super) fn for_call(&self, webhook: &str, uri: &http::Uri, direct: bool) -> Option<&Signer> {
        let by_origin = || {
            let url = Url::parse(&uri.to_string()).ok()?;
            self.by_origin.get(&url.origin())
        };
        (direct && !self.by_origin.is_empty())
            .then(by_origin)
            .flatten()
            .or_else(|| self.by_webhook.get(webhook))
            .or(self.global.as_ref())
    }
}

// Names only: which calls are signed matters when debugging, the keys never do.
impl fmt::Debug for Signers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut webhooks: Vec<&str> = self.by_webhook.keys().map(String::as_str).collect();
        webhooks.sort_unstable();
        let mut origins: Vec<String> = self
            .by_origin
            .keys()
            .map(Origin::ascii_serialization)
            .collect();
        origins.sort_unstable();
        f.debug_struct("Signers")
            .field("global", &self.global.is_some())
            .field("webhooks", &webhooks)
            .field("origins", &origins)
            .finish()
    }
}
