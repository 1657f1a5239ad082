use std::env::{self, VarError};

use async_trait::async_trait;

use super::{SecretError, SecretSource};
use crate::Secret;

/// Reads secrets from environment variables: `secrets.<name>` is the variable `<prefix><name>`.
///
/// The name is used exactly as written in the template — no case change, no character mapping —
/// so with the default prefix `HOOKGATE_SECRET_`, `{{secrets.ticket_token}}` reads
/// `HOOKGATE_SECRET_ticket_token`. The variable is read on every lookup, so a changed value is
/// picked up by the next attempt.
///
/// ```
/// use hookgate::secrets::EnvSecrets;
/// assert_eq!(EnvSecrets::new().variable_name("ticket_token"), "HOOKGATE_SECRET_ticket_token");
/// assert_eq!(EnvSecrets::with_prefix("CI_").variable_name("token"), "CI_token");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecrets {
    prefix: String,
}

impl EnvSecrets {
    /// The prefix used by [`EnvSecrets::new`].
    pub const DEFAULT_PREFIX: &'static str = "HOOKGATE_SECRET_";

    /// A source reading `HOOKGATE_SECRET_<name>`.
    pub fn new() -> Self {
        Self::with_prefix(Self::DEFAULT_PREFIX)
    }

    /// A source reading `<prefix><name>`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The environment variable that holds secret `name`.
    pub fn variable_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Default for EnvSecrets {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl SecretSource for EnvSecrets {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let variable = self.variable_name(name);
        // The platform rejects these names (or std reports them as absent); saying why beats a
        // puzzling "not found".
        if variable.is_empty() || variable.contains(['=', '\0']) {
            return Err(SecretError::InvalidName {
                name: name.to_owned(),
                source_kind: "environment variables",
                reason: "a variable name must be non-empty and contain neither `=` nor NUL",
            });
        }
        secret_of(name, &variable, env::var(&variable))
    }
}

/// Secret `name` from what reading `variable` gave.
fn secret_of(
    name: &str,
    variable: &str,
    read: Result<String, VarError>,
) -> Result<Secret, SecretError> {
    match read {
        Ok(value) => Ok(Secret::new(value)),
        Err(VarError::NotPresent) => Err(SecretError::NotFound {
            name: name.to_owned(),
            location: format!("environment variable {variable}"),
        }),
        // The OsString in `NotUnicode` is the value itself, so it is dropped unread. Such a
        // value stays so until someone fixes it: failing now names the variable, where a retry
        // of the call would spend every attempt on it.
        Err(VarError::NotUnicode(_)) => Err(SecretError::Unusable {
            name: name.to_owned(),
            location: format!("environment variable {variable}"),
            reason: "its value is not valid UTF-8",
        }),
    }
}

// Building a value that is not UTF-8 takes the platform's own strings.
#[cfg(all(test, unix))]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    #[test]
    fn a_value_that_is_not_utf8_is_unusable_and_not_shown() {
        let read = Err(VarError::NotUnicode(OsString::from_vec(
            b"s3cr3t\xff".to_vec(),
        )));
        let err = secret_of("ticket", "HOOKGATE_SECRET_ticket", read).unwrap_err();
        assert!(matches!(err, SecretError::Unusable { .. }), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("HOOKGATE_SECRET_ticket"), "{text}");
        assert!(text.contains("not valid UTF-8"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
