// Package interop holds tests in which real clients that nobody here wrote
// (python-fido2 today; libfido2 and browsers in the QEMU guest suite)
// talk to the real tpm-u2f daemon.
package interop
