"""Drives the Azure Key Vault stand-in with Microsoft's own Python clients.

azure-identity's ClientSecretCredential (authority = the stand-in, instance discovery off) and
azure-keyvault-keys' KeyClient / CryptographyClient (challenge resource check off, the stand-in's
CA trusted). Reads one JSON request on stdin:

    {"vault_url", "authority", "tenant", "client_id", "secret", "ca_file", "key_name",
     "wrap": base64url data key to wrap, "unwrap": base64url RSA-OAEP-256 ciphertext to unwrap,
     "unwrap_kid": the versioned key id that wrapped it}

and prints one JSON answer: the key's attributes as get_key reports them, the wrap (its kid and
base64url value) and the unwrapped key (base64url). Any failure is a traceback and exit status 1.

With "mode": "errors" it instead expects failures and reports how azure-core parsed them: get_key
of "missing_key" and unwrap_key under "unwrap_kid" (of a disabled key), each as
{"type", "status", "code", "message"}.
"""

import base64
import json
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ts(d):
    return None if d is None else int(d.timestamp())


def main():
    req = json.load(sys.stdin)
    verify = req["ca_file"]
    credential = ClientSecretCredential(
        req["tenant"],
        req["client_id"],
        req["secret"],
        authority=req["authority"],
        disable_instance_discovery=True,
        connection_verify=verify,
    )
    keys = KeyClient(
        vault_url=req["vault_url"],
        credential=credential,
        verify_challenge_resource=False,
        connection_verify=verify,
    )
    if req.get("mode") == "errors":
        json.dump(errors(req, credential, keys), sys.stdout)
        return
    key = keys.get_key(req["key_name"])
    props = key.properties
    crypto = CryptographyClient(
        key, credential=credential, verify_challenge_resource=False, connection_verify=verify
    )
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b64d(req["wrap"]))
    # Unwrap under the version that wrapped it (a private-key operation: always remote).
    by_id = CryptographyClient(
        req["unwrap_kid"],
        credential=credential,
        verify_challenge_resource=False,
        connection_verify=verify,
    )
    unwrapped = by_id.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b64d(req["unwrap"]))
    json.dump(
        {
            "kid": key.id,
            "version": props.version,
            "kty": str(key.key_type.value if hasattr(key.key_type, "value") else key.key_type),
            "key_ops": [str(o.value if hasattr(o, "value") else o) for o in key.key_operations],
            "enabled": props.enabled,
            "not_before": ts(props.not_before),
            "expires_on": ts(props.expires_on),
            "created_on": ts(props.created_on),
            "n_len": len(key.key.n),
            "wrapped_kid": wrapped.key_id,
            "wrapped": b64e(wrapped.encrypted_key),
            "unwrapped": b64e(unwrapped.key),
        },
        sys.stdout,
    )


def failure(call):
    try:
        call()
    except HttpResponseError as e:
        return {
            "type": type(e).__name__,
            "status": e.status_code,
            "code": e.error.code if e.error else None,
            "message": e.error.message if e.error else None,
        }
    return None


def errors(req, credential, keys):
    crypto = CryptographyClient(
        req["unwrap_kid"],
        credential=credential,
        verify_challenge_resource=False,
        connection_verify=req["ca_file"],
    )
    return {
        "missing": failure(lambda: keys.get_key(req["missing_key"])),
        "disabled_unwrap": failure(
            lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, b64d(req["unwrap"]))
        ),
    }


if __name__ == "__main__":
    main()
