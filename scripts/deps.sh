#!/usr/bin/env bash
# Checks the Debian packages tpm-u2f builds and tests with, and installs the
# missing ones when run as root (as on CI and a fresh Debian machine).
# Otherwise it prints the one apt-get line to run.
set -euo pipefail

# gcc + libssl-dev: the embedded TPM simulator (cgo).
# swtpm: the swtpm backend tests. python3-fido2: the interop tests.
# dbus-daemon: the desktop prompt tests (a private session bus).
# flatpak: the doctor's Flatpak check against a real flatpak (a private
# installation in a temporary directory; it pulls in bubblewrap).
# pinentry-curses: the doctor shows it cannot ask without a terminal.
# fprintd + python3-dbusmock: the fingerprint UV against the real fprintd
# and libfprint's virtual reader, polkit mocked (uv/fprintd/realfprintd_test.go).
pkgs=(gcc libc6-dev libssl-dev swtpm swtpm-tools python3-fido2 dbus-daemon flatpak pinentry-curses fprintd python3-dbusmock)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
