package tpm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// crashing is the daemon's TPM connection and identity.json: it dies at
// the cut-th TPM command (before sending it, or after sending it with the
// response lost) or at the w-th identity write (before or after the file
// is replaced); once dead, nothing more reaches the TPM or the disk. In
// mode lose the connection only loses the cut-th response and the
// process lives on.
type crashing struct {
	next transport.TPM
	id   tpm.Identity // what identity.json holds

	cut, sent int
	mode      string // "before", "after", "lose", "write-before", "write-after"
	write     int
	writes    int
	dead      bool
}

func (c *crashing) Send(cmd []byte) ([]byte, error) {
	if c.dead {
		return nil, errKilled
	}
	c.sent++
	if c.sent != c.cut {
		return c.next.Send(cmd)
	}
	switch c.mode {
	case "before":
		c.dead = true
		return nil, errKilled
	case "after":
		c.next.Send(cmd)
		c.dead = true
		return nil, errKilled
	case "lose":
		c.next.Send(cmd)
		return nil, fmt.Errorf("%w", tpmtest.ErrInjectedClose)
	}
	return c.next.Send(cmd)
}

func (c *crashing) persist(id tpm.Identity) error {
	if c.dead {
		return errKilled
	}
	c.writes++
	if c.writes == c.write {
		if c.mode == "write-after" {
			c.id = id
		}
		c.dead = true
		return errKilled
	}
	c.id = id
	return nil
}

// TestResetKilledAtEveryStep kills authenticatorReset at every TPM command
// it sends (before the command, after it with the response lost, or only
// losing the response) and at every write of identity.json (before and
// after the file is replaced), then starts again on the same TPM and
// state: either everything of the old identity works (credential,
// hmac-secret output, sealed store key, PIN) or nothing of it does and the
// new identity is complete; never a mix, never a start that fails. The
// signature counter never goes back. So for a new identity and for one
// migrated from version 1.
func TestResetKilledAtEveryStep(t *testing.T) {
	total := 0
	t.Run("measure", func(t *testing.T) {
		m := tpm.NewMeter(tpmtest.Simulator(t))
		c := &crashing{next: m}
		e, id, err := tpm.New(c, tpm.NewIdentity(), tpm.Options{Persist: c.persist})
		if err != nil {
			t.Fatal(err)
		}
		c.id = id
		if err := e.SetPIN(pinHash("1234")); err != nil {
			t.Fatal(err)
		}
		c.sent, c.writes = 0, 0
		if _, err := e.Reset(); err != nil {
			t.Fatal(err)
		}
		total = c.sent
		t.Logf("a reset with a PIN set: %d TPM commands, %d identity writes", c.sent, c.writes)
		e.Close()
	})
	type trial struct {
		mode string
		n    int
	}
	var trials []trial
	for _, mode := range []string{"before", "after", "lose"} {
		for cut := 1; cut <= total+1; cut++ {
			trials = append(trials, trial{mode, cut})
		}
	}
	for w := 1; w <= 3; w++ {
		trials = append(trials, trial{"write-before", w}, trial{"write-after", w})
	}
	old, fresh := 0, 0
	for _, v1 := range []bool{false, true} {
		for _, tr := range trials {
			t.Run(fmt.Sprintf("v1=%v/%s-%d", v1, tr.mode, tr.n), func(t *testing.T) {
				sim := tpmtest.Simulator(t)
				c := &crashing{next: sim}
				first := tpm.NewIdentity()
				// v1: an identity from before reset epochs, migrated at this
				// start: its first reset also retires its seed.
				first.Bound = !v1
				e, id, err := tpm.New(c, first, tpm.Options{Persist: c.persist})
				if err != nil {
					t.Fatal(err)
				}
				c.id = id
				if err := e.SetPIN(pinHash("1234")); err != nil {
					t.Fatal(err)
				}
				// authenticatorConfig's settings go with the old identity
				// and come back as the defaults with the new one.
				configured := tpm.Settings{AlwaysUV: true, MinPINLength: 8, PINLength: 4}
				if err := e.SetSettings(configured); err != nil {
					t.Fatal(err)
				}
				cred, _ := newCredential(t, e, rp("example.org"))
				cr, err := e.CredRandom(cred, true)
				if err != nil {
					t.Fatal(err)
				}
				secret, blob, err := e.Seal()
				if err != nil {
					t.Fatal(err)
				}
				c0, _ := e.NextCounter()
				e.Close()

				e, id, err = tpm.New(c, c.id, tpm.Options{Persist: c.persist, RetryBudget: 1})
				if err != nil {
					t.Fatal(err)
				}
				c.id = id
				c.mode, c.sent, c.writes = tr.mode, 0, 0
				if tr.mode == "write-before" || tr.mode == "write-after" {
					c.write = tr.n
				} else {
					c.cut = tr.n
				}
				_, rerr := e.Reset()
				t.Logf("reset: %v", rerr)

				// check tells which identity an engine has, and that it has all
				// of that one and nothing of the other.
				check := func(e *tpm.Engine) bool {
					t.Helper()
					defer func() {
						if e.Identity().Pending != nil || c.id.Pending != nil {
							t.Fatal("the reset was left pending")
						}
					}()
					signErr := func() error { _, err := sign(e, cred, rp("example.org"), "m"); return err }()
					gotCR, crErr := e.CredRandom(cred, true)
					gotSecret, unsealErr := e.Unseal(blob)
					st, pinErr := e.PINStatus()
					settings, settingsErr := e.Settings()
					if crErr != nil || pinErr != nil || settingsErr != nil {
						t.Fatalf("CredRandom %v, PINStatus %v, Settings %v", crErr, pinErr, settingsErr)
					}
					if v, err := e.NextCounter(); err != nil || v <= c0 {
						t.Fatalf("signature counter %d after %d (%v)", v, c0, err)
					}
					switch {
					case signErr == nil:
						if !bytes.Equal(gotCR, cr) || unsealErr != nil || !bytes.Equal(gotSecret, secret) || !st.Set ||
							!settings.AlwaysUV || settings.MinPINLength != 8 {
							t.Fatalf("old credential signs but: hmac-secret same %v, unseal %v, PIN set %v, settings %+v",
								bytes.Equal(gotCR, cr), unsealErr, st.Set, settings)
						}
						return true
					case errors.Is(signErr, tpm.ErrForeignCredential):
						if bytes.Equal(gotCR, cr) || !errors.Is(unsealErr, tpm.ErrSealedForeign) || st.Set ||
							settings.AlwaysUV || settings.MinPINLength != 0 || settings.PINLength != 0 {
							t.Fatalf("old credential is gone but: hmac-secret same %v, unseal %v, PIN set %v, settings %+v",
								bytes.Equal(gotCR, cr), unsealErr, st.Set, settings)
						}
						if _, err := sign(e, mustCredential(t, e), rp("example.org"), "m"); err != nil {
							t.Fatalf("new credential after the reset: %v", err)
						}
						return false
					}
					t.Fatalf("old credential: %v", signErr)
					return false
				}
				if !c.dead {
					// The process lives on: its next operation settles the
					// reset.
					c.cut = 0
					live := check(e)
					e.Close()
					if live != check(restart(t, sim, c)) {
						t.Fatal("the restart disagrees with the live engine")
					}
				}

				// The next start, on a bare TPM that still holds what the dead
				// process loaded.
				e = restart(t, sim, c)
				isOld := check(e)
				if isOld {
					old++
				} else {
					fresh++
				}
				e.Close()
				// And the start after that agrees.
				e, _, err = tpm.New(sim, c.id, tpm.Options{FlushStale: true})
				if err != nil {
					t.Fatalf("second start: %v", err)
				}
				defer e.Close()
				if _, err := sign(e, cred, rp("example.org"), "m"); (err == nil) != isOld {
					t.Fatalf("second start changed its mind: %v", err)
				}
			})
		}
	}
	t.Logf("%d killed resets (a whole reset is %d TPM commands): %d kept the old identity, %d finished the new one", 2*len(trials), total, old, fresh)
	if old == 0 || fresh == 0 {
		t.Errorf("the trials never saw both outcomes (old %d, new %d)", old, fresh)
	}
}

// restart starts the engine again on the identity c's disk holds, as the
// daemon does on a bare TPM (flushing what a dead process left loaded).
func restart(t *testing.T, sim transport.TPM, c *crashing) *tpm.Engine {
	t.Helper()
	c.dead, c.cut, c.write = false, 0, 0
	e, id, err := tpm.New(sim, c.id, tpm.Options{Persist: c.persist, FlushStale: true})
	if err != nil {
		t.Fatalf("start after the killed reset: %v", err)
	}
	c.id = id
	return e
}

func mustCredential(t *testing.T, e *tpm.Engine) []byte {
	id, _ := newCredential(t, e, rp("example.org"))
	return id
}
