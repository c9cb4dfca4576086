//! AWS KMS key provider for encrypt-repo (work in progress).
