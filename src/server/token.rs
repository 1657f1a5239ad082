use std::error::Error;

use bytes::Bytes;
use http::header::HeaderName;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;

use super::body::{ReadError, read_limited};
use super::headers::{self, Repeated};
use crate::auth::{OAuthError, TokenIssuer};

/// A token request is a few hundred bytes of form.
const TOKEN_BODY_LIMIT: usize = 16 * 1024;

/// Serves `POST <token URL>` for `issuer` (PROTOCOL.md §6): `200` with the token, or an
/// RFC 6749 §5.2 error (`{"error", "error_description"}`) with its status. Answers are marked
/// `Cache-Control: no-store` as RFC 6749 §5.1 requires.
///
/// The client authenticates with HTTP Basic or with credentials in the body
/// ([`TokenIssuer::issue_with_authorization`]); a `401` carries a `WWW-Authenticate: Basic`
/// challenge. Before the form is read: a method other than `POST` is `405` with `Allow: POST`,
/// a content-coded body `415` with `Accept-Encoding: identity`, a `Content-Type` or
/// `Authorization` header given twice `400`, and a body over 16 KiB `413`, each with an
/// `invalid_request` error body. The future is `Send`, for hosts that spawn it.
pub fn token_endpoint<'a, B>(
    issuer: &'a TokenIssuer,
    request: Request<B>,
) -> impl Future<Output = Response<Bytes>> + Send + 'a
where
    B: Body + Send + 'a,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    answer_token(issuer, request)
}

async fn answer_token<B>(issuer: &TokenIssuer, request: Request<B>) -> Response<Bytes>
where
    B: Body + Send,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    if request.method() != Method::POST {
        let error = OAuthError::InvalidRequest("send the token request with POST".to_owned());
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, error.to_json());
        // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if !headers::all_identity(request.headers(), CONTENT_ENCODING) {
        // RFC 9110 §15.5.16, as at the callback endpoint: a coded form is not read as plain.
        let error = OAuthError::InvalidRequest(
            "the token request's body must not be content-coded; send it without \
             Content-Encoding"
                .to_owned(),
        );
        return headers::accepting_identity_only(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error.to_json(),
        ));
    }
    let content_type = match once(request.headers(), CONTENT_TYPE, "Content-Type") {
        Ok(value) => value.and_then(|v| v.to_str().ok()).map(str::to_owned),
        Err(error) => return refused(&error),
    };
    let authorization = match once(request.headers(), AUTHORIZATION, "Authorization") {
        Ok(value) => value.cloned(),
        Err(error) => return refused(&error),
    };
    let body = match read_limited(request.into_body(), TOKEN_BODY_LIMIT).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            let error = OAuthError::InvalidRequest(format!(
                "the token request is larger than {TOKEN_BODY_LIMIT} bytes"
            ));
            return answer(StatusCode::PAYLOAD_TOO_LARGE, error.to_json());
        }
        Err(ReadError::Broken) => {
            return refused(&OAuthError::InvalidRequest(
                "the body could not be read".to_owned(),
            ));
        }
    };
    let issued = issuer.issue_with_authorization(
        authorization.as_ref().map(HeaderValue::as_bytes),
        content_type.as_deref(),
        &body,
    );
    match issued {
        Ok(token) => answer(StatusCode::OK, token.to_json()),
        Err(error) => refused(&error),
    }
}

/// The value of `header` (`name` in the error); a header given twice is refused, as a form
/// parameter given twice is.
fn once<'h>(
    headers: &'h HeaderMap,
    header: HeaderName,
    name: &str,
) -> Result<Option<&'h HeaderValue>, OAuthError> {
    headers::single(headers, header).map_err(|Repeated| {
        OAuthError::InvalidRequest(format!(
            "the {name} header is given more than once; send it once"
        ))
    })
}

/// RFC 6749 §5.2's error answer, with the challenge a `401` carries.
fn refused(error: &OAuthError) -> Response<Bytes> {
    let mut response = answer(error.status(), error.to_json());
    if let Some(challenge) = error.www_authenticate() {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

fn answer(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
