package tpm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The PIN.
//
// The token never stores the PIN, or anything derived from it, on disk.
// Its CTAP pinHash (LEFT(SHA-256(PIN), 16)) is the authValue of an NV
// index of type TPM_NT_PIN_FAIL (TPM 2.0 Part 1, "PIN Fail Index";
// Part 2, TPMS_NV_PIN_COUNTER_PARAMETERS). Checking a PIN is an HMAC
// authorization of TPM2_NV_Read on that index: the TPM compares, and on a
// mismatch increments the index's pinCount inside the same command, so no
// crash of ours can fall between a guess and its count (the write-ahead
// the PIN rules ask for is the TPM's own). At pinCount == pinLimit the TPM
// refuses every authValue authorization of the index, across processes,
// restarts and copies of the state directory. TPMA_NV_NO_DA keeps the
// TPM-wide dictionary-attack lockout out of it: wrong PINs never lock out
// other TPM users, and other users' failures never block the PIN.
//
// A correct PIN clears pinCount in the same command (the reference TPM
// does; TestPINCountedByTheTPM checks it). Writing the index, which arms
// it and would clear the count on a TPM that did not, needs a policy:
// TPM2_NV_Write with PolicyAuthValue, i.e. the PIN again. So a process
// that can talk to the TPM but does not know the PIN cannot give itself
// more guesses, even with owner authorization. Changing the PIN
// defines a new index with the new authValue and then removes the old
// one; identity.json records which index is live (PINIndex) and which one
// is half-made or superseded (PINPending), and a start removes the
// latter, so a crash at any point leaves exactly the old or the new PIN.

// PINRetries is the pinLimit of every PIN index: CTAP 2.1's 8 retries.
const PINRetries = 8

var (
	// ErrWrongPIN: the TPM refused the pinHash and counted the failure.
	ErrWrongPIN = errors.New("tpm: wrong PIN")
	// ErrPINBlocked: the TPM has counted PINRetries failures; only a reset
	// (a new identity and PIN index) helps.
	ErrPINBlocked = errors.New("tpm: PIN blocked")
	// ErrPINNotSet: no PIN index is live.
	ErrPINNotSet = errors.New("tpm: no PIN set")
	// ErrPINSet: SetPIN when a PIN exists; use ChangePIN.
	ErrPINSet = errors.New("tpm: a PIN is already set")
	// ErrPINLost: identity.json names a PIN index that the TPM no longer
	// has (someone undefined it, or this is another TPM). The token fails
	// closed: it behaves as blocked until reset.
	ErrPINLost = errors.New("tpm: the PIN's NV index is gone from the TPM")
	// ErrNVIndexForeign: an NV index identity.json names (the PIN's or the
	// signature counter's) is not the one tpm-u2f defined: its type,
	// attributes, size, name algorithm, policy or Name differ. Someone with
	// owner authorization replaced it. The token fails closed: a foreign
	// PIN index counts as blocked until reset (its PIN is never tried), a
	// foreign counter stops the engine.
	ErrNVIndexForeign = errors.New("tpm: NV index is not the one tpm-u2f defined (replaced with owner authorization?)")
)

// PINStatus is what getPINRetries and `tpm-u2f pin status` report.
type PINStatus struct {
	Set     bool
	Retries int // PINRetries minus the failures the TPM has counted
}

var pinAttributes = tpm2.TPMANV{
	NT:          tpm2.TPMNTPinFail,
	NoDA:        true,
	AuthRead:    true, // the PIN check
	OwnerRead:   true, // reading the failure count without the PIN
	PolicyWrite: true, // resetting the count needs the PIN (pinWritePolicy)
}

// pinAuth is the authValue for a pinHash: its hex encoding. go-tpm
// v0.9.8 strips every zero byte from an authValue before using it as an
// HMAC key (hmacKeyFromAuthValue lacks a break), where the TPM strips only
// trailing zeros (Part 1, 19.6.5); a pinHash with a zero byte inside would
// never authorise. Hex has no zero bytes and loses nothing.
func pinAuth(pinHash []byte) []byte {
	return []byte(hex.EncodeToString(pinHash))
}

// pinPublic is the public area of a PIN index at idx. NV_DefineSpace
// defines it from here and every use checks the TPM's copy against it,
// so the two cannot drift apart.
func pinPublic(idx uint32) (tpm2.TPMSNVPublic, error) {
	policy, err := pinWritePolicy()
	if err != nil {
		return tpm2.TPMSNVPublic{}, err
	}
	return tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(idx),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: pinAttributes,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		DataSize:   8,
	}, nil
}

// pinWritePolicy is the index's authPolicy: TPM2_NV_Write, authorised with
// the index's authValue.
func pinWritePolicy() ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVWrite}).Update(calc); err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// cleanPINIndexes removes a PIN index that a crash, or a failed write of
// identity.json, left half-made or superseded, then records that it is
// gone. A pending index that is not the one we defined (ErrNVIndexForeign)
// is someone else's now: it is forgotten, not removed. Called with e.mu
// held (by New at start, and before and after every PIN change).
func (e *Engine) cleanPINIndexes() error {
	idx := e.id.PINPending
	if idx == 0 {
		return nil
	}
	if idx == e.id.PINIndex {
		return fmt.Errorf("tpm: identity names 0x%08x as both live and pending PIN index", e.id.PINIndex)
	}
	switch err := e.undefinePIN(idx); {
	case err == nil:
		e.log.Info("removed an unfinished or superseded PIN index", "index", fmt.Sprintf("0x%08x", idx))
	case errors.Is(err, tpm2.TPMRCHandle):
	case errors.Is(err, ErrNVIndexForeign):
		e.log.Warn("forgetting a pending PIN index that another program replaced", "index", fmt.Sprintf("0x%08x", idx))
	default:
		return err
	}
	next := e.id
	next.PINPending = 0
	return e.save(next)
}

// persist saves the identity through Options.Persist, before the TPM
// change it announces (write-ahead).
func (e *Engine) persist() error {
	if e.opt.Persist == nil {
		return nil
	}
	if err := e.opt.Persist(e.id); err != nil {
		return fmt.Errorf("tpm: saving identity: %w", err)
	}
	return nil
}

// save writes id through Options.Persist and makes it the engine's only
// once it is written: a failed write leaves memory as it was, which is
// what identity.json still says (Persist writes atomically), and the
// caller undoes the TPM change it was about to record.
func (e *Engine) save(id Identity) error {
	if e.opt.Persist != nil {
		if err := e.opt.Persist(id); err != nil {
			return fmt.Errorf("tpm: saving identity: %w", err)
		}
	}
	e.id = id
	return nil
}

// PINStatus reports whether a PIN is set and how many retries are left,
// reading the failure count with owner authorisation (no PIN needed).
func (e *Engine) PINStatus() (PINStatus, error) {
	var st PINStatus
	err := e.op(func() error {
		if e.id.PINIndex == 0 {
			return nil
		}
		st.Set = true
		count, limit, err := e.readPINCounter(e.id.PINIndex)
		if err != nil {
			return err
		}
		st.Retries = max(0, int(limit)-int(count))
		return nil
	})
	if errors.Is(err, ErrPINLost) || errors.Is(err, ErrNVIndexForeign) {
		return PINStatus{Set: true}, err
	}
	return st, err
}

func (e *Engine) readPINCounter(idx uint32) (count, limit uint32, err error) {
	name, err := e.pinIndexName(idx)
	if err != nil {
		return 0, 0, err
	}
	return e.readPINCount(idx, name)
}

// pinIndexName reads the PIN index's name after checking that the index
// is the one we defined (ErrNVIndexForeign otherwise); an index the TPM
// does not have is ErrPINLost. The NV_ReadPublic that yields the Name
// yields the public area too, so the check costs no TPM command.
func (e *Engine) pinIndexName(idx uint32) (tpm2.TPM2BName, error) {
	name, err := e.readOurNV(idx, "PIN", pinPublic)
	if errors.Is(err, tpm2.TPMRCHandle) {
		e.log.Error("PIN NV index missing; the token refuses PIN use until reset", "index", fmt.Sprintf("0x%08x", idx))
		return name, ErrPINLost
	}
	return name, err
}

// readPINCount reads {pinCount, pinLimit} with owner authorisation.
func (e *Engine) readPINCount(idx uint32, name tpm2.TPM2BName) (count, limit uint32, err error) {
	var rsp *tpm2.NVReadResponse
	err = e.do("NV_Read", func() (err error) {
		rsp, err = tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Size:       8,
		}.Execute(e.t)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, 0, fmt.Errorf("tpm: PIN index returned %d bytes", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint32(rsp.Data.Buffer), binary.BigEndian.Uint32(rsp.Data.Buffer[4:]), nil
}

// SetPIN arms a PIN index with pinHash as its authValue. It is
// ErrPINSet when a PIN exists. When identity.json cannot be written the
// new index is removed again and the error returned: memory and disk
// both still say no PIN.
func (e *Engine) SetPIN(pinHash []byte) error {
	return e.opOnce(func() error {
		if e.id.PINIndex != 0 {
			return ErrPINSet
		}
		if err := e.cleanPINIndexes(); err != nil {
			return err
		}
		idx, err := e.armPINIndex(pinHash)
		if err != nil {
			return err
		}
		next := e.id
		next.PINIndex, next.PINPending = idx, 0
		if err := e.save(next); err != nil {
			e.rollBackPIN()
			return err
		}
		return nil
	})
}

// ChangePIN checks oldHash (spending a retry if it is wrong, like
// CheckPIN) and replaces the PIN with newHash, with a fresh count. When
// identity.json cannot record the new index, the new index is removed
// and the old PIN stays, in memory, on disk and in the TPM.
func (e *Engine) ChangePIN(oldHash, newHash []byte) (retries int, err error) {
	err = e.opOnce(func() error {
		if e.id.PINIndex == 0 {
			return ErrPINNotSet
		}
		if err := e.cleanPINIndexes(); err != nil {
			return err
		}
		if retries, err = e.checkPIN(oldHash); err != nil {
			return err
		}
		old := e.id.PINIndex
		idx, err := e.armPINIndex(newHash)
		if err != nil {
			return err
		}
		// Commit: the new index is live, the old one is to be removed.
		next := e.id
		next.PINIndex, next.PINPending = idx, old
		if err := e.save(next); err != nil {
			e.rollBackPIN()
			return err
		}
		// The new PIN is in force from here on. Removing the old index
		// can still fail (the TPM, or the disk once more); it stays
		// recorded as pending, and the next change or start removes it.
		if err := e.cleanPINIndexes(); err != nil {
			e.log.Warn("the old PIN index stays until the next start", "err", err)
		}
		return nil
	})
	return retries, err
}

// rollBackPIN removes the index armPINIndex made (recorded as pending)
// after the identity naming it live could not be written. If the disk
// refuses the next write too, the index is gone and identity.json still
// names it pending, which the next start tidies.
func (e *Engine) rollBackPIN() {
	if err := e.cleanPINIndexes(); err != nil {
		e.log.Warn("could not finish undoing a PIN change; the next start finishes it", "err", err)
	}
}

// armPINIndex defines a new PIN index with authValue pinHash and writes
// its counter {0, PINRetries}. The index is recorded as pending before it
// exists, so a crash leaves nothing unaccounted for; on any failure it is
// removed again. On success memory and disk name it pending.
//
// The authValue is the first parameter of NV_DefineSpace (a TPM2B_AUTH),
// so the pooled session's parameter encryption (salted, EncryptIn)
// carries it across the bus encrypted (TestNoSecretOnTheTPMBus).
func (e *Engine) armPINIndex(pinHash []byte) (uint32, error) {
	if len(pinHash) == 0 || len(pinHash) > 16 {
		return 0, errors.New("tpm: PIN hash must be 1 to 16 bytes")
	}
	idx, err := e.freeNVIndex()
	if err != nil {
		return 0, err
	}
	pub, err := pinPublic(idx)
	if err != nil {
		return 0, err
	}
	next := e.id
	next.PINPending = idx
	if err := e.save(next); err != nil {
		return 0, err
	}
	if err := e.withSession("NV_DefineSpace", func(s tpm2.Session) error {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: s},
			Auth:       tpm2.TPM2BAuth{Buffer: pinAuth(pinHash)},
			PublicInfo: tpm2.New2B(pub),
		}.Execute(e.t)
		return err
	}); err != nil {
		e.rollBackPIN()
		return 0, err
	}
	if err := e.writePINCounter(idx, pinHash); err != nil {
		e.rollBackPIN()
		return 0, err
	}
	e.log.Info("PIN index armed", "index", fmt.Sprintf("0x%08x", idx))
	return idx, nil
}

// writePINCounter sets the index's counter to {0, PINRetries}, authorised
// by the policy (NV_Write + the PIN).
func (e *Engine) writePINCounter(idx uint32, pinHash []byte) error {
	name, err := e.readOurNV(idx, "PIN", pinPublic)
	if err != nil {
		return err
	}
	var data [8]byte
	binary.BigEndian.PutUint32(data[4:], PINRetries)
	return e.withPINSession(func(s tpm2.Session) error {
		if _, err := (tpm2.PolicyCommandCode{PolicySession: s.Handle(), Code: tpm2.TPMCCNVWrite}).Execute(e.t); err != nil {
			return err
		}
		if _, err := (tpm2.PolicyAuthValue{PolicySession: s.Handle()}).Execute(e.t); err != nil {
			return err
		}
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: s},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[:]},
		}.Execute(e.t)
		return err
	}, "NV_Write", pinHash, true)
}

// CheckPIN asks the TPM whether pinHash is the PIN. On success the failure
// count goes back to 0 and retries is PINRetries. A wrong PIN is
// ErrWrongPIN with the retries left, counted by the TPM; at the limit the
// error is ErrPINBlocked.
func (e *Engine) CheckPIN(pinHash []byte) (retries int, err error) {
	err = e.opOnce(func() (err error) {
		retries, err = e.checkPIN(pinHash)
		return err
	})
	return retries, err
}

func (e *Engine) checkPIN(pinHash []byte) (int, error) {
	idx := e.id.PINIndex
	if idx == 0 {
		return 0, ErrPINNotSet
	}
	// The index's name does not change when its count does: read it once.
	name, err := e.pinIndexName(idx)
	if err != nil {
		return 0, err
	}
	count, limit, err := e.readPINCount(idx, name)
	if err != nil {
		return 0, err
	}
	if count >= limit {
		return 0, ErrPINBlocked
	}
	err = e.withPINSession(func(s tpm2.Session) error {
		_, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(idx), Name: name, Auth: s},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
			Size:       8,
		}.Execute(e.t)
		return err
	}, "NV_Read", pinHash, false)
	switch {
	case err == nil:
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		count, limit, rerr := e.readPINCount(idx, name)
		if rerr != nil {
			return 0, errors.Join(ErrWrongPIN, rerr)
		}
		if count >= limit {
			return 0, ErrPINBlocked
		}
		return int(limit - count), ErrWrongPIN
	case errors.Is(err, tpm2.TPMRCNVAuthorization), errors.Is(err, tpm2.TPMRCNVLocked):
		return 0, ErrPINBlocked
	default:
		return 0, err
	}
	if count, _, err = e.readPINCount(idx, name); err != nil {
		return 0, err
	}
	if count > 0 {
		if err := e.writePINCounter(idx, pinHash); err != nil {
			return 0, err
		}
	}
	return PINRetries, nil
}

// withPINSession runs one command authorised by pinHash through a fresh
// salted session (HMAC, or policy when policy is true): PIN checks are
// rare, and a session that carried a PIN is never pooled. The salt keeps
// the session key, and so the HMAC key derived from the PIN, unknown on
// the bus. A session lost under us (seed 000) is replaced and the command
// re-run; a lost session never reaches the authorization check, so the
// TPM has counted nothing. A wrong PIN (AUTH_FAIL) is never retried.
func (e *Engine) withPINSession(f func(tpm2.Session) error, name string, pinHash []byte, policy bool) error {
	for attempt := 0; ; attempt++ {
		var (
			s     tpm2.Session
			close func() error
		)
		err := e.do("StartAuthSession", func() (err error) {
			opts := []tpm2.AuthOption{tpm2.Salted(e.srk.Handle, e.srkPub), tpm2.Auth(pinAuth(pinHash))}
			if policy {
				s, close, err = tpm2.PolicySession(e.t, tpm2.TPMAlgSHA256, 16, opts...)
			} else {
				s, close, err = tpm2.HMACSession(e.t, tpm2.TPMAlgSHA256, 16, opts...)
			}
			return err
		})
		if err != nil {
			return err
		}
		err = e.do(name, func() error { return f(s) })
		close()
		if err == nil {
			return nil
		}
		var ce *CommandError
		if errors.As(err, &ce) && isSessionLost(ce.Err) && attempt < maxSessionRetries {
			e.log.Warn("tpm session lost during a PIN operation; retrying on a fresh session", "command", name, "rc", ce.Err)
			continue
		}
		return err
	}
}

// isSessionLost is classify's faultSession without the authorization
// failures: with a PIN in the HMAC key, AUTH_FAIL means a wrong PIN.
func isSessionLost(err error) bool {
	if errors.Is(err, tpm2.TPMRCAuthFail) || errors.Is(err, tpm2.TPMRCBadAuth) {
		return false
	}
	return classify(err) == faultSession
}

// ClearPIN removes the PIN index (authenticatorReset). The identity is
// saved before the index goes, so a crash leaves at worst an orphan index
// recorded as pending, which the next start removes. A failed write
// leaves the PIN set, in memory and on disk.
func (e *Engine) ClearPIN() error {
	return e.opOnce(func() error {
		if e.id.PINIndex == 0 {
			return nil
		}
		if err := e.cleanPINIndexes(); err != nil {
			return err
		}
		next := e.id
		next.PINIndex, next.PINPending = 0, e.id.PINIndex
		if err := e.save(next); err != nil {
			return err
		}
		return e.cleanPINIndexes()
	})
}

// undefinePIN removes a PIN index, once NV_ReadPublic shows it is the one
// we defined: an index someone put in its place is not ours to remove.
func (e *Engine) undefinePIN(idx uint32) error {
	name, err := e.readOurNV(idx, "PIN", pinPublic)
	if err != nil {
		return err
	}
	return e.undefineNamed(idx, name)
}

// undefineNamed removes an owner index whose Name the caller read.
func (e *Engine) undefineNamed(idx uint32, name tpm2.TPM2BName) error {
	return e.do("NV_UndefineSpace", func() error {
		_, err := tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(idx), Name: name},
		}.Execute(e.t)
		return err
	})
}

// freeNVIndex draws an unused index from the owner range, so several
// installations share one TPM.
func (e *Engine) freeNVIndex() (uint32, error) {
	for range 32 {
		var b [4]byte
		rand.Read(b[:])
		idx := ownerNVFirst + binary.BigEndian.Uint32(b[:])%(ownerNVLast-ownerNVFirst+1)
		if idx == e.id.CounterIndex || idx == e.id.PINIndex || idx == e.id.PINPending || idx == settingsIndex(e.id.EpochName) ||
			idx == uvIndex(e.id.Seed) {
			continue
		}
		if _, err := e.readNVPublic(idx); err == nil {
			continue
		} else if !errors.Is(err, tpm2.TPMRCHandle) {
			return 0, err
		}
		return idx, nil
	}
	return 0, errors.New("tpm: no free NV index")
}
