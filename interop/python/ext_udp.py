#!/usr/bin/python3
"""Drives tpm-u2f's CTAP 2.1/2.2 extensions over CTAPHID-over-UDP with
python-fido2: credBlob, largeBlobKey with authenticatorLargeBlobs (its
LargeBlobs class), hmac-secret-mc, thirdPartyPayment and
attestationFormatsPreference.
Usage: ext_udp.py HOST PORT

python-fido2 0.9 (Debian 12) lacks client-level support for most of
these: its Fido2Client hands the largeBlob extension the authData instead
of the attestation object, and it has no hmac-secret-mc,
thirdPartyPayment or attestationFormatsPreference. So the requests are
sent with its Ctap2 class (make_credential/get_assertion with raw
extension maps, send_cbor for makeCredential's 0x0B), its ClientPin and
PinProtocolV2 for the shared secret and the lbw token, and its LargeBlobs
class for the large-blob array (which 0.9 has)."""
import hashlib
import sys

from fido2.attestation import Attestation
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.blob import LargeBlobs
from fido2.ctap2.pin import ClientPin, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import HidDescriptor

from u2f_udp import UdpConnection, check
import u2f_udp

RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


def code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except CtapError as e:
        return e.code
    return 0


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    dev = CtapHidDevice(HidDescriptor("udp", 0, 0, 64, 64), UdpConnection(host, port))
    ctap = Ctap2(dev)
    info = ctap.info
    want = {"credProtect", "credBlob", "hmac-secret", "hmac-secret-mc", "largeBlobKey", "minPinLength", "thirdPartyPayment"}
    check("getInfo extensions", want <= set(info.extensions), str(info.extensions))
    check("getInfo largeBlobs option", info.options.get("largeBlobs") is True, str(info.options))
    check("getInfo maxCredBlobLength >= 32", (info.max_cred_blob_length or 0) >= 32, str(info.max_cred_blob_length))
    check("getInfo maxSerializedLargeBlobArray >= 4096", (info.max_large_blob or 0) >= 4096, str(info.max_large_blob))
    check("getInfo attestationFormats", info.data.get(0x16) == ["packed", "none"], str(info.data.get(0x16)))
    check("getInfo versions never FIDO_2_2", "FIDO_2_2" not in info.versions, str(info.versions))

    # A passkey with credBlob, largeBlobKey, hmac-secret and thirdPartyPayment.
    blob = b"\xcb" * 32
    cdh = hashlib.sha256(b"register").digest()
    att = ctap.make_credential(cdh, RP, {"id": b"user-1", "name": "alice"}, ES256,
                               extensions={"credBlob": blob, "largeBlobKey": True, "hmac-secret": True,
                                           "thirdPartyPayment": True},
                               options={"rk": True})
    Attestation.for_type(att.fmt)().verify(att.att_statement, att.auth_data, cdh)
    check("packed attestation verifies", True)
    ext = att.auth_data.extensions or {}
    check("credBlob stored (true)", ext.get("credBlob") is True, str(ext))
    check("hmac-secret true", ext.get("hmac-secret") is True, str(ext))
    check("thirdPartyPayment true at registration", ext.get("thirdPartyPayment") is True, str(ext))
    key = att.large_blob_key
    check("largeBlobKey: 32 bytes", key is not None and len(key) == 32)
    pub = att.auth_data.credential_data.public_key
    cred_id = att.auth_data.credential_data.credential_id

    # Large blobs through python-fido2's LargeBlobs, without a PIN.
    lb = LargeBlobs(ctap)
    check("initial large-blob array is empty", lb.read_blob_array() == [])
    lb.put_blob(key, b"hello, large blob")
    check("put_blob/get_blob round trip", lb.get_blob(key) == b"hello, large blob")

    cdh = hashlib.sha256(b"assert").digest()
    a = ctap.get_assertion(RP["id"], cdh, extensions={"getCredBlob": True, "largeBlobKey": True, "thirdPartyPayment": True})
    a.verify(cdh, pub)
    aext = a.auth_data.extensions or {}
    check("getAssertion signature verifies", True)
    check("getCredBlob returns the blob", aext.get("credBlob") == blob, str(aext))
    check("thirdPartyPayment true for the payment credential", aext.get("thirdPartyPayment") is True, str(aext))
    check("getAssertion largeBlobKey is the registration's", a.large_blob_key == key)

    # hmac-secret-mc: the output at registration equals getAssertion's.
    salt = b"\x5a" * 32
    proto = PinProtocolV2()
    cp = ClientPin(ctap, proto)
    ka, shared = cp._get_shared_secret()
    enc = proto.encrypt(shared, salt)
    cdh = hashlib.sha256(b"register mc").digest()
    att = ctap.make_credential(cdh, RP, {"id": b"user-2", "name": "bob"}, ES256,
                               extensions={"hmac-secret": True,
                                           "hmac-secret-mc": {1: ka, 2: enc, 3: proto.authenticate(shared, enc), 4: 2}})
    Attestation.for_type(att.fmt)().verify(att.att_statement, att.auth_data, cdh)
    mc_out = proto.decrypt(shared, att.auth_data.extensions["hmac-secret-mc"])
    ka, shared = cp._get_shared_secret()
    enc = proto.encrypt(shared, salt)
    cdh = hashlib.sha256(b"assert mc").digest()
    a = ctap.get_assertion(RP["id"], cdh, [{"type": "public-key", "id": att.auth_data.credential_data.credential_id}],
                           extensions={"hmac-secret": {1: ka, 2: enc, 3: proto.authenticate(shared, enc), 4: 2},
                                       "thirdPartyPayment": True})
    ga_out = proto.decrypt(shared, a.auth_data.extensions["hmac-secret"])
    check("hmac-secret-mc output equals getAssertion's hmac-secret", len(mc_out) == 32 and mc_out == ga_out)
    check("thirdPartyPayment false for another credential", a.auth_data.extensions.get("thirdPartyPayment") is False,
          str(a.auth_data.extensions))

    # attestationFormatsPreference (0x0B): "none" gives fmt none, empty attStmt.
    cdh = hashlib.sha256(b"none").digest()
    rsp = ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {1: cdh, 2: RP, 3: {"id": b"user-3", "name": "carol"}, 4: ES256,
                                                     0x0B: ["tpm", "none"]})
    check("attestationFormatsPreference none", rsp[1] == "none" and rsp[3] == {}, str(rsp.get(1)))

    # With a PIN, writes need a pinUvAuthToken with lbw.
    cp.set_pin("1234")
    ctap = Ctap2(dev)
    check("write without a token once a PIN is set: PUAT_REQUIRED",
          code(LargeBlobs(ctap).put_blob, key, b"x") == 0x36)  # PUAT_REQUIRED (0.9 names it PIN_REQUIRED)
    token = ClientPin(ctap, proto).get_pin_token("1234", ClientPin.PERMISSION.GET_ASSERTION, "example.com")
    check("write with a token without lbw: PIN_AUTH_INVALID",
          code(LargeBlobs(ctap, proto, token).put_blob, key, b"x") == CtapError.ERR.PIN_AUTH_INVALID)
    token = ClientPin(ctap, proto).get_pin_token("1234", ClientPin.PERMISSION.LARGE_BLOB_WRITE)
    LargeBlobs(ctap, proto, token).put_blob(key, b"written with lbw")
    check("write with lbw, read without a token", LargeBlobs(ctap).get_blob(key) == b"written with lbw")

    print("python-fido2 interop: %d passed, %d failed" % (u2f_udp.passed, u2f_udp.failed))
    return 1 if u2f_udp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
