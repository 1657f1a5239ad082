//! Production id source: callback ids from the operating system's randomness.

use crate::core::{CallbackId, IdSource};

/// The hasher of the tables keyed by deployment and callback ids that every input looks up (the
/// engine's and the memory store's). The ids are made here, not chosen by senders, so
/// collisions cannot be forced through them; foldhash hashes one in a fraction of the time
/// SipHash takes, and is seeded at random all the same.
pub(crate) type IdHasher = foldhash::fast::RandomState;

/// Callback ids of 128 bits from the operating system's cryptographic randomness.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn callback_id(&mut self) -> CallbackId {
        let mut bytes = [0u8; 16];
        // Without OS randomness no unguessable id can be made; continuing with a weak one would
        // let anyone resolve gates, so this is the one place hookgate refuses to go on.
        getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
        CallbackId(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_differ() {
        let mut ids = RandomIds;
        assert_ne!(ids.callback_id(), ids.callback_id());
    }
}
