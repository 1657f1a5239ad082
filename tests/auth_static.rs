//! `StaticTokens` and the forwarding impls of `CallbackAuthorizer`.

use std::sync::Arc;

use hookgate::Secret;
use hookgate::auth::{AuthError, CallbackAuthorizer, Principal, StaticTokens};

#[tokio::test]
async fn tokens_map_to_principals_through_arc_and_box() {
    let tokens = StaticTokens::new()
        .with_token(
            Secret::new("first-0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            Principal::new("one"),
        )
        .with_token(
            "second-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            Principal::new("two").with_roles(["ops"]),
        );
    let shared: Arc<dyn CallbackAuthorizer> = Arc::new(tokens.clone());
    let boxed: Box<dyn CallbackAuthorizer> = Box::new(tokens.clone());
    let two = shared
        .authorize("second-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        .await
        .unwrap();
    assert_eq!(
        (two.subject.as_str(), two.roles.as_slice()),
        ("two", ["ops".to_owned()].as_slice())
    );
    assert_eq!(
        boxed
            .authorize("first-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
            .await
            .unwrap()
            .subject,
        "one"
    );
    let err = tokens
        .authorize("first-0f1e2d3c4b5a69788796a5b4c3d2e1f")
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken { .. }));
    assert!(!err.to_string().contains("0f1e2d"));
    assert!(!format!("{tokens:?}").contains("0f1e2d"));
}
