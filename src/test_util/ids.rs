use crate::core::{CallbackId, IdSource};

/// Callback ids 1, 2, 3, ... (as 128-bit big-endian numbers), so tests can predict them.
///
/// ```
/// use hookgate::{core::IdSource, test_util::SequentialIds};
/// let mut ids = SequentialIds::default();
/// assert_eq!(ids.callback_id().to_string(), format!("{:032x}", 1));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    last: u128,
}

impl SequentialIds {
    /// A source whose first id is `first`.
    pub fn starting_at(first: u128) -> Self {
        Self {
            last: first.wrapping_sub(1),
        }
    }
}

impl IdSource for SequentialIds {
    fn callback_id(&mut self) -> CallbackId {
        self.last = self.last.wrapping_add(1);
        CallbackId(self.last.to_be_bytes())
    }
}
