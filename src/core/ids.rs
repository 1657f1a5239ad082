use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A deployment's id, chosen by the host. The stores keep ids of at most
/// [`MAX_KEY_BYTES`](crate::store::MAX_KEY_BYTES) bytes without a NUL character.
#[derive(Debug, Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(pub String);

/// An id compared with itself is equal without reading its text: tables keyed by the id a
/// deployment's state shares (the engine's, the memory store's) are then searched with that
/// same id, and comparing the text would read it from memory once more.
impl PartialEq for DeploymentId {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other) || self.0 == other.0
    }
}

/// By hand beside the hand-written `PartialEq`: the text, as equality compares it.
impl std::hash::Hash for DeploymentId {
    // Every input's look-up in the engine's maps hashes an id: kept inline where LLVM would
    // otherwise take it out of line once enough callers use it (175 instructions a callback).
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DeploymentId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DeploymentId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for DeploymentId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl AsRef<str> for DeploymentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Equality, ordering and hash are the text's, so a map keyed by ids is searched by `&str`.
impl std::borrow::Borrow<str> for DeploymentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The unguessable part of a gate's callback URI: 128 bits, written as 32 lowercase hex digits.
///
/// Knowing a callback id is what lets an external system resolve a gate (together with a valid
/// token), so production ids come from the operating system's randomness
/// ([`crate::ids::RandomIds`]); tests use predictable ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackId(pub [u8; 16]);

impl CallbackId {
    /// The 32 lowercase hex digits, written at once: stores write ids with every save, and
    /// a write through the formatter per byte made that a visible part of encoding a state.
    fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Display for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

/// Only the last 8 of the 32 digits: enough to tell ids apart in a log (sequential test ids
/// too, which differ at the end), while the whole id is half of what resolves a gate (with a
/// callback token), and `Debug` output (an action or a store record logged whole) reaches logs
/// that the callback URI must not.
impl fmt::Debug for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        let suffix = std::str::from_utf8(&hex[24..]).unwrap_or_default();
        write!(f, "CallbackId(…{suffix})")
    }
}

/// A string that is not 32 hex digits was given as a callback id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a callback id is 32 hexadecimal digits")]
pub struct ParseCallbackIdError;

impl FromStr for CallbackId {
    type Err = ParseCallbackIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(ParseCallbackIdError);
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or(ParseCallbackIdError)?;
            let lo = hex_digit(pair[1]).ok_or(ParseCallbackIdError)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Serialize for CallbackId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex();
        s.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for CallbackId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where callback ids come from. Passed in, so that the core has no randomness of its own.
pub trait IdSource {
    /// A fresh callback id, never returned before.
    fn callback_id(&mut self) -> CallbackId;
}

impl<T: IdSource + ?Sized> IdSource for &mut T {
    fn callback_id(&mut self) -> CallbackId {
        (**self).callback_id()
    }
}

/// Identifies one host operation (a step or a rollback) the core asked for, so that its result
/// can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_keyed_by_deployment_ids_is_searched_by_text() {
        let mut map = std::collections::HashMap::new();
        map.insert(DeploymentId::from(String::from("d-1")), 1);
        let mut sorted = std::collections::BTreeSet::new();
        sorted.insert(DeploymentId::from("d-2"));
        assert_eq!(map.get("d-1"), Some(&1));
        assert!(sorted.contains("d-2"));
        assert_eq!(DeploymentId::from("d-3").as_str(), "d-3");
        assert_eq!(AsRef::<str>::as_ref(&DeploymentId::from("d-4")), "d-4");
    }

    #[test]
    fn callback_ids_round_trip_through_text() {
        let id = CallbackId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<CallbackId>(), Ok(id));
        assert_eq!(
            s.to_uppercase().parse::<CallbackId>(),
            Ok(id),
            "upper case is accepted"
        );
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CallbackId>(&json).unwrap(), id);
    }

    #[test]
    fn debug_output_shows_only_the_end_of_a_callback_id() {
        let id: CallbackId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(format!("{id:?}"), "CallbackId(…89abcdef)");
        let action = format!("{:?}", Some(id));
        assert!(!action.contains("0123456789abcdef0"), "{action}");
    }

    #[test]
    fn malformed_callback_ids_are_refused() {
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"a".repeat(33),
            "é".repeat(16).as_str(),
        ] {
            assert_eq!(
                bad.parse::<CallbackId>(),
                Err(ParseCallbackIdError),
                "{bad}"
            );
        }
    }

    #[test]
    fn deployment_ids_are_equal_by_their_text() {
        use std::hash::BuildHasher;

        let id = DeploymentId::from("d-1");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, r#""d-1""#);
        let back: DeploymentId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id, "a copy read back from its JSON");
        assert_eq!(id.clone(), id, "a clone");
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(
            hasher.hash_one(&back),
            hasher.hash_one(&id),
            "equal ids hash alike"
        );
        assert_eq!(
            id,
            DeploymentId::from("d-1"),
            "another value, the same text"
        );
        assert_ne!(id, DeploymentId::from("d-2"));
        assert_ne!(id, DeploymentId::from("d-10"));
    }
}
