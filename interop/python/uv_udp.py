#!/usr/bin/python3
"""Drives tpm-u2f's built-in user verification (a fingerprint through
fprintd; the test serves a fake fprintd on a private system bus, scripted:
match, match, no match, match) over CTAPHID-over-UDP with python-fido2.

python-fido2 0.9.1 (Debian 12): Fido2Client uses built-in UV the CTAP 2.0
way (the "uv" option in makeCredential/getAssertion) when getInfo says uv
true; it never calls getPinUvAuthTokenUsingUvWithPermissions itself, but
its ClientPin has get_uv_token (0x06) and get_uv_retries (0x07), used
directly here. Usage: uv_udp.py HOST PORT"""
import hashlib
import sys

from fido2.client import Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2, Info
from fido2.ctap2.pin import ClientPin, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import HidDescriptor
from fido2.server import Fido2Server

from u2f_udp import UdpConnection, check
import u2f_udp

GA = ClientPin.PERMISSION.GET_ASSERTION


def main():
    host, port = sys.argv[1], int(sys.argv[2])

    def device():
        return CtapHidDevice(HidDescriptor("udp", 0, 0, 64, 64), UdpConnection(host, port))

    ctap = Ctap2(device())
    info = ctap.get_info()
    check("getInfo uv true (a reader with an enrolled finger)", info.options.get("uv") is True, str(info.options))
    check("getInfo pinUvAuthToken", info.options.get("pinUvAuthToken") is True, str(info.options))
    check("getInfo uvModality fingerprint", info.uv_modality == 2, str(info.uv_modality))
    check("getInfo preferredPlatformUvAttempts 1", info.data.get(Info.KEY.PREFERRED_PLATFORM_UV_ATTEMPTS) == 1, str(info.data))

    # A passkey with UV required and no PIN: the fingerprint (script: match).
    server = Fido2Server({"id": "example.com", "name": "Example"}, attestation="direct")
    client = Fido2Client(device(), "https://example.com")
    user = {"id": b"finger-user", "name": "fay"}
    opts, state = server.register_begin(user, resident_key=True, user_verification="required")
    result = client.make_credential(opts["publicKey"])
    auth_data = server.register_complete(state, result.client_data, result.attestation_object)
    check("passkey registered with a fingerprint (UV flag)", auth_data.is_user_verified())
    opts, state = server.authenticate_begin([auth_data.credential_data], user_verification="required")
    sel = client.get_assertion(opts["publicKey"])
    resp = sel.get_response(0)
    server.authenticate_complete(state, [auth_data.credential_data], resp.credential_id,
                                 resp.client_data, resp.authenticator_data, resp.signature)
    check("login with a fingerprint (UV flag), verified by Fido2Server", resp.authenticator_data.is_user_verified())

    cp = ClientPin(ctap, PinProtocolV2())
    check("getUVRetries 5", cp.get_uv_retries()[0] == 5)
    try:
        cp.get_uv_token(GA, "example.com")
        check("getPinUvAuthTokenUsingUvWithPermissions: a finger that does not match is UV_INVALID", False)
    except CtapError as e:
        check("getPinUvAuthTokenUsingUvWithPermissions: a finger that does not match is UV_INVALID",
              e.code == CtapError.ERR.UV_INVALID, str(e))
    check("getUVRetries 4 after a finger that did not match", cp.get_uv_retries()[0] == 4)
    token = cp.get_uv_token(GA, "example.com")
    check("getPinUvAuthTokenUsingUvWithPermissions with a match", len(token) == 32)
    check("getUVRetries back to 5 after a match", cp.get_uv_retries()[0] == 5)
    h = hashlib.sha256(b"uv token").digest()
    a = ctap.get_assertion("example.com", h, [{"type": "public-key", "id": auth_data.credential_data.credential_id}],
                           pin_uv_param=cp.protocol.authenticate(token, h), pin_uv_protocol=cp.protocol.VERSION)
    check("assertion with the UV token has the UV flag", a.auth_data.is_user_verified())

    print("python-fido2 uv interop: %d passed, %d failed" % (u2f_udp.passed, u2f_udp.failed))
    return 1 if u2f_udp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
