package replay

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
)

// Defaults for Options.
const (
	DefaultWindow     = 10 * time.Minute
	DefaultMaxEntries = 100_000
)

var (
	// ErrReplay: the request was answered inside the window.
	ErrReplay = errors.New("replay: request already answered inside the window")
	// ErrFailClosed: the store lost track of what it answered (its log
	// was missing or corrupt, or cannot be written) and refuses every
	// request until that can no longer matter. Errors that match it are
	// *FailClosedError, which says until when.
	ErrFailClosed = errors.New("replay: store failing closed")
	// ErrFull: MaxEntries requests were answered inside the window.
	// Forgetting one to make room could let it be replayed, so the store
	// refuses new requests until the oldest ages out.
	ErrFull = errors.New("replay: store full")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("replay: store closed")
)

// FailClosedError is the error while the store fails closed.
type FailClosedError struct {
	// Until is when the store accepts requests again. Zero when the log
	// cannot be written: the store retries in the background and accepts
	// again as soon as a rewrite succeeds.
	Until  time.Time
	Reason string
}

func (e *FailClosedError) Error() string {
	if e.Until.IsZero() {
		return fmt.Sprintf("replay: store failing closed until its log can be written (%s)", e.Reason)
	}
	return fmt.Sprintf("replay: store failing closed until %s (%s)", e.Until.UTC().Format(time.RFC3339), e.Reason)
}

func (e *FailClosedError) Unwrap() error { return ErrFailClosed }

// Options tune a Store. The zero value is the production setting.
type Options struct {
	Window     time.Duration    // default DefaultWindow
	MaxEntries int              // default DefaultMaxEntries
	Now        func() time.Time // default time.Now; tests inject a clock
	Logger     *slog.Logger     // default: discard
}

// Status describes the store, for `tpm-u2f status` and the tray.
type Status struct {
	Healthy bool // accepts requests now
	// FailClosedUntil is when a refusal ends; zero when healthy, and when
	// the refusal lasts until the log can be written again.
	FailClosedUntil time.Time
	Reason          string // why it fails closed
	Entries         int    // requests answered inside the window
	MaxEntries      int
	Full            bool // Entries == MaxEntries: refusing until one ages out
	Window          time.Duration
	LastKnownGood   time.Time // last time the log was known intact (open, sync)
	LastSeen        time.Time // the store's clock: the latest time ever seen
	FileSize        int64     // bytes in the log
	FileRecords     int       // records in the log, live or not
	Fsyncs          uint64    // fsyncs of the log, the directory and the state file
}

// Store is the replay store. A Store is safe for concurrent use:
//
//   - Check takes a read lock and touches neither the disk nor the
//     store's state, so any number run at once and none waits for an
//     fsync.
//   - Record holds the lock only to update memory. The disk work of
//     concurrent Records is done by one of them at a time (the leader)
//     outside the lock, one write and one fsync for everything queued
//     (group commit); the others wait for it and return together.
//   - Status is a read like Check; Close waits for a write under way.
type Store struct {
	path, statePath, legacyStatePath string

	window int64 // nanoseconds
	max    int
	clock  func() time.Time
	log    *slog.Logger

	mu   sync.RWMutex
	cond *sync.Cond // on mu (write side): wakes Records waiting for the leader

	// Everything below is guarded by mu.

	// entries maps the key of each request answered inside the window
	// (and possibly some that aged out since) to when it was recorded;
	// queue holds the same entries, oldest first, from index head. Times
	// never decrease (see now), so the queue is in order and aging out is
	// popping from its front: memory stays bounded by MaxEntries.
	entries map[[32]byte]int64
	queue   []record
	head    int

	lastSeen    int64 // the latest time ever seen: the store's clock never goes back
	lastGood    int64
	armed       bool // the token has recorded a signature
	armedOnDisk bool

	failUntil  int64 // refuse everything until then (RFC 4120 section 10); 0: not failing
	failReason string
	broken     error // the last write failed: refuse until a rewrite succeeds
	repair     *time.Timer

	logOK       bool     // the file at path is a sound log
	f           *os.File // appends to it; nil unless logOK
	fileRecords int

	// Group commit: Records queue their record in pending and wait until
	// durable reaches their ticket; whoever finds no write under way
	// (writing) does the next one.
	pending  []pendingRecord
	enqueued uint64
	durable  uint64
	writing  bool
	fsyncs   uint64

	fullLogged bool
	closed     bool
}

type pendingRecord struct {
	record
	ticket uint64
}

// compactSlack keeps a small log from being rewritten over and over:
// compaction waits for at least this many dead records.
const compactSlack = 1024

// repairDelay is how long after a failed write the store tries to
// rewrite its log. A variable for tests.
var repairDelay = 5 * time.Second

// Open opens the store whose log is at path (the daemon passes
// <state dir>/replay.log), creating it if this is a fresh install. The
// state file is replay.state next to it. A log that is missing while
// the token has signed before, or corrupt, does not make Open fail: the
// store opens failing closed (see Status). Open fails only when it
// cannot read or write its files at all.
func Open(path string, opts Options) (*Store, error) {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		path:      path,
		statePath: statePathFor(path),
		window:    int64(opts.Window),
		max:       opts.MaxEntries,
		clock:     opts.Now,
		log:       opts.Logger,
		entries:   make(map[[32]byte]int64),
	}
	if legacy := path + ".state"; legacy != s.statePath {
		s.legacyStatePath = legacy
	}
	s.cond = sync.NewCond(&s.mu)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	return s, nil
}

// load reads the state file and the log and decides whether the store is
// healthy or fails closed. Called once, from Open, with mu held.
func (s *Store) load() error {
	st, _, err := s.readState()
	if err != nil {
		return err
	}
	s.armed, s.lastSeen, s.lastGood = st.Armed, st.LastSeen, st.LastGood

	var lost string
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if s.armed {
			lost = "the log is missing but the token has signed before"
		}
	case err != nil:
		return fmt.Errorf("replay: %w", err)
	default:
		s.fixMode(s.path, "log")
		d, derr := decode(data, int(max(0, min(st.LogSize, int64(len(data))+1))))
		if derr != nil {
			lost = derr.Error()
			s.armed = true // it existed, so assume it held something
			break
		}
		if d.torn > 0 {
			// A crash in the middle of an append: that batch's fsync never
			// returned, so its responses never left. Not a loss.
			s.log.Warn("replay: dropping the torn tail of an append a crash interrupted",
				"bytes", d.torn, "records_kept", len(d.recs))
		}
		if len(d.recs) > 0 {
			s.armed = true
		}
		s.loadRecords(d.recs)
		s.logOK = true
	}
	now := s.advance()
	s.prune(now)

	switch {
	case lost != "" && st.FailClosedUntil != 0:
		// Already failing closed for this loss, and nothing has been
		// answered since (see stateFile.FailClosedUntil): keep the
		// deadline. Extending it on every restart would never end.
		s.failUntil, s.failReason = st.FailClosedUntil, lost
	case lost != "":
		// RFC 4120 section 10: having lost track of what was answered,
		// refuse until every lost entry has aged out. The window is
		// counted from now, when the loss was found, not from the last
		// known-good time: entries recorded after that time were lost
		// too, and all of them are older than now.
		s.failUntil, s.failReason = now+s.window, lost
	case st.FailClosedUntil > now:
		// The log is intact, but a refusal is still in force (a backup
		// put back, say). Keep it: ending it early is never safe.
		s.failUntil, s.failReason = st.FailClosedUntil, cmp.Or(st.Reason, "an earlier loss of the log")
	}
	if lost != "" {
		s.logOK = false
		clear(s.entries)
		s.queue, s.head = nil, 0
	}
	if s.failUntil != 0 && now >= s.failUntil {
		s.log.Info("replay: a full window has passed since the log was lost; starting a fresh log",
			"reason", s.failReason)
		if !s.logOK {
			s.keepDamaged()
		}
		s.failUntil, s.failReason, s.logOK = 0, "", false
	}
	if s.failUntil != 0 {
		s.log.Error("replay: lost track of the requests answered recently; refusing to sign until the window has passed",
			"reason", s.failReason, "until", fmtTime(s.failUntil), "window", time.Duration(s.window))
	}

	// Compaction on open: a clean log with only the live entries (and
	// without a torn tail). Not while failing closed with a damaged log:
	// that stays as it is, so that losing the state file meanwhile still
	// fails closed, until the window has passed.
	if s.logOK || s.failUntil == 0 {
		// LogSize 0 while the rewrite is under way (see stateFile.LogSize).
		if err := s.writeState(s.stateLocked()); err != nil {
			return err
		}
		s.fsyncs += 2
		b := encodeLog(s.queue[s.head:])
		if err := atomicfile.Write(s.path, b); err != nil {
			return fmt.Errorf("replay: write log: %w", err)
		}
		s.fsyncs += 2
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		s.f, s.logOK, s.fileRecords = f, true, len(s.queue)-s.head
		if s.failUntil == 0 {
			s.lastGood = now
		}
	}
	if err := s.writeState(s.stateLocked()); err != nil {
		return err
	}
	s.fsyncs += 2
	s.armedOnDisk = s.armed
	if s.legacyStatePath != "" {
		os.Remove(s.legacyStatePath) // replaced by replay.state
	}
	return nil
}

// loadRecords fills the index from the log, oldest first, one entry per
// key (the latest).
func (s *Store) loadRecords(recs []record) {
	slices.SortStableFunc(recs, func(a, b record) int { return cmp.Compare(a.t, b.t) })
	for _, r := range recs {
		if r.t > s.lastSeen {
			s.lastSeen = r.t
		}
		s.entries[r.key] = r.t
	}
	for _, r := range recs {
		if t, ok := s.entries[r.key]; ok && t == r.t {
			s.queue = append(s.queue, r)
			s.entries[r.key] = t + 1 // mark as queued; restored below
		}
	}
	for _, r := range s.queue {
		s.entries[r.key] = r.t
	}
}

// keepDamaged keeps a copy of a damaged log as <log>.damaged for the
// operator before a fresh log replaces it (best effort).
func (s *Store) keepDamaged() {
	if _, err := os.Stat(s.path); err != nil {
		return
	}
	os.Remove(s.path + ".damaged")
	if err := os.Link(s.path, s.path+".damaged"); err == nil {
		s.log.Warn("replay: kept the damaged log for inspection", "path", s.path+".damaged")
	}
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// now is the store's clock: the later of the real clock and the latest
// time it has seen. A clock stepped backwards therefore keeps entries
// alive and refusals in force longer, never shorter. Read-only.
func (s *Store) now() int64 {
	return max(s.clock().UnixNano(), s.lastSeen)
}

// advance is now, remembered. Called by writers only.
func (s *Store) advance() int64 {
	s.lastSeen = s.now()
	return s.lastSeen
}

// prune forgets entries that aged out.
func (s *Store) prune(now int64) {
	for s.head < len(s.queue) && now-s.queue[s.head].t >= s.window {
		delete(s.entries, s.queue[s.head].key)
		s.head++
	}
	if s.head > 1024 && s.head > len(s.queue)/2 {
		s.queue = slices.Clone(s.queue[s.head:])
		s.head = 0
	}
}

// live counts the entries still inside the window without changing
// anything: the queue is in time order, so the ones that aged out are a
// prefix.
func (s *Store) live(now int64) int {
	q := s.queue[s.head:]
	return len(q) - sort.Search(len(q), func(i int) bool { return now-q[i].t < s.window })
}

// refusal is the error for any request while the store cannot vouch for
// its memory, or nil.
func (s *Store) refusal(now int64) error {
	switch {
	case s.closed:
		return ErrClosed
	case s.failUntil != 0 && now < s.failUntil:
		return &FailClosedError{Until: time.Unix(0, s.failUntil), Reason: s.failReason}
	case s.broken != nil:
		return &FailClosedError{Reason: s.broken.Error()}
	}
	return nil
}

func (s *Store) fullError(now int64) error {
	q := s.queue[s.head:]
	oldest := q[sort.Search(len(q), func(i int) bool { return now-q[i].t < s.window })].t
	return fmt.Errorf("%w: %d requests answered within %v; refusing new ones until %s",
		ErrFull, s.max, time.Duration(s.window), fmtTime(oldest+s.window))
}

// Check reports whether a request may be signed: nil, ErrReplay if it was
// answered inside the window, ErrFull, or a *FailClosedError. It records
// nothing and writes nothing: the caller records the request with Record
// once its signature exists. Record checks again (atomically), so Check
// is only there to avoid asking the user and the TPM for a signature
// that would be refused.
func (s *Store) Check(key [32]byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	if err := s.refusal(now); err != nil {
		return err
	}
	if t, ok := s.entries[key]; ok && now-t < s.window {
		return ErrReplay
	}
	if s.live(now) >= s.max {
		return s.fullError(now)
	}
	return nil
}

// Record remembers that the request with this key was answered. It
// returns nil only once the record is on disk (written and fsynced):
// the caller must send the response only then, and withhold it on any
// error. It refuses, as Check does, a request already recorded inside
// the window (also one recorded concurrently), a full store and a store
// failing closed. Concurrent Records share one write and one fsync.
func (s *Store) Record(key [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.advance()
	if err := s.refusal(now); err != nil {
		return err
	}
	s.prune(now)
	if _, ok := s.entries[key]; ok {
		return ErrReplay
	}
	if len(s.entries) >= s.max {
		if !s.fullLogged {
			s.fullLogged = true
			s.log.Warn("replay: the store is full inside the window; refusing new requests until the oldest ages out",
				"entries", len(s.entries), "window", time.Duration(s.window))
		}
		return s.fullError(now)
	}
	if s.fullLogged {
		s.fullLogged = false
		s.log.Info("replay: the store has room again", "entries", len(s.entries))
	}
	s.armed = true
	r := record{key: key, t: now}
	s.entries[key] = now
	s.queue = append(s.queue, r)
	s.enqueued++
	ticket := s.enqueued
	s.pending = append(s.pending, pendingRecord{r, ticket})
	for s.durable < ticket {
		if err := s.refusal(s.lastSeen); err != nil {
			// The write failed (broken) or Close gave up: the entry stays
			// in memory, so the request is still refused, and the caller
			// withholds the response.
			return err
		}
		if s.writing {
			s.cond.Wait()
			continue
		}
		s.commit()
	}
	return nil
}

// commit is one write by the leader: the next batch of pending records,
// appended with one fsync; or, when the log needs it (compaction, a
// fresh log after failing closed, repair after a failed write), a
// rewrite of the whole log from memory, which also commits everything
// pending. Called with mu held and no write under way; releases mu for
// the disk work.
func (s *Store) commit() {
	s.writing = true
	defer func() {
		s.writing = false
		s.cond.Broadcast()
	}()
	now := s.lastSeen
	s.prune(now)
	// A refusal that has run its course ends with a fresh log (keeping a
	// damaged one aside), and is cleared on disk only after that log is
	// durable: until then no response leaves (stateFile.FailClosedUntil).
	transition := s.failUntil != 0 && now >= s.failUntil
	damaged := transition && !s.logOK
	rewrite := transition || !s.logOK || s.f == nil || s.broken != nil ||
		s.fileRecords+len(s.pending) >= 2*(len(s.queue)-s.head)+compactSlack

	var buf []byte
	var end uint64
	var n int
	if rewrite {
		live := s.queue[s.head:]
		buf, n, end = encodeLog(live), len(live), s.enqueued
		s.pending = nil
	} else {
		k := min(len(s.pending), maxBatch)
		batch := make([]record, k)
		for i, p := range s.pending[:k] {
			batch[i] = p.record
		}
		buf, n, end = appendBatch(nil, batch), k, s.pending[k-1].ticket
		s.pending = slices.Delete(s.pending, 0, k)
	}
	// The state file says "armed" before the first record reaches the
	// log, so that the log's loss is noticed from then on; and before a
	// rewrite it stops vouching for the old log's size.
	pre := s.stateLocked()
	if rewrite {
		pre.LogSize = 0
	}
	writePre := !s.armedOnDisk && n > 0 || rewrite
	post := pre
	post.LastGood = now
	post.LogSize = int64(len(buf))
	if transition {
		post.FailClosedUntil, post.Reason = 0, ""
	}
	old := s.f

	s.mu.Unlock()
	var err error
	var f *os.File
	syncs := 0
	if writePre {
		err = s.writeState(pre)
		syncs += 2
	}
	if err == nil && rewrite {
		if old != nil {
			old.Close()
		}
		old = nil
		if damaged {
			s.keepDamaged()
		}
		if err = atomicfile.Write(s.path, buf); err == nil {
			syncs += 2
			f, err = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
		}
		if err == nil {
			// Also keeps the known-good time and the clock on disk current.
			err = s.writeState(post)
			syncs += 2
		}
	} else if err == nil {
		if _, err = old.Write(buf); err == nil {
			err = old.Sync()
			syncs++
		}
	}
	s.mu.Lock()

	s.fsyncs += uint64(syncs)
	if err != nil {
		if f != nil {
			f.Close()
		}
		if old != nil {
			old.Close()
		}
		s.f = nil
		s.broken = err
		s.log.Error("replay: cannot write the log; refusing to sign until it can be rewritten",
			"err", err, "retry_in", repairDelay)
		s.scheduleRepair()
		return
	}
	if writePre {
		s.armedOnDisk = pre.Armed
	}
	if transition {
		s.log.Info("replay: a full window has passed since the log was lost; accepting requests again with a fresh log",
			"reason", s.failReason)
		s.failUntil, s.failReason = 0, ""
	}
	if rewrite {
		if s.broken != nil {
			s.log.Info("replay: the log could be rewritten; accepting requests again")
		}
		s.f, s.fileRecords, s.logOK, s.broken = f, n, true, nil
	} else {
		s.fileRecords += n
	}
	s.durable = max(s.durable, end)
	s.lastGood = now
}

// scheduleRepair retries a failed write later. With mu held.
func (s *Store) scheduleRepair() {
	if s.closed || s.repair != nil {
		return
	}
	s.repair = time.AfterFunc(repairDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.repair = nil
		for s.writing {
			s.cond.Wait()
		}
		if s.closed || s.broken == nil {
			return
		}
		s.advance()
		s.commit() // a rewrite from memory; schedules another try if it fails
	})
}

// stateLocked is the state file for the store as it is now.
func (s *Store) stateLocked() stateFile {
	return stateFile{
		Armed:           s.armed,
		LastSeen:        s.lastSeen,
		LastGood:        s.lastGood,
		FailClosedUntil: s.failUntil,
		Reason:          s.failReason,
		LogSize:         s.syncedSize(),
	}
}

// syncedSize is the size of the log up to its last synced record (what
// the state file may vouch for); 0 when there is no sound log.
func (s *Store) syncedSize() int64 {
	if !s.logOK || s.f == nil {
		return 0
	}
	return int64(headerSize + s.fileRecords*recordSize)
}

// Status reports the store's health. Like Check, it changes nothing.
func (s *Store) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	live := s.live(now)
	st := Status{
		Healthy:     s.refusal(now) == nil,
		Entries:     live,
		MaxEntries:  s.max,
		Full:        live >= s.max,
		Window:      time.Duration(s.window),
		LastSeen:    time.Unix(0, now),
		FileRecords: s.fileRecords,
		Fsyncs:      s.fsyncs,
	}
	if s.lastGood != 0 {
		st.LastKnownGood = time.Unix(0, s.lastGood)
	}
	st.FileSize = s.syncedSize()
	var fc *FailClosedError
	switch err := s.refusal(now); {
	case errors.As(err, &fc):
		st.FailClosedUntil, st.Reason = fc.Until, fc.Reason
	case err != nil:
		st.Reason = err.Error()
	}
	return st
}

// Close waits for a write under way, saves the store's clock and closes
// the log. Records waiting for a write that cannot happen any more fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.writing || (len(s.pending) > 0 && s.broken == nil) {
		s.cond.Wait()
	}
	if s.closed {
		return nil
	}
	s.closed = true
	if s.repair != nil {
		s.repair.Stop()
		s.repair = nil
	}
	s.cond.Broadcast()
	err := s.writeState(s.stateLocked())
	if s.f != nil {
		err = errors.Join(err, s.f.Close())
		s.f = nil
	}
	return err
}
