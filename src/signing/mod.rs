//! Standard Webhooks signing of outbound calls and verification for receivers.
