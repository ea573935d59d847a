package tpm

import "github.com/google/go-tpm/tpm2"

// TestOnlyLegacyCredential makes a version-1 credential ID, as tpm-u2f did
// before IDs carried their policy, so that tests can show such IDs keep
// working with the semantics they had. Nothing but tests calls it.
func (e *Engine) TestOnlyLegacyCredential(rp [32]byte) ([]byte, error) {
	var id []byte
	err := e.op(func() error {
		pub, priv, h, _, err := e.createLoaded(credentialTemplate(rp))
		if err != nil {
			return err
		}
		e.flush(h)
		c := &credential{public: tpm2.Marshal(*pub), private: priv.Buffer}
		id = c.v1ID()
		return nil
	})
	return id, err
}
