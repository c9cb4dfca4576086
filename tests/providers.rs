//! The facade's registry knows every provider of a default build, and answers an unknown type
//! with the list.

#[test]
fn default_build_registers_every_provider() {
    let registry = encrypt_repo::provider_registry();
    assert_eq!(
        registry.known(),
        [
            "aws-kms",
            "azure-key-vault",
            "exec",
            "gcp-kms",
            "local",
            "openbao",
            "passphrase"
        ]
    );
}

#[tokio::test]
async fn unknown_provider_type_lists_the_known_ones() {
    let e = encrypt_repo::provider_registry()
        .open("hsm", &Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown key provider type \"hsm\"; known types: aws-kms, azure-key-vault, exec, gcp-kms, local, openbao, passphrase"
    );
}
