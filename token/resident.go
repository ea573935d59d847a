package token

import "github.com/tpm-u2f/tpm-u2f/credstore"

// ResidentStore keeps discoverable credentials (package credstore's Store
// implements it).
type ResidentStore interface {
	// Put stores a credential, replacing one for the same RP and user id.
	Put(c credstore.Credential) error
	// List returns the credentials for an RP ID hash, newest first.
	List(rpIDHash [32]byte) ([]credstore.Credential, error)
	// Find looks a credential up by credential ID.
	Find(id []byte) (*credstore.Credential, bool)
	// Exists reports whether a credential for this RP and user is stored.
	Exists(rpID string, userID []byte) bool
	// All returns every credential, newest first.
	All() ([]credstore.Credential, error)
	// Delete removes the credential with this credential ID, for good.
	Delete(id []byte) error
	// Revoked reports whether id named a credential that was deleted or
	// replaced: such an ID never signs again.
	Revoked(id []byte) bool
	// Remaining is how many more credentials fit.
	Remaining() int
}
