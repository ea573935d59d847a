package replay

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

type env struct {
	t    *testing.T
	dir  string
	path string
	c    *clock
	logs *syncBuffer
	keys [][32]byte // every key recorded, to check none is ever logged
	opts Options
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, path: filepath.Join(dir, "replay.log"), c: newClock(), logs: &syncBuffer{}}
	e.opts = Options{Window: 10 * time.Minute, MaxEntries: 1000, Now: e.c.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(e.checkLogs)
	return e
}

func (e *env) open() *Store {
	e.t.Helper()
	s, err := Open(e.path, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) key(s string) [32]byte {
	k := Key([]byte(s))
	e.keys = append(e.keys, k)
	return k
}

func (e *env) record(s *Store, name string) [32]byte {
	e.t.Helper()
	k := e.key(name)
	if err := s.Record(k); err != nil {
		e.t.Fatalf("Record(%s): %v", name, err)
	}
	return k
}

// checkLogs: keys are hashes, not secrets, but the log gets counts and
// times only.
func (e *env) checkLogs() {
	out := e.logs.String()
	for _, k := range e.keys {
		for _, enc := range []string{hex.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(k[:]), hex.EncodeToString(k[:8])} {
			if strings.Contains(strings.ToLower(out), strings.ToLower(enc)) {
				e.t.Errorf("a key appears in the log")
			}
		}
	}
}

func mustIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestKeySeparatesParts(t *testing.T) {
	if Key([]byte("ab"), []byte("c")) == Key([]byte("a"), []byte("bc")) {
		t.Fatal(`("ab","c") and ("a","bc") collide`)
	}
	if Key([]byte("abc")) == Key([]byte("ab"), []byte("c")) || Key() == Key(nil) {
		t.Fatal("the number of parts does not count")
	}
	if Key([]byte("x")) != Key([]byte("x")) {
		t.Fatal("Key is not deterministic")
	}
}

func TestReplayRefusedDistinctAccepted(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	a := e.key("authenticate|rp1|challenge|cred1")
	mustIs(t, "Check fresh", s.Check(a), nil)
	mustIs(t, "Check again (no side effects)", s.Check(a), nil)
	mustIs(t, "Record", s.Record(a), nil)
	mustIs(t, "Check replay", s.Check(a), ErrReplay)
	mustIs(t, "Record replay", s.Record(a), ErrReplay)
	for _, k := range []string{"authenticate|rp2|challenge|cred1", "authenticate|rp1|challenge|cred2", "register|rp1|challenge|cred1"} {
		mustIs(t, "distinct request "+k, s.Check(e.key(k)), nil)
	}
	if st := s.Status(); !st.Healthy || st.Entries != 1 || st.FileRecords != 1 || st.FileSize != int64(headerSize+recordSize) {
		t.Fatalf("status %+v", st)
	}

	// Survives a restart.
	s.Close()
	mustIs(t, "Check after Close", s.Check(a), ErrClosed)
	s = e.open()
	mustIs(t, "after reopen", s.Check(a), ErrReplay)

	// Ages out with the window, and not before.
	e.c.Add(10*time.Minute - time.Second)
	mustIs(t, "just inside the window", s.Check(a), ErrReplay)
	e.c.Add(time.Second)
	mustIs(t, "after the window", s.Check(a), nil)
	mustIs(t, "Record after the window", s.Record(a), nil)

	for _, p := range []string{e.path, filepath.Join(e.dir, "replay.state")} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %v", p, m)
		}
	}
}

func TestCheckHasNoSideEffects(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	before, _ := os.ReadFile(e.path)
	stBefore, _ := os.ReadFile(filepath.Join(e.dir, "replay.state"))
	status := s.Status()
	for i := range 100 {
		s.Check(e.key(fmt.Sprint(i)))
	}
	after, _ := os.ReadFile(e.path)
	stAfter, _ := os.ReadFile(filepath.Join(e.dir, "replay.state"))
	if !bytes.Equal(before, after) || !bytes.Equal(stBefore, stAfter) {
		t.Fatal("Check wrote to disk")
	}
	if st := s.Status(); st != status {
		t.Fatalf("Check changed the store: %+v then %+v", status, st)
	}
}

// Two identical requests signed at once: Record is a check-and-set, so
// only one of them may send its response.
func TestConcurrentDuplicateRecordOnlyOneWins(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	k := e.key("same request")
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			switch err := s.Record(k); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrReplay):
				replays.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != 15 {
		t.Fatalf("%d recorded, %d refused; want 1, 15", ok.Load(), replays.Load())
	}
}

func TestTornTailIsRepairedNotFailedClosed(t *testing.T) {
	for _, tear := range []string{"partial record", "last batch zeroed"} {
		t.Run(tear, func(t *testing.T) {
			e := newEnv(t)
			s := e.open()
			a, b := e.record(s, "a"), e.record(s, "b")
			s.Close()
			data, _ := os.ReadFile(e.path)
			switch tear {
			case "partial record":
				// A crash in the middle of appending c: its response never left.
				data = appendBatch(data, []record{{key: e.key("c"), t: 1}})[:len(data)+20]
			case "last batch zeroed":
				// The file grew but the data never reached the disk.
				data = append(data, make([]byte, 3*recordSize)...)
			}
			os.WriteFile(e.path, data, 0o600)

			s = e.open()
			if st := s.Status(); !st.Healthy || st.FileRecords != 2 {
				t.Fatalf("a torn tail made the store fail closed or was kept: %+v", st)
			}
			mustIs(t, "intact a", s.Check(a), ErrReplay)
			mustIs(t, "intact b", s.Check(b), ErrReplay)
			if fi, _ := os.Stat(e.path); fi.Size() != int64(headerSize+2*recordSize) {
				t.Fatalf("torn tail not truncated: %d bytes", fi.Size())
			}
			if !strings.Contains(e.logs.String(), "torn tail") {
				t.Fatal("the repair was not logged")
			}
			e.record(s, "d") // appends after the repaired tail
			s.Close()
			s = e.open()
			if st := s.Status(); !st.Healthy || st.Entries != 3 {
				t.Fatalf("after appending to a repaired log: %+v", st)
			}
		})
	}
}

func TestLostLogFailsClosedForAWindow(t *testing.T) {
	damages := map[string]func(path string){
		"deleted":            func(p string) { os.Remove(p) },
		"truncated header":   func(p string) { os.Truncate(p, 5) },
		"emptied":            func(p string) { os.Truncate(p, 0) },
		"corrupt middle":     func(p string) { flipByte(p, recordAt(1)+3) },
		"bad magic":          func(p string) { flipByte(p, 0) },
		"replaced by junk":   func(p string) { os.WriteFile(p, []byte("not a replay log at all"), 0o600) },
		"corrupt commit rec": func(p string) { flipByte(p, recordAt(0)+40) },
		"corrupt last rec":   func(p string) { flipByte(p, recordAt(2)+7) },
		"cut at a record":    func(p string) { os.Truncate(p, int64(recordAt(2))) },
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			s := e.open()
			var old [][32]byte
			for i := range 3 {
				old = append(old, e.record(s, fmt.Sprint(i))) // three batches: each is committed
			}
			s.Close()
			damage(e.path)

			e.c.Add(time.Minute)
			found := e.c.Now()
			s = e.open()
			fresh := e.key("never seen")
			err := s.Check(fresh)
			var fc *FailClosedError
			if !errors.As(err, &fc) || !errors.Is(err, ErrFailClosed) {
				t.Fatalf("Check = %v, want a FailClosedError", err)
			}
			if want := found.Add(10 * time.Minute); !fc.Until.Equal(want) {
				t.Fatalf("refusing until %v, want %v (a window from when the loss was found)", fc.Until, want)
			}
			mustIs(t, "Record while failing closed", s.Record(fresh), ErrFailClosed)
			st := s.Status()
			if st.Healthy || !st.FailClosedUntil.Equal(fc.Until) || st.Reason == "" {
				t.Fatalf("status %+v", st)
			}
			if !strings.Contains(e.logs.String(), "level=ERROR") || !strings.Contains(e.logs.String(), fc.Until.UTC().Format(time.RFC3339)) {
				t.Fatalf("no error naming the time it accepts again in the log:\n%s", e.logs)
			}

			// A restart neither ends nor extends the refusal.
			s.Close()
			e.c.Add(5 * time.Minute)
			s = e.open()
			err = s.Check(fresh)
			if !errors.As(err, &fc) || !fc.Until.Equal(found.Add(10*time.Minute)) {
				t.Fatalf("after a restart: %v", err)
			}

			// A full window after the loss was found, it signs again, with a
			// fresh log that survives a restart.
			e.c.Add(5*time.Minute - time.Nanosecond)
			mustIs(t, "a nanosecond before the end", s.Check(fresh), ErrFailClosed)
			e.c.Add(time.Nanosecond)
			mustIs(t, "after the window", s.Check(fresh), nil)
			if !s.Status().Healthy {
				t.Fatal("still unhealthy after the window")
			}
			mustIs(t, "Record after the window", s.Record(fresh), nil)
			for _, k := range old {
				mustIs(t, "an entry older than the window", s.Check(k), nil)
			}
			s.Close()
			if m := mode(t, e.path); m != 0o600 {
				t.Fatalf("fresh log mode %v", m)
			}
			s = e.open()
			if st := s.Status(); !st.Healthy || st.Entries != 1 {
				t.Fatalf("fresh log after reopen: %+v", st)
			}
			mustIs(t, "recorded in the fresh log", s.Check(fresh), ErrReplay)
			if name == "corrupt middle" {
				if _, err := os.Stat(e.path + ".damaged"); err != nil {
					t.Fatalf("the damaged log was not kept: %v", err)
				}
			}
		})
	}
}

func flipByte(path string, off int) {
	b, _ := os.ReadFile(path)
	b[off] ^= 0xff
	os.WriteFile(path, b, 0o600)
}

// The daemon was down for longer than the window after the loss: it
// starts healthy.
func TestFailClosedEndsWhileStopped(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	s.Close()
	flipByte(e.path, recordAt(0)+1)
	s = e.open()
	mustIs(t, "just damaged", s.Check(e.key("x")), ErrFailClosed)
	s.Close()
	e.c.Add(11 * time.Minute)
	s = e.open()
	mustIs(t, "a window later", s.Check(e.key("x")), nil)
	e.record(s, "x")
}

// Losing the state file while failing closed does not end the refusal:
// the damaged log stays in place until the window has passed.
func TestFailClosedSurvivesLosingTheStateFile(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	e.record(s, "b") // a later batch: the damage is visible in the log alone
	s.Close()
	flipByte(e.path, recordAt(0)+1)
	s = e.open()
	s.Close()
	os.Remove(filepath.Join(e.dir, "replay.state"))
	s = e.open()
	mustIs(t, "state file lost too", s.Check(e.key("x")), ErrFailClosed)
}

func TestFreshInstall(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	mustIs(t, "fresh", s.Check(e.key("x")), nil)
	s.Close()
	// Opened but never signed: a lost log is not a loss.
	os.Remove(e.path)
	s = e.open()
	mustIs(t, "never signed, log gone", s.Check(e.key("x")), nil)
	s.Close()
	// Both files gone: a fresh install (see docs/replay.md on what this
	// does and does not protect against).
	e.record(e.open(), "y")
	os.Remove(e.path)
	os.Remove(filepath.Join(e.dir, "replay.state"))
	s = e.open()
	mustIs(t, "both files gone", s.Check(e.key("x")), nil)
}

func TestMissingLogWithArmedStateFailsClosed(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	s.Close()
	os.Remove(e.path)
	s = e.open()
	mustIs(t, "armed, log missing", s.Check(e.key("b")), ErrFailClosed)
	if _, err := os.Stat(e.path); err == nil {
		t.Fatal("a fresh log was created while failing closed")
	}
}

func TestDamagedStateFileCountsAsArmed(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	s.Close()
	os.WriteFile(filepath.Join(e.dir, "replay.state"), []byte("{garbage"), 0o600)
	s = e.open()
	mustIs(t, "intact log, damaged state", s.Check(e.key("a")), ErrReplay)
	s.Close()
	os.WriteFile(filepath.Join(e.dir, "replay.state"), []byte("{garbage"), 0o600)
	os.Remove(e.path)
	s = e.open()
	mustIs(t, "damaged state, log missing", s.Check(e.key("b")), ErrFailClosed)
}

func TestClockStepBack(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	a := e.record(s, "a")
	e.c.Add(9 * time.Minute)
	e.record(s, "b") // the store has seen t0+9m
	e.c.Add(-time.Hour)
	mustIs(t, "after an hour's step back", s.Check(a), ErrReplay)
	// The store's time stays at t0+9m until the clock passes it again, so
	// the entry lives an hour longer than the window: extended, never
	// shortened. The same across a restart.
	s.Close()
	s = e.open()
	mustIs(t, "after a restart", s.Check(a), ErrReplay)
	e.c.Add(time.Hour + 59*time.Second) // t0+9m59s
	mustIs(t, "clock caught up, still inside the window", s.Check(a), ErrReplay)
	e.c.Add(time.Second)
	mustIs(t, "entry aged out", s.Check(a), nil)
	if got := s.Status().LastSeen; !got.Equal(e.c.Now()) {
		t.Fatalf("LastSeen %v, want %v", got, e.c.Now())
	}
}

func TestClockStepBackExtendsRefusal(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	s.Close()
	os.Remove(e.path)
	s = e.open() // failing closed until t0+10m
	until := e.c.Now().Add(10 * time.Minute)
	s.Close()
	e.c.Add(-24 * time.Hour)
	s = e.open()
	var fc *FailClosedError
	if err := s.Check(e.key("x")); !errors.As(err, &fc) || !fc.Until.Equal(until) {
		t.Fatalf("after a step back: %v", err)
	}
	e.c.Add(24*time.Hour + 10*time.Minute - time.Second)
	mustIs(t, "the clock is back where it was, plus less than a window", s.Check(e.key("x")), ErrFailClosed)
	e.c.Add(time.Second)
	mustIs(t, "a full window on the restored clock", s.Check(e.key("x")), nil)
}

func TestFullRefusesWithoutEvicting(t *testing.T) {
	e := newEnv(t)
	e.opts.Window, e.opts.MaxEntries = time.Minute, 10
	s := e.open()
	var keys [][32]byte
	for i := range 10 {
		keys = append(keys, e.record(s, fmt.Sprint(i)))
		e.c.Add(time.Second)
	}
	more := e.key("one more")
	mustIs(t, "Check when full", s.Check(more), ErrFull)
	mustIs(t, "Record when full", s.Record(more), ErrFull)
	if st := s.Status(); !st.Full || st.Entries != 10 {
		t.Fatalf("status %+v", st)
	}
	for i, k := range keys {
		if err := s.Check(k); !errors.Is(err, ErrReplay) {
			t.Fatalf("entry %d inside the window was forgotten: %v", i, err)
		}
	}
	if fi, _ := os.Stat(e.path); fi.Size() != int64(headerSize+10*recordSize) {
		t.Fatalf("refusals touched the log: %d bytes", fi.Size())
	}
	// The oldest entry ages out 60 s after it was recorded: one slot.
	e.c.Add(50 * time.Second)
	mustIs(t, "room for one", s.Record(more), nil)
	mustIs(t, "full again", s.Check(e.key("another")), ErrFull)
	mustIs(t, "the oldest aged out (refused only because the store is full)", s.Check(keys[0]), ErrFull)
	mustIs(t, "the next one did not", s.Check(keys[1]), ErrReplay)
}

func TestCompactionBoundsTheFile(t *testing.T) {
	e := newEnv(t)
	e.opts.Window = time.Second
	s := e.open()
	os.Chmod(e.path, 0o644) // to see the rewrite make it 0600 again
	var last [32]byte
	for i := range 5000 {
		last = e.record(s, fmt.Sprint(i))
		e.c.Add(10 * time.Millisecond)
		// About 100 entries are live at any time.
		if st := s.Status(); st.FileRecords > 2*100+compactSlack+1 {
			t.Fatalf("after %d records the log holds %d", i, st.FileRecords)
		}
	}
	if m := mode(t, e.path); m != 0o600 {
		t.Fatalf("compacted log mode %v", m)
	}
	mustIs(t, "last entry", s.Check(last), ErrReplay)
	s.Close()
	s = e.open()
	st := s.Status()
	if !st.Healthy || st.FileRecords != st.Entries || st.Entries < 90 || st.Entries > 100 {
		t.Fatalf("after reopen (compaction on open): %+v", st)
	}
	mustIs(t, "last entry after reopen", s.Check(last), ErrReplay)
}

func TestBroadPermissionsAreFixed(t *testing.T) {
	e := newEnv(t)
	s := e.open()
	e.record(s, "a")
	s.Close()
	state := filepath.Join(e.dir, "replay.state")
	os.Chmod(e.path, 0o644)
	os.Chmod(state, 0o666)
	s = e.open()
	for _, p := range []string{e.path, state} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %v", p, m)
		}
	}
	if n := strings.Count(e.logs.String(), "set to 0600"); n != 2 {
		t.Fatalf("%d warnings about broad permissions, want 2:\n%s", n, e.logs)
	}
}

// A failed write refuses (the response is withheld), and the store
// rewrites its log from memory and accepts again.
func TestWriteFailureFailsClosedThenRepairs(t *testing.T) {
	old := repairDelay
	repairDelay = 10 * time.Millisecond
	t.Cleanup(func() { repairDelay = old })
	e := newEnv(t)
	s := e.open()
	a := e.record(s, "a")
	s.mu.Lock()
	s.f.Close() // the next append fails
	s.mu.Unlock()
	b := e.key("b")
	mustIs(t, "Record on a failing disk", s.Record(b), ErrFailClosed)
	for deadline := time.Now().Add(5 * time.Second); s.Check(e.key("c")) != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("never repaired: %v", s.Check(e.key("c")))
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustIs(t, "a after repair", s.Check(a), ErrReplay)
	mustIs(t, "b (withheld, still refused)", s.Check(b), ErrReplay)
	e.record(s, "c")
	s.Close()
	s = e.open()
	if st := s.Status(); !st.Healthy || st.Entries != 3 {
		t.Fatalf("after repair and reopen: %+v", st)
	}
}

func TestUpgradeFromV1(t *testing.T) {
	e := newEnv(t)
	now := e.c.Now().UnixNano()
	a := e.key("a")
	os.WriteFile(e.path, v1Log([]record{{key: a, t: now - int64(time.Minute)}, {key: e.key("old"), t: now - int64(time.Hour)}}), 0o600)
	os.WriteFile(e.path+".state", []byte(`{"armed":true,"last_seen_unix_nano":1}`), 0o600)
	s := e.open()
	mustIs(t, "v1 entry", s.Check(a), ErrReplay)
	if st := s.Status(); !st.Healthy || st.Entries != 1 {
		t.Fatalf("%+v", st)
	}
	if d, err := decode(must(os.ReadFile(e.path)), 0); err != nil || d.version != version {
		t.Fatalf("not rewritten as v%d: %v", version, err)
	}
	if _, err := os.Stat(e.path + ".state"); err == nil {
		t.Fatal("the old state file was left behind")
	}
	s.Close()
	// The old state file's "armed" carries over.
	os.Remove(e.path)
	s = e.open()
	mustIs(t, "armed via the migrated state file", s.Check(a), ErrFailClosed)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestConcurrentRecordCheckStatus(t *testing.T) {
	e := newEnv(t)
	e.opts.MaxEntries = 100_000
	s := e.open()
	const goroutines, each = 32, 25
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				k := Key([]byte{byte(g)}, []byte{byte(i)})
				if err := s.Check(k); err != nil {
					t.Error(err)
				}
				if err := s.Record(k); err != nil {
					t.Error(err)
				}
				if err := s.Check(k); !errors.Is(err, ErrReplay) {
					t.Errorf("just recorded: %v", err)
				}
				s.Status()
			}
		})
	}
	wg.Wait()
	st := s.Status()
	if st.Entries != goroutines*each || st.FileRecords != goroutines*each {
		t.Fatalf("%+v", st)
	}
	t.Logf("%d records with %d fsyncs (group commit)", goroutines*each, st.Fsyncs)
	s.Close()
	s = e.open()
	if st := s.Status(); st.Entries != goroutines*each {
		t.Fatalf("after reopen %d entries", st.Entries)
	}
}
