package replay

import (
	"crypto/sha256"
	"encoding/binary"
)

// keyDomain separates replay keys from every other SHA-256 the token
// computes, so a key can never equal some other hash of the same bytes.
const keyDomain = "tpm-u2f replay key v1\x00"

// Key hashes the parts of a request into a store key: SHA-256 over a
// domain prefix and each part preceded by its length (4 bytes, big
// endian), so that ("ab","c") and ("a","bc") give different keys. The
// caller decides the parts; they should cover the whole request
// (operation, rpIdHash, challenge or clientDataHash, credential ID,
// flags), not just the challenge, or distinct requests would collide
// (seed 001: Kerberos' timestamp-only cache refused legitimate requests).
func Key(parts ...[]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(keyDomain))
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}
