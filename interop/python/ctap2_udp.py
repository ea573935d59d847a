#!/usr/bin/python3
"""Drives tpm-u2f's (experimental) CTAP2 over CTAPHID-over-UDP with
python-fido2's Ctap2 class, and verifies the attestation and assertions
with python-fido2's own verifiers. Usage: ctap2_udp.py HOST PORT."""
import hashlib
import os
import sys

from fido2.attestation import Attestation
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice
from fido2.hid.base import HidDescriptor

from u2f_udp import UdpConnection, check
import u2f_udp


def code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except CtapError as e:
        return e.code
    return 0


def cose_verify(key, message, signature):
    """Verifies a signature with a COSE key (RFC 9053, RFC 8230) using
    pyca/cryptography directly."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    alg = key[3]
    h = {-35: hashes.SHA384(), -36: hashes.SHA512()}.get(alg, hashes.SHA256())
    try:
        if key[1] == 2:
            curve = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}[key[-1]]
            pub = ec.EllipticCurvePublicNumbers(int.from_bytes(key[-2], "big"), int.from_bytes(key[-3], "big"),
                                                curve).public_key()
            pub.verify(signature, message, ec.ECDSA(h))
        else:
            pub = rsa.RSAPublicNumbers(int.from_bytes(key[-2], "big"), int.from_bytes(key[-1], "big")).public_key()
            pad = (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) if alg == -37
                   else padding.PKCS1v15())
            pub.verify(signature, message, pad, h)
        return True
    except InvalidSignature:
        return False


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    dev = CtapHidDevice(HidDescriptor("udp", 0, 0, 64, 64), UdpConnection(host, port))
    check("CBOR capability advertised", dev.capabilities & 0x04 == 0x04)
    ctap = Ctap2(dev)
    info = ctap.get_info()
    check("getInfo versions", "FIDO_2_0" in info.versions and "U2F_V2" in info.versions, str(info.versions))
    check("getInfo AAGUID is 16 bytes", len(info.aaguid) == 16)

    rp = {"id": "example.com", "name": "Example"}
    user = {"id": b"user-1", "name": "alice", "displayName": "Alice"}
    cdh = hashlib.sha256(b"make credential").digest()
    att = ctap.make_credential(cdh, rp, user, [{"type": "public-key", "alg": -7}])
    check("attestation format packed", att.fmt == "packed", att.fmt)
    try:
        Attestation.for_type(att.fmt)().verify(att.att_statement, att.auth_data, cdh)
        check("packed self-attestation verified by python-fido2", True)
    except Exception as e:  # noqa: BLE001
        check("packed self-attestation verified by python-fido2", False, repr(e))
    cred = att.auth_data.credential_data
    check("credential ID fits 255 bytes", len(cred.credential_id) <= 255)
    desc = [{"type": "public-key", "id": cred.credential_id}]

    last = -1
    for i in range(2):
        h = hashlib.sha256(b"assert %d" % i).digest()
        a = ctap.get_assertion("example.com", h, desc)
        try:
            a.verify(h, cred.public_key)
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        check("assertion %d verifies" % (i + 1), ok)
        check("assertion %d counter increases" % (i + 1), a.auth_data.counter > last)
        check("assertion %d user present" % (i + 1), a.auth_data.is_user_present())
        last = a.auth_data.counter
    check("replayed getAssertion refused (OPERATION_DENIED)",
          code(ctap.get_assertion, "example.com", h, desc) == CtapError.ERR.OPERATION_DENIED)
    silent = ctap.get_assertion("example.com", hashlib.sha256(b"silent").digest(), desc, options={"up": False})
    check("silent assertion has UP clear", not silent.auth_data.is_user_present())
    check("another RP gets NO_CREDENTIALS",
          code(ctap.get_assertion, "evil.example", h, desc) == CtapError.ERR.NO_CREDENTIALS)
    check("excluded credential gets CREDENTIAL_EXCLUDED",
          code(ctap.make_credential, cdh, rp, user, [{"type": "public-key", "alg": -7}], exclude_list=desc)
          == CtapError.ERR.CREDENTIAL_EXCLUDED)
    # Every allowList entry is considered: a credential of another key
    # (here, one shaped like ours) named first does not hide ours.
    foreign = {"type": "public-key", "id": bytes([2, 0, 1]) + os.urandom(64 + 126 + 16)}
    h = hashlib.sha256(b"foreign first").digest()
    a = ctap.get_assertion("example.com", h, [foreign] + desc)
    check("allowList [foreign, ours] signs with ours", a.credential["id"] == cred.credential_id)
    # credProtect comes with the credential ID: a non-discoverable
    # credProtect=3 credential needs UV even when named.
    att_uv = ctap.make_credential(hashlib.sha256(b"cp3").digest(), rp, {"id": b"user-uv", "name": "uv"},
                                  [{"type": "public-key", "alg": -7}], extensions={"credProtect": 3})
    desc_uv = [{"type": "public-key", "id": att_uv.auth_data.credential_data.credential_id}]
    check("non-discoverable credProtect=3 named without UV gets NO_CREDENTIALS",
          code(ctap.get_assertion, "example.com", hashlib.sha256(b"cp3 assert").digest(), desc_uv)
          == CtapError.ERR.NO_CREDENTIALS)
    check("EdDSA-only request gets UNSUPPORTED_ALGORITHM (no TPM here has EdDSA)",
          code(ctap.make_credential, cdh, rp, user, [{"type": "public-key", "alg": -8}])
          == CtapError.ERR.UNSUPPORTED_ALGORITHM)
    # Every algorithm getInfo lists: a registration attested in it and an
    # assertion, both verified with pyca/cryptography from the COSE key
    # (python-fido2 0.9 has no ES384/ES512, and verifies PS256 with the
    # largest salt where RFC 8230 and the TPM use the hash's length).
    algs = [p["alg"] for p in info.algorithms]
    check("getInfo lists ES256, ES384, ES512, RS256 and PS256", set(algs) >= {-7, -35, -36, -257, -37}, str(algs))
    for alg in algs:
        h = hashlib.sha256(b"alg %d" % alg).digest()
        att = ctap.make_credential(h, {"id": "alg.example", "name": "Alg"}, {"id": b"alg", "name": "alg"},
                                   [{"type": "public-key", "alg": alg}])
        cd = att.auth_data.credential_data
        check("alg %d: credential key and attestation in that algorithm" % alg,
              cd.public_key[3] == alg and att.att_statement.get("alg") == alg)
        check("alg %d: packed self-attestation verifies" % alg,
              cose_verify(cd.public_key, bytes(att.auth_data) + h, att.att_statement["sig"]))
        a = ctap.get_assertion("alg.example", h, [{"type": "public-key", "id": cd.credential_id}])
        check("alg %d: assertion verifies" % alg, cose_verify(cd.public_key, bytes(a.auth_data) + h, a.signature))

    # Discoverable credentials: two accounts at one RP, found without an
    # allowList, the second through getNextAssertion.
    check("getInfo says rk", info.options.get("rk") is True, str(info.options))
    rp2 = {"id": "passkeys.example", "name": "Passkeys"}
    keys, ids = {}, {}
    for uid, name in ((b"user-a", "ann"), (b"user-b", "ben")):
        att = ctap.make_credential(hashlib.sha256(name.encode()).digest(), rp2, {"id": uid, "name": name},
                                   [{"type": "public-key", "alg": -7}], options={"rk": True})
        keys[uid] = att.auth_data.credential_data.public_key
        ids[uid] = att.auth_data.credential_data.credential_id
    # A credProtect=3 (UV required) credential must not be discoverable without UV.
    att3 = ctap.make_credential(cdh, rp2, {"id": b"user-c", "name": "cat"}, [{"type": "public-key", "alg": -7}],
                                extensions={"credProtect": 3}, options={"rk": True})
    check("credProtect returned in the extension output", att3.auth_data.extensions == {"credProtect": 3},
          str(att3.auth_data.extensions))
    h = hashlib.sha256(b"discover").digest()
    first = ctap.get_assertion("passkeys.example", h)
    check("discoverable login: two credentials", first.number_of_credentials == 2, str(first.number_of_credentials))
    second = ctap.get_next_assertion()
    seen = set()
    for a in (first, second):
        uid = a.user["id"]
        seen.add(uid)
        try:
            a.verify(h, keys[uid])
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        check("discovered assertion for %s verifies" % uid.decode(), ok)
        check("no user names without user verification", set(a.user.keys()) == {"id"}, str(a.user))
    check("both accounts, newest first", [first.user["id"], second.user["id"]] == [b"user-b", b"user-a"])
    check("no third getNextAssertion", code(ctap.get_next_assertion) == CtapError.ERR.NOT_ALLOWED)
    # Registering again for the same user replaces the credential.
    ctap.make_credential(hashlib.sha256(b"again").digest(), rp2, {"id": b"user-a", "name": "ann"},
                         [{"type": "public-key", "alg": -7}], options={"rk": True})
    again = ctap.get_assertion("passkeys.example", hashlib.sha256(b"discover 2").digest())
    check("same RP and user replaces, not adds", again.number_of_credentials == 2, str(again.number_of_credentials))
    check("the replaced credential never signs again, even when named",
          code(ctap.get_assertion, "passkeys.example", hashlib.sha256(b"replaced").digest(),
               [{"type": "public-key", "id": ids[b"user-a"]}]) == CtapError.ERR.NO_CREDENTIALS)

    print("python-fido2 ctap2 interop: %d passed, %d failed" % (u2f_udp.passed, u2f_udp.failed))
    return 1 if u2f_udp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
