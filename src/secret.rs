//! A redacting wrapper for secret values.
//!
//! Client secrets, bearer tokens and rendered `{{secrets.*}}` values travel in [`Secret`]. Its
//! `Debug` and `Display` print `[redacted]`, so a secret cannot reach a log line, an error
//! message or a panic message by accident; the only way to the value is the explicit
//! [`Secret::expose`]. The value is zeroed when dropped (through [`secrecy`]), and so is the
//! string it was made from. Copies the caller made before, and text built from the exposed
//! value (a rendered header or body), are not.

use std::fmt;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

/// A secret string whose formatting never shows the value.
///
/// ```
/// use hookgate::Secret;
/// let token = Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?} {token}"), "[redacted] [redacted]");
/// assert_eq!(token.expose(), "s3cr3t");
/// ```
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        let mut value = value.into();
        if value.capacity() == value.len() {
            return Self(SecretString::from(value));
        }
        // `SecretString::from` would shrink the string to fit, which may move it and free the
        // old buffer with the secret still in it: copied to an exact fit, and the original
        // zeroed (to its whole capacity).
        let exact = Box::<str>::from(value.as_str());
        value.zeroize();
        Self(SecretString::from(exact))
    }

    /// The secret value itself. Call this only where the value must leave the process (an HTTP
    /// header, a request body); never format it into a message.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Compares with another value in time that does not depend on where they differ. Values of
    /// different lengths are told unequal at once, so the comparison shows the length, never
    /// the content.
    pub fn ct_eq(&self, other: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.expose().as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!format!("{:#?}", Some(&s)).contains("hunter2"));
    }

    /// A string with room to spare is copied to an exact fit (the original zeroed, which no
    /// safe test can observe): the value is the same either way.
    #[test]
    fn a_string_with_spare_room_is_copied_with_its_value_intact() {
        let mut roomy = String::with_capacity(64);
        roomy.push_str("hunter2");
        assert_eq!(Secret::new(roomy).expose(), "hunter2");
        assert_eq!(Secret::new(String::from("hunter2")).expose(), "hunter2");
    }

    #[test]
    fn constant_time_comparison_matches_equality() {
        let s = Secret::new("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
        assert!(!s.ct_eq(""));
    }
}
