//! Outbound HTTP: the `HttpTransport` trait and its reqwest implementation.
