#!/usr/bin/python3
"""Drives tpm-u2f's authenticatorConfig over CTAPHID-over-UDP with
python-fido2's own Config class (fido2.ctap2.config, present in Debian's
0.9.1): toggle_always_uv and set_min_pin_length with a pinUvAuthToken
carrying the acfg permission, getInfo reflecting them, a PIN shorter than
the minimum refused, forcePINChange forcing a change, U2F off while
alwaysUv is on; and CTAP 2.2's persistent read-only credential
management token.
Usage: config_udp.py HOST PORT"""
import hashlib
import sys

from fido2.ctap import CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2
from fido2.ctap2.config import Config
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import HidDescriptor

from u2f_udp import UdpConnection, check
import u2f_udp

ACFG = ClientPin.PERMISSION.AUTHENTICATOR_CFG
MC = ClientPin.PERMISSION.MAKE_CREDENTIAL


def code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except CtapError as e:
        return e.code
    return 0


def main():
    host, port = sys.argv[1], int(sys.argv[2])

    def device():
        return CtapHidDevice(HidDescriptor("udp", 0, 0, 64, 64), UdpConnection(host, port))

    dev = device()
    ctap = Ctap2(dev)
    info = ctap.info
    check("getInfo authnrCfg", info.options.get("authnrCfg") is True, str(info.options))
    check("getInfo alwaysUv false, setMinPINLength true",
          info.options.get("alwaysUv") is False and info.options.get("setMinPINLength") is True, str(info.options))
    check("getInfo maxRPIDsForSetMinPINLength 4", info.max_rpids_for_min_pin == 4, str(info.max_rpids_for_min_pin))
    check("getInfo U2F_V2 while alwaysUv is off", "U2F_V2" in info.versions, str(info.versions))

    ClientPin(ctap, PinProtocolV2()).set_pin("123456")
    ctap = Ctap2(dev)

    for proto in (PinProtocolV1(), PinProtocolV2()):
        token = ClientPin(ctap, proto).get_pin_token("123456", ACFG)
        cfg = Config(ctap, proto, token)
        cfg.toggle_always_uv()
        info = ctap.get_info()
        check("toggle_always_uv on (protocol %d): getInfo alwaysUv, makeCredUvNotRqd false, no U2F_V2" % proto.VERSION,
              info.options.get("alwaysUv") is True and info.options.get("makeCredUvNotRqd") is False
              and "U2F_V2" not in info.versions, "%s %s" % (info.options, info.versions))
        cdh = hashlib.sha256(b"always uv").digest()
        check("makeCredential without UV while alwaysUv: PUAT_REQUIRED",
              code(ctap.make_credential, cdh, {"id": "example.com"}, {"id": b"u", "name": "u"},
                   [{"type": "public-key", "alg": -7}]) == 0x36)  # PUAT_REQUIRED (0.9 calls it PIN_REQUIRED)
        check("U2F while alwaysUv: CTAPHID_MSG refused (INVALID_COMMAND)",
              code(Ctap1(dev).get_version) == CtapError.ERR.INVALID_COMMAND)
        mc = ClientPin(ctap, proto).get_pin_token("123456", MC, "example.com")
        att = ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"u", "name": "u"},
                                   [{"type": "public-key", "alg": -7}],
                                   pin_uv_param=proto.authenticate(mc, cdh), pin_uv_protocol=proto.VERSION)
        check("makeCredential with UV while alwaysUv", att.auth_data.is_user_verified())
        token = ClientPin(ctap, proto).get_pin_token("123456", ACFG)
        Config(ctap, proto, token).toggle_always_uv()
        info = ctap.get_info()
        check("toggle_always_uv off (protocol %d)" % proto.VERSION,
              info.options.get("alwaysUv") is False and "U2F_V2" in info.versions)
        check("U2F again once alwaysUv is off", Ctap1(dev).get_version() == "U2F_V2")

    token = ClientPin(ctap, PinProtocolV2()).get_pin_token("123456", ACFG)
    check("a token without acfg cannot configure: PIN_AUTH_INVALID",
          code(Config(ctap, PinProtocolV2(), ClientPin(ctap, PinProtocolV2()).get_pin_token("123456", MC, "example.com")).toggle_always_uv)
          == CtapError.ERR.PIN_AUTH_INVALID)
    token = ClientPin(ctap, PinProtocolV2()).get_pin_token("123456", ACFG)
    cfg = Config(ctap, PinProtocolV2(), token)
    cfg.set_min_pin_length(6, rp_ids=["example.com"])
    info = ctap.get_info()
    check("set_min_pin_length 6: getInfo minPINLength 6, no forced change for a 6-digit PIN",
          info.min_pin_length == 6 and not info.force_pin_change, "%d %s" % (info.min_pin_length, info.force_pin_change))
    check("lowering the minimum: PIN_POLICY_VIOLATION",
          code(cfg.set_min_pin_length, 5) == CtapError.ERR.PIN_POLICY_VIOLATION)
    cfg.set_min_pin_length(8)
    info = ctap.get_info()
    check("set_min_pin_length 8 above the PIN's length: forcePINChange",
          info.min_pin_length == 8 and info.force_pin_change, "%d %s" % (info.min_pin_length, info.force_pin_change))
    check("getPinToken while forcePINChange: PIN_POLICY_VIOLATION",
          code(ClientPin(ctap, PinProtocolV2()).get_pin_token, "123456", MC, "example.com") == CtapError.ERR.PIN_POLICY_VIOLATION)
    check("changePIN to 7 characters under the minimum 8: PIN_POLICY_VIOLATION",
          code(ClientPin(ctap, PinProtocolV2()).change_pin, "123456", "1234567") == CtapError.ERR.PIN_POLICY_VIOLATION)
    ClientPin(ctap, PinProtocolV2()).change_pin("123456", "12345678")
    info = ctap.get_info()
    check("changePIN clears forcePINChange", not info.force_pin_change)
    check("a token after changePIN",
          len(ClientPin(ctap, PinProtocolV2()).get_pin_token("12345678", MC, "example.com")) == 32)

    # CTAP 2.2's persistent read-only credential management token (pcmr,
    # 0x40: python-fido2 0.9 has no name for it, the number works).
    check("getInfo perCredMgmtRO", ctap.get_info().options.get("perCredMgmtRO") is True)
    cp = ClientPin(ctap, PinProtocolV2())
    mc = cp.get_pin_token("12345678", MC, "example.com")
    cdh = hashlib.sha256(b"rk").digest()
    ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"rk", "name": "rk"},
                         [{"type": "public-key", "alg": -7}], options={"rk": True},
                         pin_uv_param=PinProtocolV2().authenticate(mc, cdh), pin_uv_protocol=2)
    pcmr = cp.get_pin_token("12345678", 0x40)
    cm = CredentialManagement(ctap, PinProtocolV2(), pcmr)
    meta = cm.get_metadata()
    check("pcmr token: getCredsMetadata", meta[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 1, str(meta))
    creds = cm.enumerate_creds(hashlib.sha256(b"example.com").digest())
    check("pcmr token: enumerateCredentials", len(creds) == 1)
    check("pcmr token used again: getCredsMetadata", cm.get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 1)
    check("pcmr token cannot delete: PIN_AUTH_INVALID",
          code(cm.delete_cred, creds[0][CredentialManagement.RESULT.CREDENTIAL_ID]) == CtapError.ERR.PIN_AUTH_INVALID)

    print("python-fido2 interop: %d passed, %d failed" % (u2f_udp.passed, u2f_udp.failed))
    return 1 if u2f_udp.failed else 0


if __name__ == "__main__":
    sys.exit(main())
