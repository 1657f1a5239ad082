use std::sync::{Arc, Mutex, PoisonError};

use crate::core::{CallbackId, IdSource};

/// Callback ids 1, 2, 3, ... (as 128-bit big-endian numbers), so tests can predict them.
///
/// An engine takes two ids of its source for each deployment it starts before its callbacks'
/// ids: one makes the deployment's id (`d-` and the id's last 16 hex digits,
/// `d-0000000000000001`) and one seeds its retry jitter. The first webhook of an engine's
/// first deployment therefore carries id 3; a test that needs it takes it from the recorded
/// call ([`RecordedRequest::call`](super::RecordedRequest::call)) rather than counting.
///
/// Clones share the count, so ids stay unique across them, as [`IdSource`] requires: give
/// engines sharing one store clones of one source. Sources made separately (two
/// `SequentialIds::default()`) count separately and repeat each other's ids.
///
/// ```
/// use hookgate::{core::IdSource, test_util::SequentialIds};
/// let mut ids = SequentialIds::default();
/// let mut clone = ids.clone();
/// assert_eq!(ids.callback_id().to_string(), format!("{:032x}", 1));
/// assert_eq!(clone.callback_id().to_string(), format!("{:032x}", 2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    last: Arc<Mutex<u128>>,
}

impl SequentialIds {
    /// A source whose first id is `first`.
    pub fn starting_at(first: u128) -> Self {
        Self {
            last: Arc::new(Mutex::new(first.wrapping_sub(1))),
        }
    }
}

impl IdSource for SequentialIds {
    fn callback_id(&mut self) -> CallbackId {
        // Adding cannot panic while the lock is held, so a poisoned count is still whole.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = last.wrapping_add(1);
        CallbackId(last.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_never_hand_out_the_same_id() {
        let mut first = SequentialIds::starting_at(7);
        let mut second = first.clone();
        let ids = [
            first.callback_id(),
            second.callback_id(),
            first.callback_id(),
            second.clone().callback_id(),
        ];
        let numbers: Vec<u128> = ids.iter().map(|id| u128::from_be_bytes(id.0)).collect();
        assert_eq!(numbers, [7, 8, 9, 10]);
    }
}
