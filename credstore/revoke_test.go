package credstore

import (
	"bytes"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Deleted and replaced credentials are revoked: the token refuses them
// even when a relying party names them in an allowList.
func TestDeletedAndReplacedAreRevoked(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "credentials.db"), secret(1), 10)
	a, b := cred("example.org", "u1", "alice", 1), cred("example.org", "u2", "bob", 2)
	s.Put(a)
	s.Put(b)
	if s.Revoked(a.ID) || s.Revoked(b.ID) {
		t.Fatal("stored credentials reported revoked")
	}
	if err := s.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked(a.ID) {
		t.Error("deleted credential not revoked")
	}
	if _, ok := s.Find(a.ID); ok {
		t.Error("deleted credential still found")
	}
	if err := s.Delete(a.ID); err != ErrNotFound {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	replacement := cred("example.org", "u2", "bob", 3)
	replacement.ID = []byte("bob's new credential")
	if err := s.Put(replacement); err != nil {
		t.Fatal(err)
	}
	if !s.Revoked(b.ID) || s.Revoked(replacement.ID) {
		t.Errorf("after replace: old revoked %v, new revoked %v", s.Revoked(b.ID), s.Revoked(replacement.ID))
	}
	if c, ok := s.Find(replacement.ID); !ok || c.UserName != "bob" {
		t.Errorf("Find(replacement) = %+v, %v", c, ok)
	}
	// Putting the same credential again (same ID) revokes nothing.
	if err := s.Put(replacement); err != nil || s.Revoked(replacement.ID) {
		t.Errorf("re-put: %v, revoked %v", err, s.Revoked(replacement.ID))
	}
	if err := s.Reset(secret(2)); err != nil {
		t.Fatal(err)
	}
	if s.Revoked(a.ID) || s.Revoked(b.ID) {
		t.Error("revocations survive a reset (every ID is dead anyway; the list must not grow forever)")
	}
	if _, ok := s.Find(replacement.ID); ok {
		t.Error("credential found after reset")
	}
}

// A store written before the ID index existed gets one at Open.
func TestIndexBuiltForAnOlderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s, err := Open(path, secret(1), 10)
	if err != nil {
		t.Fatal(err)
	}
	c := cred("example.org", "u1", "alice", 1)
	if err := s.Put(c); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(idIndexBucket) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path, secret(1), 10)
	found, ok := s.Find(c.ID)
	if !ok || !bytes.Equal(found.UserID, c.UserID) {
		t.Fatalf("Find after migration = %+v, %v", found, ok)
	}
	if err := s.Delete(c.ID); err != nil || !s.Revoked(c.ID) {
		t.Fatalf("Delete after migration: %v", err)
	}
}
