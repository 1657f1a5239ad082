use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::OAuthError;
use crate::Secret;

/// The client id and secret of an `Authorization: Basic` header (RFC 7617), each
/// form-urlencoded before the pair was base64-encoded, as RFC 6749 §2.3.1 has it: an id or a
/// secret holding `:` can then be told apart. An empty id or secret counts as omitted, as an
/// empty form parameter does.
///
/// A header that is not Basic credentials is `invalid_client`: the client tried to
/// authenticate, and failed. The reasons never quote the header, which holds the secret.
pub(super) fn credentials(header: &[u8]) -> Result<(Option<String>, Option<Secret>), OAuthError> {
    let header = std::str::from_utf8(header)
        .map_err(|_| malformed())?
        .trim_matches([' ', '\t']);
    let (scheme, encoded) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return Err(malformed());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        tracing::warn!("refused a token request: an Authorization scheme other than Basic");
        return Err(OAuthError::InvalidClient(
            "the Authorization header uses a scheme other than Basic; authenticate with Basic, \
             or with client_id and client_secret in the body"
                .to_owned(),
        ));
    }
    // RFC 9110 §11.4 allows several spaces after the scheme.
    let decoded = STANDARD
        .decode(encoded.trim_start_matches(' '))
        .map_err(|_| malformed())?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(malformed)?;
    let id = form_decoded(&decoded[..colon])?;
    let secret = form_decoded(&decoded[colon + 1..])?;
    Ok((
        Some(id).filter(|id| !id.is_empty()),
        Some(secret).filter(|s| !s.is_empty()).map(Secret::new),
    ))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte.
fn form_decoded(encoded: &[u8]) -> Result<String, OAuthError> {
    let spaced: Vec<u8> = encoded
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| malformed())
}

fn malformed() -> OAuthError {
    tracing::warn!("refused a token request: malformed Basic credentials");
    OAuthError::InvalidClient(
        "the Authorization header is not Basic credentials: base64 of the form-urlencoded \
         client_id, a colon, and the form-urlencoded client_secret, in UTF-8"
            .to_owned(),
    )
}
