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
    /// Parses an `application/x-www-form-urlencoded` body. Unknown parameters are ignored. As
    /// RFC 6749 §3.2 has it, a known parameter given twice is refused, and one without a value
    /// counts as omitted: `scope=` asks for all the client's scopes, as no `scope` does. Given
    /// twice, a parameter is refused even if one of the two is empty: which one the client
    /// meant is unknown either way.
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
        let mut take = |name| {
            params
                .remove(name)
                .filter(|value: &String| !value.is_empty())
        };
        Ok(Self {
            grant_type: take("grant_type"),
            client_id: take("client_id"),
            client_secret: take("client_secret").map(crate::Secret::new),
            audience: take("audience"),
            scope: take("scope"),
        })
    }
}
