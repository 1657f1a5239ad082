//! Production id source: callback ids from the operating system's randomness.

use crate::core::{CallbackId, IdSource};

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
