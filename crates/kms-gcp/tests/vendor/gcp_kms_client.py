"""Google's official Cloud KMS client against the encrypt-repo stand-in.

Run by crates/kms-gcp/tests/vendor_client.rs with the venv from `bash tests/services.sh venv`
(google-cloud-kms, google-auth). The client uses its REST transport over plain http to the
loopback stand-in; google-auth's service-account credentials perform the real JWT-bearer grant
at the key file's token_uri (the stand-in's). CRC32C integrity checks are done as Google's
documentation shows, with a local CRC32C (google-crc32c is not a dependency of the client).

Usage: gcp_kms_client.py ENDPOINT KEY_FILE COMMAND ARGS...
  get KEY_NAME                          -> {"name", "purpose", "primary_name", "primary_state", "algorithm"}
  encrypt KEY_NAME PLAINTEXT_HEX AAD_HEX -> {"name", "ciphertext"}
  decrypt KEY_NAME CIPHERTEXT_HEX AAD_HEX -> {"plaintext"}
Prints one JSON object on stdout; any failure is an exception and a non-zero exit.
"""

import json
import sys

from google.cloud import kms
from google.cloud.kms_v1.services.key_management_service.transports.rest import (
    KeyManagementServiceRestTransport,
)
from google.oauth2 import service_account


def _table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def client(endpoint: str, key_file: str) -> kms.KeyManagementServiceClient:
    credentials = service_account.Credentials.from_service_account_file(
        key_file, scopes=["https://www.googleapis.com/auth/cloudkms"]
    )
    scheme, host = endpoint.split("://", 1)
    transport = KeyManagementServiceRestTransport(
        host=host, credentials=credentials, url_scheme=scheme
    )
    return kms.KeyManagementServiceClient(transport=transport)


def main(argv):
    endpoint, key_file, command, name = argv[1:5]
    c = client(endpoint, key_file)
    if command == "get":
        key = c.get_crypto_key(request={"name": name})
        out = {
            "name": key.name,
            "purpose": key.purpose.name,
            "primary_name": key.primary.name,
            "primary_state": key.primary.state.name,
            "algorithm": key.primary.algorithm.name,
        }
    elif command == "encrypt":
        plaintext, aad = bytes.fromhex(argv[5]), bytes.fromhex(argv[6])
        r = c.encrypt(
            request={
                "name": name,
                "plaintext": plaintext,
                "additional_authenticated_data": aad,
                "plaintext_crc32c": crc32c(plaintext),
                "additional_authenticated_data_crc32c": crc32c(aad),
            }
        )
        if not r.verified_plaintext_crc32c:
            raise RuntimeError("the request sent to the server was corrupted in transit")
        if not r.verified_additional_authenticated_data_crc32c:
            raise RuntimeError("the AAD sent to the server was corrupted in transit")
        if r.ciphertext_crc32c != crc32c(r.ciphertext):
            raise RuntimeError("the response received from the server was corrupted in transit")
        out = {"name": r.name, "ciphertext": r.ciphertext.hex()}
    elif command == "decrypt":
        ciphertext, aad = bytes.fromhex(argv[5]), bytes.fromhex(argv[6])
        r = c.decrypt(
            request={
                "name": name,
                "ciphertext": ciphertext,
                "ciphertext_crc32c": crc32c(ciphertext),
                "additional_authenticated_data": aad,
                "additional_authenticated_data_crc32c": crc32c(aad),
            }
        )
        if r.plaintext_crc32c != crc32c(r.plaintext):
            raise RuntimeError("the response received from the server was corrupted in transit")
        out = {"plaintext": r.plaintext.hex()}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
