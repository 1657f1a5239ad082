use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header};

use crate::auth::AuthError;

/// One key a token may be signed with, pinned to one algorithm so that a token cannot pick a
/// weaker or confused one (e.g. HS256 with an RSA public key as the secret).
#[derive(Clone)]
pub(super) struct VerifyKey {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

// `DecodingKey`'s own `Debug` would print an HS256 secret.
impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The algorithms of the keys a JWKS may supply ([`VerifyKey::from_jwk`]).
pub(super) const JWKS_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

impl VerifyKey {
    pub(super) fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::config(
                "an HS256 secret must be at least 32 bytes; use a long random value",
            ));
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|_| AuthError::config("the HS256 secret cannot be used as a key"))?;
        Ok(Self::new(Algorithm::HS256, key))
    }

    pub(super) fn rs256_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|_| AuthError::config("the RS256 key is not a PEM-encoded RSA public key"))?;
        Ok(Self::new(Algorithm::RS256, key))
    }

    pub(super) fn es256_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| {
            AuthError::config("the ES256 key is not a PEM-encoded P-256 public key")
        })?;
        Ok(Self::new(Algorithm::ES256, key))
    }

    fn new(alg: Algorithm, key: DecodingKey) -> Self {
        Self {
            kid: None,
            alg,
            key,
        }
    }

    /// A signing key of a JWKS, if it is an RS256 or ES256 key ([`JWKS_ALGORITHMS`]); other
    /// keys are skipped rather than failing the whole set. A key without a `kid` (RFC 7517
    /// makes it optional) fits every token of its algorithm, as a configured key does.
    pub(super) fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return None;
        }
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }

    /// Whether a token with `header` may have been signed with this key.
    pub(super) fn fits(&self, header: &Header) -> bool {
        self.alg == header.alg
            && match (&self.kid, &header.kid) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }
}
