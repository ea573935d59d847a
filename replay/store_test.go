package replay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func open(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	s, err := Open(path, Options{Window: 10 * time.Minute, Now: c.Now, MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestReplayRefusedDistinctAccepted(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "replay.log")
	s := open(t, path, c)
	a := Key([]byte("authenticate"), []byte("rp1"), []byte("challenge"))
	if err := s.Check(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(a); err != nil {
		t.Fatal("Check has a side effect")
	}
	if err := s.Record(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// Same challenge, another RP or another credential: different keys.
	for _, k := range [][32]byte{
		Key([]byte("authenticate"), []byte("rp2"), []byte("challenge")),
		Key([]byte("authenticate"), []byte("rp1"), []byte("challenge"), []byte("cred2")),
		Key([]byte("authenticat"), []byte("erp1"), []byte("challenge")),
	} {
		if err := s.Check(k); err != nil {
			t.Errorf("distinct request refused: %v", err)
		}
	}
	// Survives a restart.
	s.Close()
	s = open(t, path, c)
	if err := s.Check(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("after reopen: %v", err)
	}
	// Ages out with the window.
	c.Add(10*time.Minute + time.Second)
	if err := s.Check(a); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	for _, p := range []string{path, path + ".state"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", p, fi.Mode(), err)
		}
	}
}

func TestTornTailIsNotCorruption(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "replay.log")
	s := open(t, path, c)
	a, b := Key([]byte("a")), Key([]byte("b"))
	s.Record(a)
	s.Record(b)
	s.Close()
	fi, _ := os.Stat(path)
	os.Truncate(path, fi.Size()-10) // a crash in the middle of the last append
	s = open(t, path, c)
	if !s.Status().Healthy {
		t.Fatal("a torn last record made the store fail closed")
	}
	if err := s.Check(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("intact record lost: %v", err)
	}
}

func TestLostStoreFailsClosed(t *testing.T) {
	for _, damage := range []string{"deleted", "truncated header", "corrupt middle"} {
		t.Run(damage, func(t *testing.T) {
			c := &clock{t: time.Unix(1_800_000_000, 0)}
			path := filepath.Join(t.TempDir(), "replay.log")
			s := open(t, path, c)
			for i := range 3 {
				s.Record(Key([]byte{byte(i)}))
			}
			s.Close()
			switch damage {
			case "deleted":
				os.Remove(path)
			case "truncated header":
				os.Truncate(path, 5)
			case "corrupt middle":
				b, _ := os.ReadFile(path)
				b[len(magic)+recordSize+3] ^= 0xff
				os.WriteFile(path, b, 0o600)
			}
			c.Add(time.Minute)
			s = open(t, path, c)
			fresh := Key([]byte("never seen"))
			if err := s.Check(fresh); !errors.Is(err, ErrFailClosed) {
				t.Fatalf("after %s: Check = %v, want ErrFailClosed", damage, err)
			}
			if err := s.Record(fresh); !errors.Is(err, ErrFailClosed) {
				t.Fatalf("Record while failing closed: %v", err)
			}
			st := s.Status()
			if st.Healthy || st.FailClosedUntil.IsZero() {
				t.Fatalf("status %+v", st)
			}
			// A restart does not end the refusal.
			s.Close()
			c.Add(5 * time.Minute)
			s = open(t, path, c)
			if err := s.Check(fresh); !errors.Is(err, ErrFailClosed) {
				t.Fatalf("refusal ended by a restart: %v", err)
			}
			// A whole window after the loss was found, it signs again.
			c.Add(5*time.Minute + time.Second)
			if err := s.Check(fresh); err != nil {
				t.Fatalf("after the window: %v", err)
			}
			if !s.Status().Healthy {
				t.Fatal("still unhealthy after the window")
			}
		})
	}
}

func TestFreshInstallIsHealthy(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "replay.log"), c)
	if err := s.Check(Key([]byte("x"))); err != nil {
		t.Fatal(err)
	}
}

func TestClockStepBack(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "replay.log")
	s := open(t, path, c)
	a := Key([]byte("a"))
	s.Record(a)
	c.Add(9 * time.Minute)
	s.Check(a) // the store has now seen t0+9m
	c.Add(-time.Hour)
	// The clock went back an hour; the entry must not be treated as older
	// or younger than the latest time seen says.
	if err := s.Check(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("after a step back: %v", err)
	}
	// And the store's time does not go back across a restart either.
	s.Close()
	s = open(t, path, c)
	if err := s.Check(a); !errors.Is(err, ErrReplay) {
		t.Fatalf("after a step back and restart: %v", err)
	}
	c.Add(time.Hour + 2*time.Minute) // real time catches up past t0+10m
	if err := s.Check(a); err != nil {
		t.Fatalf("entry never aged out: %v", err)
	}
}

func TestFullWithoutEvictingInsideWindow(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s, err := Open(filepath.Join(t.TempDir(), "replay.log"), Options{Window: time.Minute, Now: c.Now, MaxEntries: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		if err := s.Record(Key([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Record(Key([]byte("one more"))); !errors.Is(err, ErrFull) {
		t.Fatalf("Record when full: %v", err)
	}
	for i := range 10 {
		if err := s.Check(Key([]byte{byte(i)})); !errors.Is(err, ErrReplay) {
			t.Fatalf("entry %d inside the window was forgotten", i)
		}
	}
	c.Add(time.Minute + time.Second)
	if err := s.Record(Key([]byte("one more"))); err != nil {
		t.Fatalf("after old entries aged out: %v", err)
	}
}

func TestCompactionBoundsTheFile(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	path := filepath.Join(t.TempDir(), "replay.log")
	s, err := Open(path, Options{Window: time.Second, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5000 {
		s.Record(Key([]byte(fmt.Sprint(i))))
		c.Add(10 * time.Millisecond)
	}
	fi, _ := os.Stat(path)
	// About 100 entries are live; the file is compacted well below 5000 records.
	if max := int64(len(magic) + (2*100+1024+100)*recordSize); fi.Size() > max {
		t.Fatalf("file is %d bytes, want at most %d", fi.Size(), max)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("compacted file mode %v", fi.Mode())
	}
}

func TestConcurrentRecordShareFsync(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "replay.log"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				k := Key([]byte{byte(g)}, []byte{byte(i)})
				if err := s.Check(k); err != nil {
					t.Error(err)
				}
				if err := s.Record(k); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	st := s.Status()
	if st.Entries != 640 {
		t.Fatalf("%d entries, want 640", st.Entries)
	}
	t.Logf("640 records with %d fsyncs", st.Fsyncs)
}

func FuzzDecode(f *testing.F) {
	r := encodeRecord(Key([]byte("x")), 42)
	f.Add([]byte(magic))
	f.Add(append([]byte(magic), r[:]...))
	f.Add(append([]byte(magic), r[:20]...))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, torn, err := decode(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a DecodeError", err)
			}
			return
		}
		if len(magic)+len(recs)*recordSize+torn != len(data) {
			t.Fatal("decoded sizes do not add up")
		}
		for i, rec := range recs {
			enc := encodeRecord(rec.key, rec.when)
			off := len(magic) + i*recordSize
			if string(enc[:]) != string(data[off:off+recordSize]) {
				t.Fatal("record does not re-encode to its bytes")
			}
		}
	})
}
