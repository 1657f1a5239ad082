//! JWT verification of bearer tokens (feature `jwt`).

mod claims;
mod jwks;
mod keys;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use self::claims::ClaimRules;
use self::jwks::Jwks;
use self::keys::VerifyKey;
use super::{AuthError, CallbackAuthorizer, Principal};
use crate::Secret;
use crate::clock::{Clock, SystemClock};
use crate::transport::{DynTransport, HttpTransport, plain_http_off_machine};

/// Verifies JWT bearer tokens: signature, issuer, audience, expiry, optional scope.
///
/// Keys are HS256 shared secrets, RS256/ES256 public keys in PEM, or the RS256/ES256 keys of a
/// JWKS URL. Each key is pinned to its algorithm, so a token cannot choose another. A JWKS is
/// fetched through an [`HttpTransport`] on first use, cached, and fetched again when a token
/// names an unknown `kid` or none of its keys verifies a token (the provider may have rotated
/// keys without a new `kid`) — at most once per [`jwks_refresh_interval`] (default 30 s; a
/// token naming a `kid` the keys lack before the interval has passed is refused, so an identity
/// provider should publish a key before it signs with it) — and
/// before use once the cached keys are older than [`jwks_max_age`] (default 1 hour), so keys the
/// provider removed stop verifying. A fetch is shared by the callers that need it and carried on
/// by whichever of them polls it, so a caller that goes away (a client hanging up) does not take
/// it along. While the JWKS cannot be fetched, a token it may have signed (RS256, ES256) that no
/// direct key verifies is [`AuthError::Unavailable`] (`503`, for its sender to retry); a token
/// of another algorithm, which no JWKS key can verify, is refused as invalid (`401`) without a
/// fetch.
///
/// `exp` and `nbf` are checked against the injected [`Clock`] with a leeway (default 60 s): a
/// token is valid from `nbf` less the leeway, and until, not at, `exp` plus the leeway;
/// `iss`, `aud`, `exp` and `sub` are required. The [`Principal`] gets `sub`, the scopes of the
/// space-separated `scope` claim and the `scp` array, the roles of the roles claim (default
/// `roles`, an array, or one string naming one role) and, if configured, the tenant claim. A
/// valid token without the required scope is [`AuthError::Forbidden`].
///
/// ```
/// use hookgate::auth::JwtAuthorizer;
/// let authorizer = JwtAuthorizer::builder("https://idp.example.com/", "hookgate")
///     .hs256("a shared secret of at least thirty-two bytes")
///     .required_scope("callbacks")
///     .build()
///     .unwrap();
/// ```
///
/// [`jwks_refresh_interval`]: JwtAuthorizerBuilder::jwks_refresh_interval
/// [`jwks_max_age`]: JwtAuthorizerBuilder::jwks_max_age
pub struct JwtAuthorizer {
    keys: Arc<[VerifyKey]>,
    jwks: Option<Jwks>,
    /// For HS256, RS256 and ES256, built once rather than per request.
    validations: [Validation; 3],
    rules: ClaimRules,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthorizer")
            .field("keys", &self.keys)
            .field("jwks", &self.jwks.is_some())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Configures a [`JwtAuthorizer`].
#[must_use]
pub struct JwtAuthorizerBuilder {
    issuer: String,
    audience: String,
    keys: Vec<Result<VerifyKey, AuthError>>,
    jwks: Option<(String, DynTransport)>,
    allow_http_jwks: bool,
    refresh_interval: Duration,
    max_age: Duration,
    leeway: Duration,
    rules: ClaimRules,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtAuthorizerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthorizerBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtAuthorizer {
    /// A builder for tokens whose `iss` is `issuer` and whose `aud` is or contains `audience`.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtAuthorizerBuilder {
        JwtAuthorizerBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: Vec::new(),
            jwks: None,
            allow_http_jwks: false,
            refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(60 * 60),
            leeway: Duration::from_secs(60),
            rules: ClaimRules {
                leeway_secs: 60,
                required_scope: None,
                roles_claim: "roles".to_owned(),
                tenant_claim: None,
            },
            clock: Arc::new(SystemClock),
        }
    }

    /// Checks `token` with the keys that fit it: `None` if no key verifies its signature.
    fn verify(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        keys: &[VerifyKey],
    ) -> Option<Result<Principal, AuthError>> {
        for key in keys.iter().filter(|k| k.fits(header)) {
            let validation = self.validation(key.alg);
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Some(self.rules.principal(&data.claims, self.clock.now())),
                // Another key (during a rotation) may still verify it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => return Some(Err(refusal(e.kind()))),
            }
        }
        None
    }

    fn validation(&self, alg: Algorithm) -> &Validation {
        // A `VerifyKey` only ever holds one of these three algorithms.
        match alg {
            Algorithm::HS256 => &self.validations[0],
            Algorithm::RS256 => &self.validations[1],
            _ => &self.validations[2],
        }
    }
}

impl JwtAuthorizerBuilder {
    /// The shortest [`jwks_refresh_interval`](Self::jwks_refresh_interval)
    /// [`build`](Self::build) accepts: 1 s.
    pub const MIN_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

    /// Accepts HS256 tokens signed with `secret` (at least 32 bytes).
    pub fn hs256(mut self, secret: impl Into<Secret>) -> Self {
        let secret = secret.into();
        self.keys.push(VerifyKey::hs256(secret.expose().as_bytes()));
        self
    }

    /// Accepts RS256 tokens signed by the private half of this PEM public key.
    pub fn rs256_pem(mut self, pem: &[u8]) -> Self {
        self.keys.push(VerifyKey::rs256_pem(pem));
        self
    }

    /// Accepts ES256 tokens signed by the private half of this PEM public key (P-256).
    pub fn es256_pem(mut self, pem: &[u8]) -> Self {
        self.keys.push(VerifyKey::es256_pem(pem));
        self
    }

    /// Accepts tokens signed by the RS256/ES256 keys published at `url`, fetched through
    /// `transport`. Keys given directly are tried first; a token none of them verifies is tried
    /// against these.
    ///
    /// `url` must be `https`, or plain `http` on this machine's loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`); [`build`](Self::build) refuses any other unless
    /// [`allow_http_jwks`](Self::allow_http_jwks) is set.
    pub fn jwks(mut self, url: impl Into<String>, transport: impl HttpTransport + 'static) -> Self {
        self.jwks = Some((url.into(), Arc::new(transport)));
        self
    }

    /// Accepts a plain `http` JWKS URL on another host than this one. Anyone who can read or
    /// alter the traffic on the way can then replace the keys and forge tokens that approve
    /// deployments: set it only where the network encrypts and authenticates below HTTP (a
    /// service mesh with mutual TLS, say).
    pub fn allow_http_jwks(mut self) -> Self {
        self.allow_http_jwks = true;
        self
    }

    /// The shortest time between two JWKS fetches (default 30 s, at least
    /// [`MIN_JWKS_REFRESH_INTERVAL`](Self::MIN_JWKS_REFRESH_INTERVAL)).
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// How long fetched JWKS keys are used before the JWKS is fetched again (default 1 hour),
    /// so that a key the identity provider removed stops verifying tokens. If that fetch fails,
    /// the keys fetched before stay in use until a fetch succeeds. Fetches still start at most
    /// once per [`jwks_refresh_interval`](Self::jwks_refresh_interval).
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far `exp` and `nbf` may be off to allow for clock skew (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Refuses valid tokens without this scope with [`AuthError::Forbidden`].
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        self.rules.required_scope = Some(scope.into());
        self
    }

    /// The claim holding the principal's roles (default `roles`): an array of strings, or one
    /// string naming one role (not split at spaces, as a scope string is).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.rules.roles_claim = claim.into();
        self
    }

    /// The claim holding the principal's tenant (default: none).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.rules.tenant_claim = Some(claim.into());
        self
    }

    /// The clock `exp` and `nbf` are checked against (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the authorizer; fails if a key does not parse, no key source was given, or a JWKS's
    /// refresh interval is under [`MIN_JWKS_REFRESH_INTERVAL`](Self::MIN_JWKS_REFRESH_INTERVAL).
    ///
    /// If jsonwebtoken has no crypto provider (both of its back ends are enabled in the build,
    /// and it picks neither), installs aws-lc-rs's as the process's default; install another
    /// (`jsonwebtoken::crypto::CryptoProvider::install_default`) before building to use it.
    pub fn build(self) -> Result<JwtAuthorizer, AuthError> {
        ensure_crypto_provider();
        let keys = self.keys.into_iter().collect::<Result<Vec<_>, _>>()?;
        let jwks = match self.jwks {
            None => None,
            Some(_) if self.refresh_interval < Self::MIN_JWKS_REFRESH_INTERVAL => {
                return Err(AuthError::config(format!(
                    "the JWKS refresh interval must be at least {:?}: with a shorter one, anyone \
                     sending tokens that name unknown key ids makes the identity provider serve \
                     a fetch for each",
                    Self::MIN_JWKS_REFRESH_INTERVAL
                )));
            }
            Some((url, transport)) => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|_| AuthError::config("the JWKS URL is not a valid URL"))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(AuthError::config(
                        "the JWKS URL must be an absolute http(s) URL",
                    ));
                }
                if plain_http_off_machine(&uri) && !self.allow_http_jwks {
                    return Err(AuthError::config(
                        "the JWKS URL must use https: keys fetched over plain http can be replaced \
                         by anyone on the network path, who could then forge tokens (plain http is \
                         accepted on loopback, or with allow_http_jwks)",
                    ));
                }
                Some(Jwks::new(
                    uri,
                    transport,
                    self.refresh_interval,
                    self.max_age,
                    Arc::clone(&self.clock),
                ))
            }
        };
        if keys.is_empty() && jwks.is_none() {
            return Err(AuthError::config(
                "no key to verify tokens with; configure an HS256 secret, a PEM public key or a JWKS URL",
            ));
        }
        let leeway_secs = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let validations = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256]
            .map(|alg| validation(alg, &self.issuer, &self.audience));
        Ok(JwtAuthorizer {
            keys: keys.into(),
            jwks,
            validations,
            rules: ClaimRules {
                leeway_secs,
                ..self.rules
            },
            clock: self.clock,
        })
    }
}

/// Makes sure jsonwebtoken has a crypto provider, which it picks by its features: hookgate
/// enables `aws_lc_rs`, and when another crate in the build enables `rust_crypto` too (Cargo
/// unifies features across the build), it picks none and panics at the first token checked or
/// issued. aws-lc-rs's provider then becomes the process's default; one the host installed is
/// kept.
pub(crate) fn ensure_crypto_provider() {
    use jsonwebtoken::crypto::{CryptoProvider, aws_lc};

    if CryptoProvider::try_get_default().is_none() {
        // Losing a race to another installer leaves that one's, which serves as well.
        let _ = aws_lc::DEFAULT_PROVIDER.install_default();
    }
}

/// Signature, issuer and audience are checked by jsonwebtoken; `exp`/`nbf` by
/// [`ClaimRules`] against the injected clock, since jsonwebtoken reads the system clock.
/// `exp` is required there too: jsonwebtoken counts an `exp` that is not an unsigned integer
/// (`-5`, `1e20`) as missing, which misnames an expired token.
fn validation(alg: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["iss", "aud", "sub"]);
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

fn refusal(kind: &ErrorKind) -> AuthError {
    AuthError::invalid(match kind {
        ErrorKind::InvalidSignature => "its signature does not verify",
        ErrorKind::InvalidIssuer => "it was issued by another issuer",
        ErrorKind::InvalidAudience => "it is meant for another audience",
        ErrorKind::InvalidAlgorithm => "its algorithm does not match the key",
        ErrorKind::MissingRequiredClaim(claim) => {
            return AuthError::invalid(format!("it lacks the `{claim}` claim"));
        }
        ErrorKind::InvalidClaimFormat(claim) => {
            return AuthError::invalid(format!("its `{claim}` claim is malformed"));
        }
        _ => "it is not a well-formed JWT",
    })
}

#[async_trait]
impl CallbackAuthorizer for JwtAuthorizer {
    async fn authorize(&self, bearer_token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(bearer_token)
            .map_err(|_| AuthError::invalid("it is not a well-formed JWT"))?;
        let kid = header.kid.as_deref();
        if let Some(verdict) = self.verify(bearer_token, &header, &self.keys) {
            return verdict;
        }
        // No configured key verifies it (a key without a `kid` fits every token of its
        // algorithm, so a JWKS-signed token may well meet one): the JWKS's keys come next, for
        // a token of an algorithm a JWKS key may have. One of another (an HS256 token) no JWKS
        // key can verify: it is refused (`401`) without a fetch, also while the JWKS cannot be
        // had, rather than sent to retry (`503`) a token that will never pass. One of a JWKS
        // key's algorithm waits for the JWKS as in a JWKS-only setup: refused, its sender
        // would give up on a valid token.
        let static_fit = self.keys.iter().any(|k| k.fits(&header));
        let mut jwks_fit = false;
        if let Some(jwks) = self
            .jwks
            .as_ref()
            .filter(|_| keys::JWKS_ALGORITHMS.contains(&header.alg))
        {
            let cached = jwks.keys(kid).await?;
            if let Some(verdict) = self.verify(bearer_token, &header, &cached) {
                return verdict;
            }
            // No cached key verifies it: the provider may have rotated its keys without a new
            // `kid`, or reused one, so fetch them again (at the limited rate) and try once more.
            let fresh = jwks.refresh(kid, &cached).await?;
            if !Arc::ptr_eq(&fresh, &cached)
                && let Some(verdict) = self.verify(bearer_token, &header, &fresh)
            {
                return verdict;
            }
            jwks_fit = fresh.iter().any(|k| k.fits(&header));
        }
        Err(if static_fit || jwks_fit {
            refusal(&ErrorKind::InvalidSignature)
        } else {
            AuthError::invalid(match kid {
                Some(_) => "no configured key has the token's `kid` and algorithm",
                None => "no configured key fits the token's algorithm",
            })
        })
    }
}
