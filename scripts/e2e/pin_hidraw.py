#!/usr/bin/python3
"""pin_hidraw.py PIN RP_ID DELETE_RP_ID: python-fido2's ClientPin and
CredentialManagement against the first FIDO device it finds itself
(CtapHidDevice.list_devices(), the real /dev/hidraw node in the e2e guest),
after a PIN has been set: the retries, then, under each PIN/UV auth
protocol, a pinUvAuthToken with the credentialManagement permission,
getCredsMetadata and the RP list (which must hold RP_ID and DELETE_RP_ID);
then the one credential of DELETE_RP_ID is enumerated and deleted, and the
RP list and the count must show it gone; last, a passkey registered and
used through python-fido2's Fido2Client and verified by its Fido2Server.
Never sends a wrong PIN. The last line is
"python-fido2 pin: N passed, M failed"; the exit code is non-zero on any
failure.
"""
import hashlib
import sys

from fido2.ctap2 import Ctap2
from fido2.ctap2.credman import CredentialManagement
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.client import Fido2Client
from fido2.hid import CtapHidDevice
from fido2.server import Fido2Server

pin, rp_id, del_rp_id = sys.argv[1], sys.argv[2], sys.argv[3]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok: %s %s" % (name, detail))
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail))


try:
    devs = list(CtapHidDevice.list_devices())
    check("one device found", len(devs) == 1, str([d.descriptor.path for d in devs]))
    ctap = Ctap2(devs[0])
    info = ctap.info
    check("getInfo FIDO_2_1", "FIDO_2_1" in info.versions, str(info.versions))
    check("getInfo clientPin true", info.options.get("clientPin") is True, str(info.options))
    check("getInfo pin protocols 2 and 1", set(info.pin_uv_protocols) >= {1, 2}, str(info.pin_uv_protocols))
    retries, power_cycle = ClientPin(ctap).get_pin_retries()
    check("get_pin_retries 8", retries == 8, "retries=%r powerCycleState=%r" % (retries, power_cycle))
    R = CredentialManagement.RESULT
    for proto in (PinProtocolV1(), PinProtocolV2()):
        v = "protocol %d" % proto.VERSION
        token = ClientPin(ctap, proto).get_pin_token(pin, ClientPin.PERMISSION.CREDENTIAL_MGMT)
        cm = CredentialManagement(ctap, proto, token)
        meta = cm.get_metadata()
        existing, remaining = meta.get(R.EXISTING_CRED_COUNT), meta.get(R.MAX_REMAINING_COUNT)
        check(v + " get_metadata", isinstance(existing, int) and existing >= 1 and isinstance(remaining, int),
              "existing=%r remaining=%r" % (existing, remaining))
        rps = [r[R.RP]["id"] for r in cm.enumerate_rps()]
        check(v + " enumerate_rps has " + rp_id + " and " + del_rp_id, rp_id in rps and del_rp_id in rps, str(rps))
    # Delete DELETE_RP_ID's credential (under protocol 2, the last token).
    creds = cm.enumerate_creds(hashlib.sha256(del_rp_id.encode()).digest())
    check("enumerate_creds " + del_rp_id + ": one", len(creds) == 1,
          str([(c[R.USER].get("name"), c[R.CREDENTIAL_ID]["id"].hex()[:16]) for c in creds]))
    cm.delete_cred(creds[0][R.CREDENTIAL_ID])
    rps = [r[R.RP]["id"] for r in cm.enumerate_rps()]
    check("after delete_cred: " + del_rp_id + " gone, " + rp_id + " kept", del_rp_id not in rps and rp_id in rps, str(rps))
    after = cm.get_metadata().get(R.EXISTING_CRED_COUNT)
    check("after delete_cred: existing count one less", after == existing - 1, "%r -> %r" % (existing, after))
    retries, _ = ClientPin(ctap).get_pin_retries()
    check("retries still 8", retries == 8, "retries=%r" % retries)

    # A passkey through python-fido2's own client and server over hidraw:
    # registration with the PIN, then a login without naming the user.
    server = Fido2Server({"id": "hidraw.example", "name": "hidraw"}, attestation="direct")
    client = Fido2Client(devs[0], "https://hidraw.example")
    user = {"id": b"hidraw-user", "name": "hana"}
    opts, state = server.register_begin(user, resident_key=True, user_verification="required")
    made = client.make_credential(opts["publicKey"], pin=pin)
    auth_data = server.register_complete(state, made.client_data, made.attestation_object)
    check("passkey registration over hidraw verified by Fido2Server (UV)", auth_data.is_user_verified())
    opts, state = server.authenticate_begin(user_verification="required")
    sel = client.get_assertion(opts["publicKey"], pin=pin)
    got = sel.get_response(0)
    server.authenticate_complete(state, [auth_data.credential_data], got.credential_id,
                                 got.client_data, got.authenticator_data, got.signature)
    check("discoverable login over hidraw verified by Fido2Server", got.user_handle == b"hidraw-user", repr(got.user_handle))
except Exception as e:  # noqa: BLE001 - any error is a failed test
    import traceback
    traceback.print_exc()
    check("no exception", False, repr(e))

print("python-fido2 pin: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
