// Package credstore owns the discoverable (resident) credentials: a bbolt
// database in the state directory (0600, fsync on every commit) whose
// entries say nothing to whoever copies the disk. An entry's key is an HMAC
// of (rpIdHash, user id) and its value is AES-256-GCM ciphertext of the
// credential's metadata (RP ID, user id, names), both under keys derived
// from a 32-byte secret that the TPM seals (package tpm): without this
// installation's TPM the file reveals neither sites nor account names.
//
// Beside the entries it keeps two HMAC-keyed indexes: credential ID to
// entry (so a lookup by ID decrypts one entry, not all), and the IDs of
// credentials that were deleted or replaced, which must never sign again
// even when a relying party names them (Revoked).
//
// A Store is safe for concurrent use (bbolt serialises writers).
package credstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"
)

// Credential is one discoverable credential.
type Credential struct {
	ID          []byte    `cbor:"1,keyasint"` // the TPM credential ID
	RPID        string    `cbor:"2,keyasint"`
	UserID      []byte    `cbor:"3,keyasint"`
	UserName    string    `cbor:"4,keyasint,omitempty"`
	DisplayName string    `cbor:"5,keyasint,omitempty"`
	CredProtect uint8     `cbor:"6,keyasint,omitempty"`
	Created     time.Time `cbor:"7,keyasint"`
	RPName      string    `cbor:"8,keyasint,omitempty"`
	// CredBlob is the credBlob extension's value (CTAP 2.1 section 12.2),
	// encrypted with the rest of the entry.
	CredBlob []byte `cbor:"9,keyasint,omitempty"`
}

var (
	// ErrFull: the store holds its maximum number of credentials.
	ErrFull = errors.New("credstore: full")
	// ErrCorrupt: an entry does not decrypt under our key.
	ErrCorrupt = errors.New("credstore: entry does not decrypt (damaged, or another installation's)")
)

var (
	bucket        = []byte("credentials-v1")
	idIndexBucket = []byte("by-id-v1")       // idKey(id) -> entry key
	revokedBucket = []byte("revoked-ids-v1") // idKey(id) -> empty
)

// encMode keeps creation times to the nanosecond: whole seconds (the
// library's default) would tie credentials made in the same second, and
// "newest first" would become random.
var encMode = func() cbor.EncMode {
	m, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
	if err != nil {
		panic(err) // static options
	}
	return m
}()

// Store is the credential database.
type Store struct {
	db   *bolt.DB
	keys atomic.Pointer[storeKeys] // replaced whole by Reset
	max  int
}

type storeKeys struct {
	aead   cipher.AEAD
	macKey []byte
}

func newKeys(secret []byte) *storeKeys {
	block, _ := aes.NewCipher(derive(secret, "tpm-u2f credstore encryption"))
	aead, _ := cipher.NewGCM(block)
	return &storeKeys{aead: aead, macKey: derive(secret, "tpm-u2f credstore index")}
}

// Open opens (or creates) the database at path with the sealed secret and
// a maximum number of credentials.
func Open(path string, secret []byte, max int) (*Store, error) {
	if len(secret) != 32 {
		return nil, errors.New("credstore: secret must be 32 bytes")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("credstore: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, max: max}
	s.keys.Store(newKeys(secret))
	if err := db.Update(s.createBuckets); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// createBuckets creates what is missing. A store written before the ID
// index existed gets it built from its entries.
func (s *Store) createBuckets(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(revokedBucket); err != nil {
		return err
	}
	if tx.Bucket(idIndexBucket) != nil {
		return nil
	}
	idx, err := tx.CreateBucket(idIndexBucket)
	if err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		if c, err := s.Decode(k, v); err == nil {
			return idx.Put(s.idKey(c.ID), k)
		}
		return nil
	})
}

func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// entryKey is where a (RP, user) pair lives: one credential per user per
// RP, as CTAP requires.
func (s *Store) entryKey(rpIDHash [32]byte, userID []byte) []byte {
	m := hmac.New(sha256.New, s.keys.Load().macKey)
	m.Write(rpIDHash[:])
	m.Write(userID)
	return m.Sum(nil)
}

// idKey is where a credential ID lives in the ID index and the revoked
// list.
func (s *Store) idKey(id []byte) []byte {
	m := hmac.New(sha256.New, s.keys.Load().macKey)
	m.Write([]byte("credential id\x00"))
	m.Write(id)
	return m.Sum(nil)
}

func (s *Store) seal(key []byte, c *Credential) ([]byte, error) {
	plain, err := encMode.Marshal(c)
	if err != nil {
		return nil, err
	}
	aead := s.keys.Load().aead
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, key), nil
}

// Decode decrypts and decodes one entry. It never panics on bad input.
func (s *Store) Decode(key, value []byte) (*Credential, error) {
	aead := s.keys.Load().aead
	ns := aead.NonceSize()
	if len(value) < ns+aead.Overhead() {
		return nil, ErrCorrupt
	}
	plain, err := aead.Open(nil, value[:ns], value[ns:], key)
	if err != nil {
		return nil, ErrCorrupt
	}
	var c Credential
	if err := cbor.Unmarshal(plain, &c); err != nil || c.ID == nil {
		return nil, ErrCorrupt
	}
	return &c, nil
}

// Put stores c, replacing any credential for the same RP and user in the
// same transaction (CTAP 2.1 section 6.1.2 step 17).
func (s *Store) Put(c Credential) error {
	rpHash := sha256.Sum256([]byte(c.RPID))
	key := s.entryKey(rpHash, c.UserID)
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		old := b.Get(key)
		if old == nil && b.Stats().KeyN >= s.max {
			return ErrFull
		}
		if old != nil {
			// The replaced credential is gone for good (CTAP 2.1 section
			// 6.1.2 step 17: "overwrite").
			if prev, err := s.Decode(key, old); err == nil && !bytes.Equal(prev.ID, c.ID) {
				if err := s.revoke(tx, prev.ID); err != nil {
					return err
				}
			}
		}
		v, err := s.seal(key, &c)
		if err != nil {
			return err
		}
		if err := tx.Bucket(idIndexBucket).Put(s.idKey(c.ID), key); err != nil {
			return err
		}
		return b.Put(key, v)
	})
}

// revoke drops id from the index and lists it as never to sign again.
func (s *Store) revoke(tx *bolt.Tx, id []byte) error {
	k := s.idKey(id)
	if err := tx.Bucket(idIndexBucket).Delete(k); err != nil {
		return err
	}
	return tx.Bucket(revokedBucket).Put(k, []byte{})
}

// Revoked reports whether id named a credential that was deleted or
// replaced.
func (s *Store) Revoked(id []byte) bool {
	k := s.idKey(id)
	found := false
	s.db.View(func(tx *bolt.Tx) error { found = tx.Bucket(revokedBucket).Get(k) != nil; return nil })
	return found
}

// Exists reports whether a credential for this RP and user is stored (a
// Put then replaces rather than adds).
func (s *Store) Exists(rpID string, userID []byte) bool {
	key := s.entryKey(sha256.Sum256([]byte(rpID)), userID)
	found := false
	s.db.View(func(tx *bolt.Tx) error { found = tx.Bucket(bucket).Get(key) != nil; return nil })
	return found
}

// List returns every credential for rpIDHash, newest first. Entries that
// do not decrypt are skipped (and counted in the error, which is returned
// with whatever was found).
func (s *Store) List(rpIDHash [32]byte) ([]Credential, error) {
	all, err := s.All()
	var out []Credential
	for _, c := range all {
		if sha256.Sum256([]byte(c.RPID)) == rpIDHash {
			out = append(out, c)
		}
	}
	return out, err
}

// All returns every credential, newest first.
func (s *Store) All() ([]Credential, error) {
	var out []Credential
	bad := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			c, err := s.Decode(k, v)
			if err != nil {
				bad++
				return nil
			}
			out = append(out, *c)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	if err == nil && bad > 0 {
		err = fmt.Errorf("%w: %d entries", ErrCorrupt, bad)
	}
	return out, err
}

// Find returns the credential with this credential ID, if it is stored.
func (s *Store) Find(id []byte) (*Credential, bool) {
	var c *Credential
	s.db.View(func(tx *bolt.Tx) error {
		key := tx.Bucket(idIndexBucket).Get(s.idKey(id))
		if key == nil {
			return nil
		}
		if v := tx.Bucket(bucket).Get(key); v != nil {
			if found, err := s.Decode(key, v); err == nil && bytes.Equal(found.ID, id) {
				c = found
			}
		}
		return nil
	})
	return c, c != nil
}

// Remaining is how many more credentials fit.
func (s *Store) Remaining() int {
	n := 0
	s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucket).Stats().KeyN; return nil })
	return max(s.max-n, 0)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Reset deletes every credential and re-keys the store with a new secret
// (authenticatorReset).
func (s *Store) Reset(secret []byte) error {
	if len(secret) != 32 {
		return errors.New("credstore: secret must be 32 bytes")
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucket, idIndexBucket, revokedBucket} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		return s.createBuckets(tx) // empty: nothing is keyed yet
	}); err != nil {
		return err
	}
	s.keys.Store(newKeys(secret))
	return nil
}

// Prune deletes every entry that does not decrypt under the store's key
// and returns how many it deleted. Such entries can never be read again
// (the key is derived from the secret the TPM sealed for this identity):
// a credentials.db restored from before a reset, or left by a crash
// between re-keying and wiping. Left in place they would fill the store
// for good: Remaining (getInfo's remainingDiscoverableCredentials,
// credentialManagement's metadata) counts every entry.
func (s *Store) Prune() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var bad [][]byte
		b.ForEach(func(k, v []byte) error {
			if _, err := s.Decode(k, v); err != nil {
				bad = append(bad, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range bad {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(bad)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ErrNotFound: no stored credential matches.
var ErrNotFound = errors.New("credstore: no such credential")

// Delete removes the credential with this credential ID; the ID is
// revoked for good.
func (s *Store) Delete(id []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		key := tx.Bucket(idIndexBucket).Get(s.idKey(id))
		if key == nil {
			return ErrNotFound
		}
		key = append([]byte(nil), key...)
		if err := s.revoke(tx, id); err != nil {
			return err
		}
		return tx.Bucket(bucket).Delete(key)
	})
}
