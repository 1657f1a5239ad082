//! The built-in secret sources and `fetch_all`.

use std::sync::Arc;

use hookgate::secrets::{
    DynSecretSource, EnvSecrets, MemorySecrets, SecretError, SecretSource, fetch_all,
};

#[tokio::test]
async fn env_source_reads_prefix_plus_name_exactly() {
    // Cargo sets CARGO_PKG_NAME for test binaries, so no test has to mutate the environment.
    let source = EnvSecrets::with_prefix("CARGO_PKG_");
    assert_eq!(source.get("NAME").await.unwrap().expose(), "hookgate");
    assert!(matches!(
        source.get("name").await,
        Err(SecretError::NotFound { .. })
    ));
}

#[tokio::test]
async fn env_source_not_found_names_the_variable() {
    let err = EnvSecrets::new()
        .get("surely_absent_hookgate_test")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("surely_absent_hookgate_test"), "{message}");
    assert!(
        message.contains("HOOKGATE_SECRET_surely_absent_hookgate_test"),
        "{message}"
    );
}

#[tokio::test]
async fn env_source_rejects_names_the_platform_cannot_hold() {
    for name in ["a=b", "nul\0"] {
        let err = EnvSecrets::new().get(name).await.unwrap_err();
        assert!(matches!(err, SecretError::InvalidName { .. }), "{err}");
    }
    let err = EnvSecrets::with_prefix("").get("").await.unwrap_err();
    assert!(matches!(err, SecretError::InvalidName { .. }), "{err}");
}

#[tokio::test]
async fn memory_source_builds_and_never_shows_values() {
    let source = MemorySecrets::new()
        .with("github_token", "ghp_value_1")
        .with("ticket_token", "tkt_value_2");
    assert_eq!(
        source.get("github_token").await.unwrap().expose(),
        "ghp_value_1"
    );
    let debug = format!("{source:?}");
    assert!(debug.contains("github_token") && debug.contains("ticket_token"));
    assert!(!debug.contains("value_"), "{debug}");

    let err = source.get("missing").await.unwrap_err();
    assert!(err.to_string().contains("`missing`"));
}

#[tokio::test]
async fn forwarding_impls_and_fetch_all() {
    let source: DynSecretSource = Arc::new(
        [("a", "1"), ("b", "2"), ("c", "3")]
            .into_iter()
            .collect::<MemorySecrets>(),
    );
    let boxed: Box<dyn SecretSource> = Box::new(Arc::clone(&source));
    let fetched = fetch_all(&boxed, ["a", "c", "a"]).await.unwrap();
    assert_eq!(fetched.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(fetched["c"].expose(), "3");

    let err = fetch_all(&*source, ["a", "zz"]).await.unwrap_err();
    assert!(matches!(err, SecretError::NotFound { ref name, .. } if name == "zz"));
}

#[test]
fn backend_errors_keep_their_cause() {
    let err = SecretError::backend("vault_token", "vault answered 503");
    let message = err.to_string();
    assert!(
        message.contains("vault_token") && message.contains("503"),
        "{message}"
    );
    assert!(std::error::Error::source(&err).is_some());
}
