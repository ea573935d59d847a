// Package tpm owns everything tpm-u2f does with the TPM 2.0: the connection
// and its backend (/dev/tpmrm0, the embedded reference simulator, swtpm over
// a socket), the per-installation storage primary and the reset epoch that
// binds it (epoch.go), credential keys that are generated inside the TPM
// and leave it only wrapped under that primary, the
// pool of salted HMAC sessions that signatures go through, and the monotonic
// signature counter kept in a TPM NV counter index.
//
// Commands are the go-tpm tpm2 command structs (TPM 2.0 Part 3), executed
// on a transport.TPM. An Engine serialises them: one command sequence in
// flight per connection, so the token never holds more than one credential
// key and one session loaded at a time and fits a TPM without a resource
// manager (3 object and 3 session slots).
//
// Errors are sorted as TPM 2.0 Part 2 section 6.6 describes: warnings that
// ask for a retry are retried with bounded backoff, resource exhaustion is
// waited out, and a session that failed is flushed and never reused
// (a lost session must never look like a wrong authorization).
package tpm
