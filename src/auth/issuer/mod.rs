//! A built-in OAuth2 client-credentials token issuer (feature `issuer`).

mod basic;
mod form;
mod oauth;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{AsciiSet, CONTROLS, PercentEncode, utf8_percent_encode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use self::form::TokenForm;
pub use self::oauth::{OAuthError, TokenResponse};
use super::constant_time::position;
use super::{AuthError, CallbackAuthorizer, JwtAuthorizer, Principal};
use crate::Secret;
use crate::clock::{Clock, SystemClock};

/// A client allowed to get tokens: its id, the SHA-256 of its secret, and what its tokens grant.
///
/// Only the hash of the secret is kept. A single fast hash is enough **because client secrets
/// must be high-entropy random strings** (32 random bytes, hex- or base64-encoded): guessing
/// such a secret from its hash is infeasible however fast the hash. Do not use human-chosen
/// passwords as client secrets.
#[derive(Clone)]
pub struct IssuerClient {
    id: String,
    secret_sha256: [u8; 32],
    scopes: Vec<String>,
    roles: Vec<String>,
    tenant: Option<String>,
}

impl fmt::Debug for IssuerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerClient")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl IssuerClient {
    /// A client whose secret hashes to `secret_sha256`.
    pub fn new(id: impl Into<String>, secret_sha256: [u8; 32]) -> Self {
        Self {
            id: id.into(),
            secret_sha256,
            scopes: Vec::new(),
            roles: Vec::new(),
            tenant: None,
        }
    }

    /// A client with this secret; only its hash is kept.
    pub fn from_secret(id: impl Into<String>, secret: &Secret) -> Self {
        Self::new(id, sha256(secret.expose()))
    }

    /// A client whose secret hashes to `hex` (64 hex digits, e.g. from `sha256sum`).
    pub fn from_hex_hash(id: impl Into<String>, hex: &str) -> Result<Self, AuthError> {
        let bad = || AuthError::config("a client secret hash is 64 hexadecimal digits (SHA-256)");
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(bad());
        }
        let digit = |c: u8| char::from(c).to_digit(16).ok_or_else(bad);
        let mut hash = [0u8; 32];
        for (out, pair) in hash.iter_mut().zip(bytes.chunks_exact(2)) {
            *out = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Ok(Self::new(id, hash))
    }

    /// The scopes its tokens may carry; a request without `scope` gets all of them.
    #[must_use]
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The roles its tokens carry.
    #[must_use]
    pub fn with_roles(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The tenant its tokens are limited to.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

fn sha256(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Characters RFC 6749 §5.2 does not allow in an `error_description` (it allows printable
/// ASCII but `"` and `\`), and `%`, so that the percent-encoding is not ambiguous.
const NOT_IN_DESCRIPTION: &AsciiSet = &CONTROLS.add(b'"').add(b'\\').add(b'%');

/// Configured text, such as the audience, as an `error_description` may quote it: a client
/// parsing the answer strictly would otherwise reject it, or take the quote for its end.
fn description_text(text: &str) -> PercentEncode<'_> {
    utf8_percent_encode(text, NOT_IN_DESCRIPTION)
}

/// Issues short-lived HS256 JWTs to configured clients (PROTOCOL.md §6), and verifies them as
/// a [`CallbackAuthorizer`] (signature, issuer, audience, expiry).
///
/// Tokens carry `iss`, `aud`, `sub` (the client id), `iat`, `exp`, `scope`, `roles` and, if the
/// client has one, `tenant`. They live for the configured lifetime (default 1 hour), and
/// `expires_in` tells the client so: `iat` is the second the token was issued and `exp` that
/// plus the lifetime, and the issuer accepts the token until, not at, `exp`. Asked for within
/// a second, a token has less than its lifetime left, so `expires_in` is then a second
/// shorter. Unlike a [`JwtAuthorizer`], which allows a leeway for another issuer's clock, it
/// allows none: it reads the clock that wrote `exp`.
///
/// ```
/// use hookgate::{Secret, auth::{IssuerClient, TokenIssuer}};
/// let issuer = TokenIssuer::builder("https://hookgate.example.com", "hookgate",
///         Secret::new("a signing key of at least thirty-two bytes"))
///     .client(IssuerClient::from_secret("ci", &Secret::new("9f8e...random")).with_scopes(["callbacks"]))
///     .build()
///     .unwrap();
/// let body = b"grant_type=client_credentials&client_id=ci&client_secret=9f8e...random&audience=hookgate";
/// let answer = issuer.issue(Some("application/x-www-form-urlencoded"), body).unwrap();
/// // The hour, or a second less when asked for within a second (`exp` counts whole seconds).
/// assert!((3599..=3600).contains(&answer.expires_in));
/// ```
pub struct TokenIssuer {
    issuer: String,
    audience: String,
    key: EncodingKey,
    verifier: JwtAuthorizer,
    clients: Vec<IssuerClient>,
    lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("clients", &self.clients)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenIssuer`].
#[must_use]
pub struct TokenIssuerBuilder {
    issuer: String,
    audience: String,
    key: Secret,
    clients: Vec<IssuerClient>,
    lifetime: Duration,
    required_scope: Option<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuerBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenIssuerBuilder {
    /// Adds a client.
    pub fn client(mut self, client: IssuerClient) -> Self {
        self.clients.push(client);
        self
    }

    /// How long issued tokens live (default 1 hour): the issuer accepts a token until, not at,
    /// the second it was issued plus this, and not a second longer.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// When verifying, refuses tokens without this scope with [`AuthError::Forbidden`].
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        self.required_scope = Some(scope.into());
        self
    }

    /// The clock for `iat`/`exp` and for verification (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the issuer; fails for a signing key shorter than 32 bytes, a lifetime under one
    /// second, two clients with the same id, or a client with an empty id or secret (a token
    /// request's empty parameter counts as omitted, RFC 6749 §3.2, so such a client could never
    /// get a token).
    ///
    /// Installs a jsonwebtoken crypto provider where there is none, as
    /// [`JwtAuthorizerBuilder::build`](crate::auth::JwtAuthorizerBuilder::build) does.
    pub fn build(self) -> Result<TokenIssuer, AuthError> {
        crate::auth::jwt::ensure_crypto_provider();
        if self.lifetime.as_secs() == 0 {
            return Err(AuthError::config(
                "the token lifetime must be at least one second",
            ));
        }
        let empty_secret = sha256("");
        if let Some(client) = self
            .clients
            .iter()
            .find(|c| c.id.is_empty() || c.secret_sha256 == empty_secret)
        {
            return Err(AuthError::config(if client.id.is_empty() {
                "a client has an empty id, which no token request can present; give it an id"
                    .to_owned()
            } else {
                format!(
                    "the client {:?} has an empty secret, which no token request can present; \
                     give it a secret",
                    client.id
                )
            }));
        }
        if let Some(dup) = self
            .clients
            .iter()
            .enumerate()
            .find(|(i, c)| self.clients[..*i].iter().any(|o| o.id == c.id))
        {
            return Err(AuthError::config(format!(
                "the client id {:?} is configured twice; register each client once",
                dup.1.id
            )));
        }
        // Tokens carry their scopes joined by spaces, and verifiers split them there: a scope
        // with a space in it would grant two.
        let scopes = self.clients.iter().flat_map(|c| c.scopes.iter());
        if let Some(bad) = scopes
            .chain(&self.required_scope)
            .find(|s| !is_scope_token(s))
        {
            return Err(AuthError::config(format!(
                "the scope {bad:?} is not a scope token (RFC 6749 §3.3): use visible ASCII \
                 characters other than `\"` and `\\`, and no spaces"
            )));
        }
        // No leeway: the verifier reads the clock that wrote `exp`, so there is no skew to
        // allow for, and a leeway would accept tokens past the `expires_in` their clients were
        // told.
        let mut verifier = JwtAuthorizer::builder(&self.issuer, &self.audience)
            .hs256(self.key.clone())
            .tenant_claim("tenant")
            .leeway(Duration::ZERO)
            .clock(Arc::clone(&self.clock));
        if let Some(scope) = self.required_scope {
            verifier = verifier.required_scope(scope);
        }
        // Builds the verifier first: it refuses a key shorter than 32 bytes.
        let verifier = verifier.build()?;
        let key = EncodingKey::from_secret(self.key.expose().as_bytes())
            .map_err(|_| AuthError::config("the signing key cannot be used for HS256"))?;
        Ok(TokenIssuer {
            issuer: self.issuer,
            audience: self.audience,
            key,
            verifier,
            clients: self.clients,
            lifetime: self.lifetime,
            clock: self.clock,
        })
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl TokenIssuer {
    /// A builder: tokens get `iss` = `issuer` and `aud` = `audience`, and are signed with
    /// `signing_key` (a random value of at least 32 bytes).
    pub fn builder(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        signing_key: impl Into<Secret>,
    ) -> TokenIssuerBuilder {
        TokenIssuerBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            key: signing_key.into(),
            clients: Vec::new(),
            lifetime: Duration::from_secs(3600),
            required_scope: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Answers a token request: `content_type` is the request's `Content-Type`, `body` its
    /// form (`grant_type=client_credentials`, `client_id`, `client_secret`, optional
    /// `audience` and `scope`). A parameter sent without a value counts as omitted
    /// (RFC 6749 §3.2); one sent twice is refused, even if one of them is empty.
    ///
    /// For a request that may carry an `Authorization` header, use
    /// [`issue_with_authorization`](Self::issue_with_authorization).
    pub fn issue(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<TokenResponse, OAuthError> {
        self.issue_with_authorization(None, content_type, body)
    }

    /// Answers a token request as [`issue`](Self::issue) does, with the value of its
    /// `Authorization` header, if it had one, as sent (a header value need not be text).
    ///
    /// A client authenticates either with HTTP Basic (RFC 6749 §2.3.1: the form-urlencoded
    /// `client_id` and `client_secret` as user and password) or with `client_id` and
    /// `client_secret` in the body, not both:
    /// - an `Authorization` header with `client_secret` in the body is `invalid_request`, as
    ///   is a body `client_id` naming another client than the header (the same id is
    ///   accepted: some clients send it in both places);
    /// - a header that is not Basic credentials is `invalid_client`.
    ///
    /// Answer an `invalid_client` with `401` and the
    /// [`www_authenticate`](OAuthError::www_authenticate) challenge, as RFC 6749 §5.2 requires
    /// of a client that tried the header; `server::token_endpoint` (feature `issuer`, served
    /// by the `axum` router too) does.
    pub fn issue_with_authorization(
        &self,
        authorization: Option<&[u8]>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<TokenResponse, OAuthError> {
        let form = TokenForm::parse(content_type, body)?;
        match form.grant_type.as_deref() {
            Some("client_credentials") => {}
            Some(_) => {
                return Err(OAuthError::UnsupportedGrantType(
                    "only grant_type=client_credentials is supported".to_owned(),
                ));
            }
            None => {
                return Err(OAuthError::InvalidRequest(
                    "`grant_type` is missing; send grant_type=client_credentials".to_owned(),
                ));
            }
        }
        let (id, secret) = match authorization {
            None => (form.client_id, form.client_secret),
            Some(_) if form.client_secret.is_some() => {
                return Err(OAuthError::InvalidRequest(
                    "the client authenticated both with the Authorization header and with \
                     client_secret in the body; use only one of them"
                        .to_owned(),
                ));
            }
            Some(header) => {
                let (id, secret) = basic::credentials(header)?;
                if form.client_id.is_some() && form.client_id != id {
                    return Err(OAuthError::InvalidRequest(
                        "the client_id in the body names another client than the \
                         Authorization header; leave it out or send the same id"
                            .to_owned(),
                    ));
                }
                (id, secret)
            }
        };
        let client = self.authenticate(id.as_deref(), secret.as_ref())?;
        if let Some(audience) = form.audience.as_deref()
            && audience != self.audience
        {
            return Err(OAuthError::InvalidRequest(format!(
                "this issuer only issues tokens for the audience `{}`; send that audience or \
                 leave audience out",
                description_text(&self.audience)
            )));
        }
        let scopes = match form.scope.as_deref() {
            None => client.scopes.clone(),
            Some(requested) => {
                // RFC 6749 §3.3: scope tokens are separated by spaces, and hold no other
                // blank; the verifiers split at spaces alone too. A scope asked for twice is
                // granted once.
                let pieces = requested.split(' ').filter(|s| !s.is_empty());
                if pieces.clone().any(|s| !is_scope_token(s)) {
                    return Err(OAuthError::InvalidScope(
                        "`scope` holds a character no scope has (a tab, a line break, a quote, \
                         a backslash, or any beyond ASCII); separate scopes with single spaces"
                            .to_owned(),
                    ));
                }
                let mut requested: Vec<String> = Vec::new();
                for scope in pieces {
                    if !requested.iter().any(|r| r == scope) {
                        requested.push(scope.to_owned());
                    }
                }
                // A scope is one or more scope tokens. Only blanks would grant a token with
                // none, which nothing accepts.
                if requested.is_empty() {
                    return Err(OAuthError::InvalidScope(
                        "`scope` holds only blanks; name the scopes, or leave it out for all of the client's"
                            .to_owned(),
                    ));
                }
                if !requested.iter().all(|s| client.scopes.contains(s)) {
                    return Err(OAuthError::InvalidScope(
                        "a requested scope is not granted to this client; ask for fewer scopes"
                            .to_owned(),
                    ));
                }
                requested
            }
        };
        self.sign(client, scopes)
    }

    /// The client with these credentials. The secret is hashed and compared in constant time
    /// even for an unknown client id, so timing does not tell which ids exist.
    fn authenticate(
        &self,
        id: Option<&str>,
        secret: Option<&Secret>,
    ) -> Result<&IssuerClient, OAuthError> {
        let refused = || {
            OAuthError::InvalidClient(
                "client authentication failed; check client_id and client_secret".to_owned(),
            )
        };
        let (Some(id), Some(secret)) = (id, secret) else {
            return Err(refused());
        };
        let presented = sha256(secret.expose());
        let ids = self.clients.iter().map(|c| c.id.as_bytes());
        let client = position(ids, id.as_bytes()).map(|i| &self.clients[i]);
        let expected = client.map_or([0u8; 32], |c| c.secret_sha256);
        let matches = bool::from(presented.ct_eq(&expected));
        match client {
            Some(client) if matches => Ok(client),
            Some(client) => {
                tracing::warn!(
                    client_id = client.id.as_str(),
                    "refused a token request: wrong client secret"
                );
                Err(refused())
            }
            // An id no client has is not logged: a client that swapped its id and secret would
            // have its secret written to the log.
            None => {
                tracing::warn!("refused a token request: unknown client id");
                Err(refused())
            }
        }
    }

    fn sign(
        &self,
        client: &IssuerClient,
        scopes: Vec<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let asked_at = self.clock.now();
        let now = asked_at.timestamp();
        let lifetime = self.lifetime.as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.id,
            "iat": now,
            "exp": now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
            "scope": scopes.join(" "),
            "roles": client.roles,
        });
        if let Some(tenant) = &client.tenant {
            claims["tenant"] = json!(tenant);
        }
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|_| OAuthError::ServerError("the token could not be signed".to_owned()))?;
        tracing::info!(client_id = %client.id, "issued an access token");
        Ok(TokenResponse {
            access_token: Secret::new(token),
            scope: scopes.join(" "),
            // `exp` counts from the whole second the token was asked in: a client counting
            // the full lifetime from when it asked would use it past `exp`.
            expires_in: lifetime - u64::from(asked_at.timestamp_subsec_nanos() > 0),
        })
    }
}

#[async_trait]
impl CallbackAuthorizer for TokenIssuer {
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        self.verifier.authorize(bearer_token).await
    }
}
