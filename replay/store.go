package replay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"
)

var (
	// ErrReplay: the request was answered inside the window.
	ErrReplay = errors.New("replay: request already answered")
	// ErrFailClosed: the store was lost or damaged and refuses every
	// signature until a window has passed. The error says until when.
	ErrFailClosed = errors.New("replay: store failing closed")
	// ErrFull: MaxEntries requests were answered inside the window.
	// Forgetting one of them could let it be replayed, so the store refuses
	// new ones until old ones age out.
	ErrFull = errors.New("replay: store full")
)

// Options tune a Store.
type Options struct {
	Window     time.Duration    // default 10 minutes
	MaxEntries int              // default 100000
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger
}

// Key hashes the parts of a request into a store key. Each part is
// length-prefixed, so ("ab","c") and ("a","bc") differ.
func Key(parts ...[]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("tpm-u2f replay key v1\x00"))
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// Store is the replay store. See the package doc for its concurrency rules.
type Store struct {
	path, statePath string
	opt             Options
	log             *slog.Logger

	mu        sync.Mutex
	cond      *sync.Cond
	f         *os.File
	entries   map[[32]byte]int64 // unix nanos of the signature
	records   int                // records in the file
	compactAt int                // rewrite when records reaches this
	lastSeen  int64              // the latest time ever seen: the clock never goes back for us
	closedAt  int64              // fail closed until (unix nanos); 0 when healthy
	armed     bool               // the token has signed before
	pending   [][recordSize]byte
	tickets   uint64 // records handed to the committer
	durable   uint64 // records on disk
	syncing   bool
	writeErr  error
	fsyncs    uint64
}

// Status describes the store for `tpm-u2f status`.
type Status struct {
	Healthy         bool
	FailClosedUntil time.Time // zero when healthy
	Entries         int
	FileRecords     int
	Fsyncs          uint64
	Window          time.Duration
	LastSeen        time.Time
}

// Open opens (or creates) the store at path; a side file path+".state"
// remembers whether the token has signed before and any refusal deadline.
func Open(path string, opt Options) (*Store, error) {
	if opt.Window <= 0 {
		opt.Window = 10 * time.Minute
	}
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = 100000
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, statePath: path + ".state", opt: opt, log: opt.Logger, entries: make(map[[32]byte]int64)}
	s.cond = sync.NewCond(&s.mu)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

type stateFile struct {
	Armed           bool  `json:"armed"`
	LastSeen        int64 `json:"last_seen_unix_nano"`
	FailClosedUntil int64 `json:"fail_closed_until_unix_nano,omitempty"`
}

func (s *Store) now() int64 {
	t := s.opt.Now().UnixNano()
	if t > s.lastSeen {
		s.lastSeen = t
	}
	return s.lastSeen
}

func (s *Store) load() error {
	var st stateFile
	stateBytes, err := os.ReadFile(s.statePath)
	switch {
	case err == nil:
		if jerr := json.Unmarshal(stateBytes, &st); jerr != nil {
			// A damaged state file: assume the worst, that we had signed.
			s.log.Error("replay: state file is damaged; assuming the token has signed before", "path", s.statePath)
			st = stateFile{Armed: true}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("replay: %w", err)
	}
	s.armed, s.lastSeen = st.Armed, st.LastSeen
	now := s.now()

	data, err := os.ReadFile(s.path)
	var damaged string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if s.armed {
			damaged = "the replay store is missing"
		}
	case err != nil:
		return fmt.Errorf("replay: %w", err)
	default:
		recs, torn, derr := decode(data)
		if derr != nil {
			damaged = derr.Error()
			break
		}
		if torn > 0 {
			// A crash in the middle of an append: the response for that
			// signature never left, so dropping the partial record is safe.
			s.log.Warn("replay: dropping a torn record at the end of the store", "bytes", torn)
		}
		if len(recs) > 0 {
			s.armed = true
		}
		for _, r := range recs {
			if r.when > s.lastSeen {
				s.lastSeen = r.when
			}
			s.entries[r.key] = r.when
		}
		now = s.now()
	}
	if damaged != "" {
		// RFC 4120 section 10: having lost track of what was answered, refuse
		// until the window has passed. Counted from now, the moment the loss
		// was found, which is after every signature the lost store covered.
		until := now + int64(s.opt.Window)
		if st.FailClosedUntil > until {
			until = st.FailClosedUntil
		}
		s.closedAt = until
		s.entries = make(map[[32]byte]int64)
		s.log.Error("replay: store lost or damaged; refusing to sign until the window has passed",
			"reason", damaged, "until", time.Unix(0, until).UTC().Format(time.RFC3339))
	} else if st.FailClosedUntil > now {
		s.closedAt = st.FailClosedUntil
		s.log.Error("replay: still refusing to sign after an earlier loss of the store",
			"until", time.Unix(0, st.FailClosedUntil).UTC().Format(time.RFC3339))
	}
	if damaged != "" || s.closedAt != 0 {
		if err := s.saveState(); err != nil {
			return err
		}
	}
	return s.rewrite()
}

func (s *Store) saveState() error {
	b, _ := json.Marshal(stateFile{Armed: s.armed, LastSeen: s.lastSeen, FailClosedUntil: s.closedAt})
	return atomicfile.Write(s.statePath, b)
}

// rewrite compacts the store: a new file with the entries still inside the
// window, written aside, synced and renamed over the old one.
func (s *Store) rewrite() error {
	now := s.now()
	var buf bytes.Buffer
	buf.WriteString(magic)
	n := 0
	for k, t := range s.entries {
		if now-t >= int64(s.opt.Window) {
			delete(s.entries, k)
			continue
		}
		r := encodeRecord(k, t)
		buf.Write(r[:])
		n++
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if err := atomicfile.Write(s.path, buf.Bytes()); err != nil {
		return fmt.Errorf("replay: compact: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	// Compacting again after as many records as are live (and at least
	// 1024) keeps the file within about twice the live entries, at an
	// amortised cost of one rewrite per that many signatures.
	s.f, s.records, s.compactAt = f, n, 2*n+1024
	return nil
}

// Check returns nil when key may be signed: it was not answered inside the
// window and the store is healthy. It has no side effects.
func (s *Store) Check(key [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.closedAt != 0 {
		if now < s.closedAt {
			return fmt.Errorf("%w until %s", ErrFailClosed, time.Unix(0, s.closedAt).UTC().Format(time.RFC3339))
		}
		s.log.Info("replay: the window has passed since the store was lost; signing again")
		s.closedAt = 0
		s.saveState()
	}
	if t, ok := s.entries[key]; ok && now-t < int64(s.opt.Window) {
		return ErrReplay
	}
	return nil
}

// Record stores key durably; it returns when the entry is on disk.
func (s *Store) Record(key [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	now := s.now()
	if s.closedAt != 0 && now < s.closedAt {
		return ErrFailClosed
	}
	if len(s.entries) >= s.opt.MaxEntries {
		for s.syncing {
			s.cond.Wait()
		}
		if err := s.rewrite(); err != nil { // drops what aged out
			return err
		}
		if len(s.entries) >= s.opt.MaxEntries {
			s.log.Warn("replay: store full inside the window; refusing new signatures until entries age out", "entries", len(s.entries))
			return ErrFull
		}
	}
	if !s.armed {
		s.armed = true
		if err := s.saveState(); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	s.entries[key] = now
	s.pending = append(s.pending, encodeRecord(key, now))
	s.tickets++
	mine := s.tickets
	for s.durable < mine {
		if s.writeErr != nil {
			return s.writeErr
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		// Leader: write everything pending with one fsync.
		s.syncing = true
		batch, end, f := s.pending, s.tickets, s.f
		s.pending = nil
		s.mu.Unlock()
		err := appendSync(f, batch)
		s.mu.Lock()
		s.syncing = false
		s.fsyncs++
		if err != nil {
			// A store we could not write is a store we cannot trust.
			s.writeErr = fmt.Errorf("replay: write: %w", err)
			s.log.Error("replay: cannot write the store; refusing to sign", "err", err)
		} else {
			s.durable = end
			s.records += len(batch)
		}
		s.cond.Broadcast()
	}
	if s.records >= s.compactAt && !s.syncing {
		if err := s.rewrite(); err != nil {
			s.log.Error("replay: compaction failed", "err", err)
		}
	}
	return nil
}

func appendSync(f *os.File, batch [][recordSize]byte) error {
	buf := make([]byte, 0, len(batch)*recordSize)
	for _, r := range batch {
		buf = append(buf, r[:]...)
	}
	if _, err := f.Write(buf); err != nil {
		return err
	}
	return f.Sync()
}

// Status reports the store's health.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := Status{Healthy: (s.closedAt == 0 || now >= s.closedAt) && s.writeErr == nil, Entries: len(s.entries),
		FileRecords: s.records, Fsyncs: s.fsyncs, Window: s.opt.Window, LastSeen: time.Unix(0, s.lastSeen)}
	if s.closedAt != 0 && now < s.closedAt {
		st.FailClosedUntil = time.Unix(0, s.closedAt)
	}
	return st
}

// Close saves the last time seen and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.syncing {
		s.cond.Wait()
	}
	s.saveState()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// On-disk format: a header, then fixed-size records.
const (
	magic      = "tpm-u2f replay v1\n"
	recordSize = 32 + 8 + 4 // key, unix nanos (big-endian), CRC-32C of both
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type record struct {
	key  [32]byte
	when int64
}

func encodeRecord(k [32]byte, when int64) [recordSize]byte {
	var r [recordSize]byte
	copy(r[:32], k[:])
	binary.BigEndian.PutUint64(r[32:40], uint64(when))
	binary.BigEndian.PutUint32(r[40:], crc32.Checksum(r[:40], castagnoli))
	return r
}

// DecodeError is a damaged store file.
type DecodeError struct{ Reason string }

func (e *DecodeError) Error() string { return "replay: damaged store: " + e.Reason }

// decode parses a store file. A partial record at the end is a torn write
// (its byte count is returned); anything else wrong is a DecodeError.
func decode(data []byte) (recs []record, torn int, err error) {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return nil, 0, &DecodeError{"bad header"}
	}
	body := data[len(magic):]
	torn = len(body) % recordSize
	body = body[:len(body)-torn]
	for off := 0; off < len(body); off += recordSize {
		r := body[off : off+recordSize]
		if crc32.Checksum(r[:40], castagnoli) != binary.BigEndian.Uint32(r[40:]) {
			return nil, 0, &DecodeError{fmt.Sprintf("bad checksum in record %d", off/recordSize)}
		}
		recs = append(recs, record{key: [32]byte(r[:32]), when: int64(binary.BigEndian.Uint64(r[32:40]))})
	}
	return recs, torn, nil
}
