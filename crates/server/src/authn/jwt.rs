//! The `jwt` HTTP authenticator.
