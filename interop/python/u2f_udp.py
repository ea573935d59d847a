#!/usr/bin/python3
"""Drives tpm-u2f with python-fido2's own CTAPHID and CTAP1 code, and
verifies every signature. Usage: u2f_udp.py HOST PORT (CTAPHID over UDP), or
u2f_udp.py hidraw (the first FIDO device python-fido2 finds in /dev/hidraw*,
as in the QEMU guest suite).

The last line is "python-fido2 interop: N passed, M failed"; the exit code
is non-zero on any failure.
"""
import hashlib
import socket
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor


class UdpConnection(CtapHidConnection):
    """One 64-byte HID report per datagram."""

    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(10)  # a dead daemon fails the test, never hangs it
        self.sock.connect((host, port))

    def read_packet(self):
        return self.sock.recv(64)

    def write_packet(self, data):
        assert len(data) == 64
        self.sock.send(data)

    def close(self):
        self.sock.close()


passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok: " + name)
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail))


def polling(fn, *args, **kwargs):
    """Re-send while the key answers 'touch me' (0x6985), as clients do."""
    deadline = time.time() + 10
    while True:
        try:
            return fn(*args, **kwargs)
        except ApduError as e:
            if e.code != APDU.USE_NOT_SATISFIED or time.time() > deadline:
                raise
            time.sleep(0.1)


def apdu_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApduError as e:
        return e.code
    return APDU.OK


def main():
    if sys.argv[1] == "hidraw":
        devs = list(CtapHidDevice.list_devices())
        check("python-fido2 finds the key among /dev/hidraw*", len(devs) == 1, str(devs))
        if not devs:
            print("python-fido2 interop: %d passed, %d failed" % (passed, failed))
            return 1
        dev = devs[0]
        conn = dev._connection
    else:
        host, port = sys.argv[1], int(sys.argv[2])
        conn = UdpConnection(host, port)
        dev = CtapHidDevice(HidDescriptor("udp:%s:%d" % (host, port), 0, 0, 64, 64), conn)
    check("CTAPHID INIT by python-fido2", dev.version == 2, "version %r" % dev.version)
    check("PING echo through python-fido2's framing", dev.ping(b"x" * 200) == b"x" * 200)

    ctap1 = Ctap1(dev)
    check("U2F version", ctap1.get_version() == "U2F_V2")

    app = hashlib.sha256(b"https://example.com").digest()
    client = hashlib.sha256(b'{"typ":"navigator.id.finishEnrollment"}').digest()
    reg = polling(ctap1.register, client, app)
    try:
        reg.verify(app, client)
        check("registration signature verifies", True)
    except Exception as e:  # noqa: BLE001
        check("registration signature verifies", False, repr(e))
    cert = x509.load_der_x509_certificate(reg.certificate)
    cert_pub = cert.public_key().public_bytes(
        encoding=__import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.X962,
        format=__import__("cryptography.hazmat.primitives.serialization", fromlist=["PublicFormat"]).PublicFormat.UncompressedPoint,
    )
    check("attestation certificate is for the credential key", cert_pub == reg.public_key)
    try:
        cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
        check("attestation certificate is self-signed", True)
    except Exception as e:  # noqa: BLE001
        check("attestation certificate is self-signed", False, repr(e))
    check("key handle fits U2F (<= 255 bytes)", len(reg.key_handle) <= 255, str(len(reg.key_handle)))

    last = -1
    for i in range(2):
        chal = hashlib.sha256(b"challenge %d" % i).digest()
        sig = polling(ctap1.authenticate, chal, app, reg.key_handle)
        try:
            sig.verify(app, chal, reg.public_key)
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
        check("authentication %d signature verifies" % (i + 1), ok)
        check("authentication %d user presence set" % (i + 1), sig.user_presence & 1 == 1)
        check("counter increases (%d > %d)" % (sig.counter, last), sig.counter > last)
        last = sig.counter

    # The replay store: the very same request, answered once, is refused
    # (0x6A80) rather than signed a second time.
    code = apdu_code(ctap1.authenticate, chal, app, reg.key_handle)
    check("a replayed authentication is refused with 0x6A80", code == APDU.WRONG_DATA, hex(code))

    code = apdu_code(ctap1.authenticate, client, app, reg.key_handle, check_only=True)
    check("check-only on our handle answers 0x6985", code == APDU.USE_NOT_SATISFIED, hex(code))
    other = hashlib.sha256(b"https://evil.example").digest()
    code = apdu_code(ctap1.authenticate, client, other, reg.key_handle)
    check("another appID gets 0x6A80", code == APDU.WRONG_DATA, hex(code))
    flipped = bytearray(reg.key_handle)
    flipped[-1] ^= 1
    code = apdu_code(ctap1.authenticate, client, app, bytes(flipped))
    check("a bit-flipped key handle gets 0x6A80", code == APDU.WRONG_DATA, hex(code))
    code = apdu_code(ctap1.authenticate, client, app, b"\x01" * 64)
    check("a forged key handle gets 0x6A80", code == APDU.WRONG_DATA, hex(code))

    conn.close()
    print("python-fido2 interop: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
