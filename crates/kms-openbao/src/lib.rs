//! OpenBao / HashiCorp Vault transit key provider for encrypt-repo (work in progress).
