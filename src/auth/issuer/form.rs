use std::collections::BTreeMap;

use super::OAuthError;

/// The parameters of a token request, RFC 6749 §4.4.2 plus Armory's `audience`.
pub(super) struct TokenForm {
    pub(super) grant_type: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<crate::Secret>,
    pub(super) audience: Option<String>,
    pub(super) scope: Option<String>,
}

const KNOWN: [&str; 5] = [
    "grant_type",
    "client_id",
    "client_secret",
    "audience",
    "scope",
];

impl TokenForm {
    /// Parses an `application/x-www-form-urlencoded` body. Unknown parameters are ignored;
    /// a known one given twice is refused (RFC 6749 §3.2).
    pub(super) fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, OAuthError> {
        let form_type = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|essence| {
                essence
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(OAuthError::InvalidRequest(
                "send the token request as Content-Type: application/x-www-form-urlencoded"
                    .to_owned(),
            ));
        }
        let mut params = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            let Some(known) = KNOWN.iter().find(|k| **k == name) else {
                continue;
            };
            if params.insert(*known, value.into_owned()).is_some() {
                return Err(OAuthError::InvalidRequest(format!(
                    "`{known}` is given more than once; send each parameter once"
                )));
            }
        }
        Ok(Self {
            grant_type: params.remove("grant_type"),
            client_id: params.remove("client_id"),
            client_secret: params.remove("client_secret").map(crate::Secret::new),
            audience: params.remove("audience"),
            scope: params.remove("scope"),
        })
    }
}
