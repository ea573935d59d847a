package credstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func open(t *testing.T, path string, key []byte, max int) *Store {
	t.Helper()
	s, err := Open(path, key, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func cred(rp, user, name string, at int) Credential {
	return Credential{ID: []byte("id-" + rp + user), RPID: rp, UserID: []byte(user), UserName: name, DisplayName: "Display " + name, Created: time.Unix(int64(1_800_000_000+at), 0)}
}

func TestPutListReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 10)
	s.Put(cred("example.org", "u1", "alice", 1))
	s.Put(cred("example.org", "u2", "bob", 2))
	s.Put(cred("other.example", "u1", "alice", 3))
	got, err := s.List(sha256.Sum256([]byte("example.org")))
	if err != nil || len(got) != 2 || got[0].UserName != "bob" {
		t.Fatalf("List = %+v, %v", got, err)
	}
	// Same RP and user: replaced, not added.
	c := cred("example.org", "u1", "alice2", 4)
	c.ID = []byte("new-id")
	if err := s.Put(c); err != nil {
		t.Fatal(err)
	}
	got, _ = s.List(sha256.Sum256([]byte("example.org")))
	if len(got) != 2 || got[0].UserName != "alice2" || !bytes.Equal(got[0].ID, []byte("new-id")) {
		t.Fatalf("after replace: %+v", got)
	}
	if _, ok := s.Find([]byte("new-id")); !ok || !s.Exists("example.org", []byte("u1")) || s.Remaining() != 7 {
		t.Fatalf("Find/Exists/Remaining: %d", s.Remaining())
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

// TestNothingReadableOnDisk: the database names neither sites nor users.
func TestNothingReadableOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 10)
	s.Put(cred("secret-site.example", "user-handle-123", "alice.liddell", 1))
	s.Close()
	raw, _ := os.ReadFile(path)
	rpHash := sha256.Sum256([]byte("secret-site.example"))
	for _, leak := range [][]byte{[]byte("secret-site"), []byte("alice.liddell"), []byte("user-handle-123"), []byte("Display"), rpHash[:]} {
		if bytes.Contains(raw, leak) {
			t.Errorf("the database file contains %q", leak)
		}
	}
}

func TestFullAndWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 2)
	s.Put(cred("a", "1", "x", 1))
	s.Put(cred("b", "1", "x", 2))
	if err := s.Put(cred("c", "1", "x", 3)); !errors.Is(err, ErrFull) {
		t.Fatalf("third Put: %v", err)
	}
	if err := s.Put(cred("a", "1", "y", 4)); err != nil {
		t.Fatalf("replacing in a full store: %v", err)
	}
	s.Close()
	// Another installation's key reads nothing, and says so.
	other := open(t, path, secret(2), 2)
	all, err := other.All()
	if len(all) != 0 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("another key read %d entries, err %v", len(all), err)
	}
}

func TestDamagedEntrySkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 10)
	s.Put(cred("a", "1", "x", 1))
	s.Put(cred("a", "2", "y", 2))
	// Flip a byte of one entry's ciphertext.
	s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		k, v := b.Cursor().First()
		v = append([]byte(nil), v...)
		v[len(v)-1] ^= 1
		return b.Put(append([]byte(nil), k...), v)
	})
	got, err := s.List(sha256.Sum256([]byte("a")))
	if len(got) != 1 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List = %d entries, %v", len(got), err)
	}
}

func FuzzDecode(f *testing.F) {
	s, err := Open(filepath.Join(f.TempDir(), "credentials.db"), secret(1), 10)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	c := cred("example.org", "u", "alice", 1)
	key := s.entryKey(sha256.Sum256([]byte(c.RPID)), c.UserID)
	v, _ := s.seal(key, &c)
	f.Add(key, v)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		got, err := s.Decode(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got.ID == nil {
			t.Fatal("decoded a credential without an ID")
		}
	})
}

func TestNewestFirstWithinOneSecond(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "credentials.db"), secret(1), 10)
	base := time.Unix(1_800_000_000, 0)
	for i := range 5 {
		c := cred("a", string(rune('a'+i)), "x", 0)
		c.Created = base.Add(time.Duration(i) * time.Millisecond)
		s.Put(c)
	}
	got, _ := s.List(sha256.Sum256([]byte("a")))
	for i := range got {
		if want := string(rune('a' + 4 - i)); string(got[i].UserID) != want {
			t.Fatalf("position %d: user %q, want %q", i, got[i].UserID, want)
		}
	}
}

func TestReset(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "credentials.db"), secret(1), 10)
	s.Put(cred("a", "1", "x", 1))
	if err := s.Reset(secret(9)); err != nil {
		t.Fatal(err)
	}
	if all, err := s.All(); len(all) != 0 || err != nil || s.Remaining() != 10 {
		t.Fatalf("after reset: %d entries, %v", len(all), err)
	}
	s.Put(cred("b", "1", "y", 2))
	if got, _ := s.List(sha256.Sum256([]byte("b"))); len(got) != 1 {
		t.Fatal("store unusable after reset")
	}
}

// TestPruneDropsWhatCannotDecrypt: entries under another key (a
// credentials.db older than the sealed key, as a restore from before a
// reset leaves it) are deleted, so they are not counted as used forever.
func TestPruneDropsWhatCannotDecrypt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 10)
	s.Put(cred("a", "1", "x", 1))
	s.Put(cred("a", "2", "y", 2))
	s.Close()
	s = open(t, path, secret(2), 10)
	s.Put(cred("b", "1", "z", 3))
	if s.Remaining() != 7 {
		t.Fatalf("Remaining = %d before pruning", s.Remaining())
	}
	n, err := s.Prune()
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2", n, err)
	}
	if all, err := s.All(); len(all) != 1 || err != nil || s.Remaining() != 9 {
		t.Fatalf("after Prune: %d entries, %v, remaining %d", len(all), err, s.Remaining())
	}
	if n, err := s.Prune(); n != 0 || err != nil {
		t.Fatalf("second Prune = %d, %v", n, err)
	}
}

// credBlob is kept with the entry, encrypted like the rest of it.
func TestCredBlobStoredEncrypted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.db")
	s := open(t, path, secret(1), 10)
	c := cred("example.org", "u1", "alice", 1)
	c.CredBlob = []byte("credBlob-plaintext-0123456789abc")
	if err := s.Put(c); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Find(c.ID)
	if !ok || !bytes.Equal(got.CredBlob, c.CredBlob) {
		t.Fatalf("Find: %+v", got)
	}
	s.Close()
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("credBlob-plaintext")) {
		t.Error("the database file contains the credBlob in the clear")
	}
}
