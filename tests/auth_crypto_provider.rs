//! jsonwebtoken picks its crypto provider by its features, and picks none when both of its back
//! ends are enabled, as the tests' build has them (see Cargo.toml) and a host's may, Cargo
//! unifying features across the build: hookgate's builders then install one, so that checking
//! and issuing tokens work rather than panic. Alone in its file, so that no other test installs
//! a provider first.
#![cfg(all(feature = "jwt", feature = "issuer"))]

use std::time::Duration;

use hookgate::Secret;
use hookgate::auth::{CallbackAuthorizer, IssuerClient, JwtAuthorizer, TokenIssuer};
use jsonwebtoken::crypto::CryptoProvider;

#[tokio::test]
async fn tokens_are_issued_and_checked_where_jsonwebtoken_picks_no_provider() {
    assert!(
        CryptoProvider::try_get_default().is_none(),
        "the build enables both of jsonwebtoken's back ends"
    );
    let secret = "a signing key of at least thirty-two bytes";
    let issuer = TokenIssuer::builder("https://gates.example", "hookgate", secret)
        .client(IssuerClient::from_secret(
            "ci",
            &Secret::from("client secret"),
        ))
        .lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let authorizer = JwtAuthorizer::builder("https://gates.example", "hookgate")
        .hs256(secret)
        .build()
        .unwrap();
    let issued = issuer
        .issue(
            Some("application/x-www-form-urlencoded"),
            b"grant_type=client_credentials&client_id=ci&client_secret=client+secret",
        )
        .unwrap();
    let principal = authorizer
        .authorize(issued.access_token.expose())
        .await
        .unwrap();
    assert_eq!(principal.subject, "ci");
}
