package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
)

// stateFile is the side file next to the log (replay.state). It is what
// lets the store tell a fresh install (no log because nothing was ever
// signed) from a lost log (RFC 4120 section 10: refuse until the window
// has passed). It is small and rewritten atomically, never appended.
type stateFile struct {
	// Armed: the token has recorded a signature. Written before the first
	// record reaches the log, so a log lost after that is always noticed.
	Armed bool `json:"armed"`
	// LastSeen is the latest time the store has seen (its clock never
	// goes back); LastGood the last time the log was known intact.
	LastSeen int64 `json:"last_seen_unix_nano"`
	LastGood int64 `json:"last_good_unix_nano,omitempty"`
	// FailClosedUntil, when set, is a refusal in force: a restart does
	// not end it. While it is set on disk no signature has been answered
	// since the loss was found (the refusal is cleared only after the
	// fresh log is durable), which is why a reopen keeps, and does not
	// extend, this deadline.
	FailClosedUntil int64  `json:"fail_closed_until_unix_nano,omitempty"`
	Reason          string `json:"reason,omitempty"`
	// LogSize is how many bytes of the log were synced when this was
	// written (at open, after a rewrite, at a clean close; the log only
	// grows in between). Damage inside them is corruption, never a torn
	// append, and a log shorter than this lost records. 0 while a rewrite
	// is under way, so a crash in the middle of one is not taken for
	// truncation.
	LogSize int64 `json:"log_size,omitempty"`
}

// statePathFor is <dir>/replay.state for <dir>/replay.log, and
// path+".state" for a log named otherwise.
func statePathFor(path string) string {
	if strings.HasSuffix(path, ".log") {
		return strings.TrimSuffix(path, ".log") + ".state"
	}
	return path + ".state"
}

// readState reads the state file; found is false when there is none. A
// damaged state file is read as "armed": the worst case, so that a lost
// log next to it still fails closed.
func (s *Store) readState() (st stateFile, found bool, err error) {
	path := s.statePath
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && s.legacyStatePath != "" {
		// The first version of this package kept it in replay.log.state.
		path = s.legacyStatePath
		b, err = os.ReadFile(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return stateFile{}, false, nil
	case err != nil:
		return stateFile{}, false, fmt.Errorf("replay: %w", err)
	}
	s.fixMode(path, "state file")
	if err := json.Unmarshal(b, &st); err != nil {
		s.log.Error("replay: the state file is damaged; assuming the token has signed before",
			"path", path, "err", err)
		return stateFile{Armed: true}, true, nil
	}
	return st, true, nil
}

func (s *Store) writeState(st stateFile) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.statePath, b); err != nil {
		return fmt.Errorf("replay: write %s: %w", filepath.Base(s.statePath), err)
	}
	return nil
}

// fixMode makes path 0600 if it is readable or writable by anyone but
// its owner, and says so: the file leaks which requests were answered,
// and anyone who could write it could make the token fail closed.
func (s *Store) fixMode(path, what string) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	if err := os.Chmod(path, 0o600); err != nil {
		s.log.Warn("replay: "+what+" is accessible to others and could not be fixed",
			"path", path, "mode", fi.Mode().Perm().String(), "err", err)
		return
	}
	s.log.Warn("replay: "+what+" was accessible to others; set to 0600",
		"path", path, "was", fi.Mode().Perm().String())
}
