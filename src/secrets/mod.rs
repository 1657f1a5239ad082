//! Where `{{secrets.*}}` values come from: the `SecretSource` trait and its implementations.
