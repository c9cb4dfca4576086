"""Tokens from an independent JWT implementation (PyJWT + cryptography) for tests/jwt_pyjwt.rs.

Usage: .venv/bin/python make_tokens.py NOW
Prints one JSON object: the public keys ("keys": name -> signing_key text) and the cases
("cases": name, key, config, token, expect, and for accepted tokens subject and roles).
Keys are generated afresh on every run; no private key leaves this process.
"""

import base64
import hashlib
import hmac
import json
import os
import sys

import cryptography
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

NOW = int(sys.argv[1])
AUD = "encrypt-repo"
ISS = "https://idp.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(private_key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> str:
    return private_key.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()


secret = os.urandom(64)
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_keys = {
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
}
other = {
    "hmac": os.urandom(64),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "p256": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "p521": ec.generate_private_key(ec.SECP521R1()),
}
keys = {
    "hmac": base64.b64encode(secret).decode(),
    "rsa": pem(rsa_key),
    "rsa_pkcs1": pem(rsa_key, serialization.PublicFormat.PKCS1),
    # Too weak to configure (the verifier wants 2048 to 8192 bits).
    "rsa_1024": pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
    **{name: pem(k) for name, k in ec_keys.items()},
}
signers = {"hmac": secret, "rsa": rsa_key, **ec_keys}
family = {
    **{f"HS{n}": "hmac" for n in (256, 384, 512)},
    **{f"{p}{n}": "rsa" for p in ("RS", "PS") for n in (256, 384, 512)},
    "ES256": "p256",
    "ES384": "p384",
    "ES512": "p521",
}
strict = {"required_audience": AUD, "required_issuer": ISS, "roles_key": "roles"}


def claims(**changes):
    c = {"sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 300, "aud": AUD, "iss": ISS,
         "roles": ["admin", "ops"]}
    c.update(changes)
    return {k: v for k, v in c.items() if v is not None}


cases = []


def case(name, key, token, expect, config=strict, **extra):
    cases.append({"name": name, "key": key, "config": config, "token": token, "expect": expect,
                  **extra})


# All twelve algorithms, each with its own key.
for alg, key in family.items():
    token = jwt.encode(claims(), signers[key], algorithm=alg)
    case(f"{alg} accepted", key, token, "ok", subject="alice", roles=["admin", "ops"])
case("RS256 with a PKCS#1 public key", "rsa_pkcs1",
     jwt.encode(claims(), rsa_key, algorithm="RS256"), "ok", subject="alice",
     roles=["admin", "ops"])

# Signed with the wrong key of the right family.
for alg, key in family.items():
    token = jwt.encode(claims(), other[key], algorithm=alg)
    case(f"{alg} signed with another key", key, token, "InvalidSignature")

# alg none, as PyJWT writes it.
case("alg none", "rsa", jwt.encode(claims(), None, algorithm="none"), "AlgNone")
case("alg none with an HMAC key", "hmac", jwt.encode(claims(), None, algorithm="none"), "AlgNone")

# Algorithm confusion: HS256 keyed with the configured public key's PEM text (PyJWT refuses to
# do this, so it is done by hand).
for key in ("rsa", "p256"):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(keys[key].encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    case(f"HS256 keyed with the {key} PEM", key, f"{header}.{body}.{b64url(mac)}",
         "AlgorithmNotAllowed")

# Tampered payload under a good signature.
for alg in ("HS256", "RS256", "PS256", "ES256", "ES512"):
    header, _, sig = jwt.encode(claims(), signers[family[alg]], algorithm=alg).split(".")
    body = b64url(json.dumps(claims(sub="mallory")).encode())
    case(f"{alg} with a changed payload", family[alg], f"{header}.{body}.{sig}",
         "InvalidSignature")

# All-zero ECDSA signatures (r = s = 0), and a DER signature where JWS wants r||s.
for alg, size in (("ES256", 64), ("ES384", 96), ("ES512", 132)):
    header, body, _ = jwt.encode(claims(), signers[family[alg]], algorithm=alg).split(".")
    case(f"{alg} all-zero signature", family[alg], f"{header}.{body}.{b64url(bytes(size))}",
         "InvalidSignature")
header, body, _ = jwt.encode(claims(), ec_keys["p256"], algorithm="ES256").split(".")
der = ec_keys["p256"].sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
case("ES256 DER-encoded signature", "p256", f"{header}.{body}.{b64url(der)}", "InvalidSignature")

# Claims.
for alg in ("HS256", "RS512", "ES384"):
    s = signers[family[alg]]
    k = family[alg]
    case(f"{alg} expired", k, jwt.encode(claims(exp=NOW - 3600), s, algorithm=alg), "Expired")
    case(f"{alg} expired within the skew", k,
         jwt.encode(claims(exp=NOW - 10), s, algorithm=alg), "ok", subject="alice",
         roles=["admin", "ops"])
    case(f"{alg} nbf in the future", k,
         jwt.encode(claims(nbf=NOW + 3600), s, algorithm=alg), "NotYetValid")
    case(f"{alg} iat in the future", k,
         jwt.encode(claims(iat=NOW + 3600), s, algorithm=alg), "IssuedInFuture")
    case(f"{alg} exp as a string", k,
         jwt.encode(claims(exp=str(NOW + 300)), s, algorithm=alg), "InvalidClaim:exp")
    case(f"{alg} nbf as a string", k,
         jwt.encode(claims(nbf=str(NOW)), s, algorithm=alg), "InvalidClaim:nbf")
    case(f"{alg} wrong audience", k,
         jwt.encode(claims(aud="someone-else"), s, algorithm=alg), "WrongAudience")
    case(f"{alg} wrong audience array", k,
         jwt.encode(claims(aud=["a", "b"]), s, algorithm=alg), "WrongAudience")
    case(f"{alg} audience array containing ours", k,
         jwt.encode(claims(aud=["a", AUD]), s, algorithm=alg), "ok", subject="alice",
         roles=["admin", "ops"])
    case(f"{alg} no audience", k, jwt.encode(claims(aud=None), s, algorithm=alg),
         "WrongAudience")
    case(f"{alg} wrong issuer", k,
         jwt.encode(claims(iss="https://evil.test"), s, algorithm=alg), "WrongIssuer")

# Roles: a comma string is split, never trimmed.
case("roles padded with whitespace", "hmac",
     jwt.encode(claims(roles=" admin , ops"), secret, algorithm="HS256"), "ok",
     subject="alice", roles=[" admin ", " ops"])
case("roles as a comma string", "rsa",
     jwt.encode(claims(roles="admin,ops"), rsa_key, algorithm="PS384"), "ok",
     subject="alice", roles=["admin", "ops"])

# Over 16 KiB, validly signed.
case("token over 16 KiB", "hmac",
     jwt.encode(claims(pad="x" * 17000), secret, algorithm="HS256"), "TooLarge")

json.dump({"pyjwt": jwt.__version__, "cryptography": cryptography.__version__, "keys": keys,
           "cases": cases}, sys.stdout)
