package tpm

// RetagForTest rewrites a version-2 ID's policy byte and recomputes its
// tag with e's key: what someone who stole the tag key could forge.
func RetagForTest(e *Engine, id []byte, rp [32]byte, policy byte) []byte {
	out := append([]byte(nil), id...)
	out[1] = policy
	body := out[:len(out)-v2TagSize]
	copy(out[len(body):], idTag(e.idKey.Load(), rp, body))
	return out
}

// PublicLayoutForTest is the version-1 public layout.
var PublicLayoutForTest = publicLayout

// IDKeyForTest is e's credential ID tag key.
func IDKeyForTest(e *Engine) []byte { k := e.idKey.Load(); return append([]byte(nil), k[:]...) }

// undefineNV removes any owner index, as a TPM owner (or an attacker
// with owner authorization) can.
func (e *Engine) undefineNV(idx uint32) error {
	name, err := e.readNVPublic(idx)
	if err != nil {
		return err
	}
	return e.undefineNamed(idx, name)
}
