package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// The reset epoch.
//
// authenticatorReset must be irreversible: no credential ID made before
// it may sign again, and no hmac-secret output come back, even when every
// file of the state directory is restored from a backup taken before the
// reset. Whatever makes a credential load must therefore change inside the
// TPM, in a way nobody can undo. Changing the seed in the primary's
// template is not enough: the template is ours to choose, and whoever has
// the old identity.json can ask CreatePrimary for the old primary again.
//
// Each installation has a reset epoch: an NV index of type
// TPM_NT_COUNTER, which only goes up (TPM 2.0 Part 3, TPM2_NV_Increment),
// and which, when undefined and defined again, starts above every value
// any counter on the TPM has had (the first increment of an unwritten
// counter starts from the TPM's maxCount, which NV_UndefineSpace of a
// counter raises to that counter's value; reference implementation
// NV_Increment and NvDeleteIndex). The storage primary of an identity is
// the SRK template with the seed in unique.x, and with authPolicy =
// TPM2_PolicyNV(epoch index == the identity's epoch) and userWithAuth
// clear: the TPM lets it be the parent of a Load or Create only through a
// policy session in which the counter holds exactly that value. The
// policy digest names the index by its Name (type, attributes, size,
// authPolicy), so an index redefined in its place — an ordinary index
// holding the old value, say — never satisfies it.
//
// Using the primary through a policy for every credential would cost two
// TPM commands per request, so it is used once per start: under it is a
// storage key (identity.json's StorageKey), loaded with the policy at
// start; the primary is then flushed and the storage key is the parent
// of everything else (credential keys, the hmac-secret key, the sealed
// credential-store key) and the salt key of the sessions. Once the epoch
// has moved, the old storage key can never be loaded again, by anyone.
//
// A reset, written ahead so that a crash anywhere leaves the old identity
// or the new one:
//
//  1. the new primary (new seed, epoch+1) is created for its Name, and
//     identity.json records {new seed, epoch+1, that Name} as pending;
//  2. TPM2_NV_Increment of the epoch: the commit point, atomic in the
//     TPM. From here on the old storage key never loads again;
//  3. the new storage key and hmac-secret key are made, and identity.json
//     is saved without the pending record; the PIN index is removed.
//
// A start that finds a pending record reads the epoch: unchanged means the
// reset never committed (the record is dropped, the old identity goes on);
// moved means it did (step 3 is done again). An epoch that moved with no
// pending record means the state directory is older than a reset
// (ErrStaleIdentity).
//
// An identity written before epochs (identity.json version 1) has
// credentials under the plain primary; it is migrated at its first start
// (the epoch index is defined, the Name recorded) but stays unbound until
// its first reset, so that its credential IDs keep working. The daemon
// refuses a restored pre-reset copy of it just the same (its first reset
// defines a marker index derived from its seed, which a version 1 copy is
// checked against), but the TPM would still load its credentials for
// whoever builds the plain primary himself.

var (
	// ErrPrimaryMismatch: the storage primary is not the one recorded at
	// first run.
	ErrPrimaryMismatch = errors.New("tpm: the TPM's storage primary for this identity is not the one recorded in identity.json: " +
		"the TPM was cleared (TPM2_Clear, a firmware or BIOS TPM reset), or the state directory was copied from another machine, " +
		"or something between tpm-u2f and the TPM answers in its place. tpm-u2f does not salt its sessions to a key it cannot trust. " +
		"If the TPM was cleared or the directory comes from another machine, the credentials of this identity are gone for good: " +
		"move the state directory aside and start tpm-u2f again to make a new identity (and register the key again with every site)")
	// ErrStaleIdentity: the reset epoch has moved past this identity.
	ErrStaleIdentity = errors.New("tpm: this identity was reset: the TPM's reset epoch has moved past the one in identity.json. " +
		"The state directory was restored from a backup taken before a reset (or someone with TPM owner authorization " +
		"incremented or replaced the epoch index); the credentials of that identity were destroyed by the reset and cannot come back. " +
		"Move the state directory aside and start tpm-u2f again to make a new identity")
	// ErrEpochIndex: the reset epoch NV index is gone or is not the one we
	// defined.
	ErrEpochIndex = errors.New("tpm: the reset epoch NV index of this identity is missing or was replaced: " +
		"the TPM was cleared, or someone with TPM owner authorization undefined it; this identity's credentials cannot be used again. " +
		"Move the state directory aside and start tpm-u2f again to make a new identity")
)

// primaryTemplate is the TCG ECC P-256 SRK template (TCG TPM v2.0
// Provisioning Guidance, 7.5.1) with seed in unique.x; bound to an epoch
// it is usable only through epochPolicy.
func (e *Engine) primaryTemplate(seed [32]byte, bound bool, epoch uint64) (tpm2.TPMTPublic, error) {
	t := tpm2.ECCSRKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: append([]byte(nil), seed[:]...)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	})
	if !bound {
		return t, nil
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return t, err
	}
	if err := e.policyNV(epoch, 0).Update(calc); err != nil {
		return t, err
	}
	t.AuthPolicy = tpm2.TPM2BDigest{Buffer: calc.Hash().Digest}
	t.ObjectAttributes.UserWithAuth = false
	// No admin role either (our policy has no PolicyCommandCode).
	t.ObjectAttributes.AdminWithPolicy = true
	return t, nil
}

// policyNV is TPM2_PolicyNV(epoch index == epoch), read with the index's
// own (empty) authValue.
func (e *Engine) policyNV(epoch uint64, session tpm2.TPMISHPolicy) tpm2.PolicyNV {
	idx := tpm2.TPMHandle(e.id.EpochIndex)
	name := tpm2.TPM2BName{Buffer: e.id.EpochName}
	return tpm2.PolicyNV{
		AuthHandle:    tpm2.AuthHandle{Handle: idx, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:       tpm2.NamedHandle{Handle: idx, Name: name},
		PolicySession: session,
		OperandB:      tpm2.TPM2BOperand{Buffer: binary.BigEndian.AppendUint64(nil, epoch)},
		Operation:     tpm2.TPMEOEq,
	}
}

// epochPolicy is a one-off policy session that satisfies a primary bound
// to epoch, while the counter holds it.
func (e *Engine) epochPolicy(epoch uint64) tpm2.Session {
	return tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
		_, err := e.policyNV(epoch, h).Execute(t)
		if err != nil {
			// go-tpm flushes a one-off session whose command failed, not
			// one whose policy did.
			tpm2.FlushContext{FlushHandle: h}.Execute(t)
		}
		return err
	})
}

// createPrimary creates a primary from tmpl under the owner hierarchy.
func (e *Engine) createPrimary(tmpl tpm2.TPMTPublic) (tpm2.NamedHandle, tpm2.TPMTPublic, error) {
	var rsp *tpm2.CreatePrimaryResponse
	err := e.do("CreatePrimary", func() (err error) {
		rsp, err = tpm2.CreatePrimary{
			PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			InPublic:      tpm2.New2B(tmpl),
		}.Execute(e.t)
		return err
	})
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTPublic{}, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		e.flush(rsp.ObjectHandle)
		return tpm2.NamedHandle{}, tpm2.TPMTPublic{}, fmt.Errorf("tpm: parse primary public: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, *pub, nil
}

// identityPrimary creates the primary of e.id and checks its Name against
// the recorded one.
func (e *Engine) identityPrimary() (tpm2.NamedHandle, tpm2.TPMTPublic, error) {
	tmpl, err := e.primaryTemplate(e.id.Seed, e.id.Bound, e.id.Epoch)
	if err != nil {
		return tpm2.NamedHandle{}, tpm2.TPMTPublic{}, err
	}
	p, pub, err := e.createPrimary(tmpl)
	if err != nil {
		return p, pub, err
	}
	if len(e.id.PrimaryName) != 0 && !bytes.Equal(p.Name.Buffer, e.id.PrimaryName) {
		e.flush(p.Handle)
		e.log.Error("tpm storage primary Name mismatch", "recorded", fmt.Sprintf("%x", e.id.PrimaryName), "tpm", fmt.Sprintf("%x", p.Name.Buffer))
		return tpm2.NamedHandle{}, tpm2.TPMTPublic{}, ErrPrimaryMismatch
	}
	return p, pub, nil
}

// attach makes p the parent of everything: itself for an unbound
// identity; for a bound one, the storage key loaded under it through the
// epoch policy (p is flushed).
func (e *Engine) attach(p tpm2.NamedHandle, pub tpm2.TPMTPublic) error {
	if !e.id.Bound {
		e.srk, e.srkPub = p, pub
		return nil
	}
	defer e.flush(p.Handle)
	spub, spriv, ok := unpackWrapped(e.id.StorageKey)
	if !ok {
		return errors.New("tpm: identity.json's storage key is malformed")
	}
	var rsp *tpm2.LoadResponse
	if err := e.do("Load", func() (err error) {
		rsp, err = tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: p.Handle, Name: p.Name, Auth: e.epochPolicy(e.id.Epoch)},
			InPrivate:    *spriv,
			InPublic:     *spub,
		}.Execute(e.t)
		return err
	}); err != nil {
		return err
	}
	pubS, err := spub.Contents()
	if err != nil {
		e.flush(rsp.ObjectHandle)
		return err
	}
	e.srk, e.srkPub = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, *pubS
	return nil
}

// createStorageKey makes the storage key of a bound identity under p.
func (e *Engine) createStorageKey(p tpm2.NamedHandle) error {
	var rsp *tpm2.CreateResponse
	if err := e.do("Create", func() (err error) {
		rsp, err = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: p.Handle, Name: p.Name, Auth: e.epochPolicy(e.id.Epoch)},
			InPublic:     tpm2.New2B(tpm2.ECCSRKTemplate),
		}.Execute(e.t)
		return err
	}); err != nil {
		return err
	}
	e.id.StorageKey = packWrapped(rsp.OutPublic, rsp.OutPrivate)
	return nil
}

// startIdentity brings e.id up at start: provisions a new one, migrates a
// version 1 one, or checks the recorded primary and the epoch, finishing
// or rolling back a reset a crash interrupted. It leaves e.srk set.
// Called by New with e.mu held.
func (e *Engine) startIdentity() error {
	if e.id.EpochIndex == 0 {
		if !e.id.Bound {
			// A version 1 identity.json: refused if its seed was retired
			// by a reset since it was migrated (a copy restored from
			// before the upgrade and the reset).
			_, err := e.readNVPublic(retiredIndex(e.id.Seed))
			if err == nil {
				return fmt.Errorf("%w (this version 1 identity.json was migrated and reset before)", ErrStaleIdentity)
			}
			if !errors.Is(err, tpm2.TPMRCHandle) {
				return err
			}
		}
		if err := e.provisionEpoch(); err != nil {
			return err
		}
		p, pub, err := e.identityPrimary()
		if err != nil {
			return err
		}
		e.id.PrimaryName = p.Name.Buffer
		if e.id.Bound {
			if err := e.createStorageKey(p); err != nil {
				e.flush(p.Handle)
				return err
			}
		} else {
			e.log.Info("identity migrated: storage primary Name recorded and reset epoch defined; the primary stays the same until the next reset")
		}
		if err := e.attach(p, pub); err != nil {
			return err
		}
		return e.persist()
	}
	// The Name first: a cleared TPM must be named as such, not as a
	// missing epoch index.
	p, pub, err := e.identityPrimary()
	if err != nil {
		return err
	}
	v, err := e.readEpoch()
	if err != nil {
		e.flush(p.Handle)
		return err
	}
	switch {
	case v == e.id.Epoch && e.id.Pending != nil:
		e.log.Warn("a reset was interrupted before it committed; the identity stays as it was")
		e.id.Pending = nil
		if err := e.persist(); err != nil {
			e.flush(p.Handle)
			return err
		}
	case v > e.id.Epoch && e.id.Pending != nil:
		e.flush(p.Handle)
		e.log.Warn("a reset was interrupted after it committed; finishing it")
		return e.finishReset(v)
	case v > e.id.Epoch:
		e.flush(p.Handle)
		e.log.Error("reset epoch moved past this identity", "identity", e.id.Epoch, "tpm", v)
		return ErrStaleIdentity
	case v < e.id.Epoch:
		// A counter never goes back: not the TPM this identity's epoch
		// was read from.
		e.flush(p.Handle)
		e.log.Error("reset epoch below this identity's", "identity", e.id.Epoch, "tpm", v)
		return ErrEpochIndex
	}
	return e.attach(p, pub)
}

// retiredIndex is the NV index whose existence says that the version 1
// identity with this seed was reset: derived from the seed, since a
// version 1 identity.json records no epoch.
func retiredIndex(seed [32]byte) uint32 {
	h := sha256.Sum256(append([]byte("tpm-u2f retired version 1 seed\x00"), seed[:]...))
	return ownerNVFirst + binary.BigEndian.Uint32(h[:4])%(ownerNVLast-ownerNVFirst+1)
}

// provisionEpoch defines the identity's epoch counter (the signature
// counter's kind of index) and initialises it with a first increment.
func (e *Engine) provisionEpoch() error {
	idx, v, err := e.newCounter()
	if err != nil {
		return err
	}
	name, err := e.readNVPublic(idx) // now with TPMA_NV_WRITTEN
	if err != nil {
		return err
	}
	e.id.EpochIndex, e.id.EpochName, e.id.Epoch = idx, name.Buffer, v
	e.log.Info("reset epoch provisioned", "index", fmt.Sprintf("0x%08x", idx), "epoch", v)
	return nil
}

// readEpoch reads the epoch counter after checking that the index is the
// one we defined.
func (e *Engine) readEpoch() (uint64, error) {
	name, err := e.readNVPublic(e.id.EpochIndex)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return 0, fmt.Errorf("%w (index 0x%08x is not defined)", ErrEpochIndex, e.id.EpochIndex)
	}
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(name.Buffer, e.id.EpochName) {
		return 0, fmt.Errorf("%w (index 0x%08x has another Name)", ErrEpochIndex, e.id.EpochIndex)
	}
	nv := tpm2.NamedHandle{Handle: tpm2.TPMHandle(e.id.EpochIndex), Name: name}
	var rsp *tpm2.NVReadResponse
	if err := e.do("NV_Read", func() (err error) {
		rsp, err = tpm2.NVRead{AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: name, Auth: tpm2.PasswordAuth(nil)}, NVIndex: nv, Size: 8}.Execute(e.t)
		return err
	}); err != nil {
		return 0, err
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("tpm: NV_Read returned %d bytes for the epoch", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// Reset gives the installation a new identity (CTAP's authenticatorReset):
// the epoch moves on, so that no credential ID, hmac-secret output or
// sealed secret made before loads again, whatever files are restored; a
// new seed, storage key and hmac-secret key are made and the PIN index is
// removed. The signature counter's index is kept, so the counter still
// never goes back. The identity is saved through Options.Persist ahead of
// the increment and after it; Reset returns the identity now in use.
//
// When a TPM command fails after the pending record was saved, the old
// storage key is dropped all the same and the engine settles the reset
// (finishes or rolls it back, as the epoch says) at its next operation,
// or the next start.
func (e *Engine) Reset() (Identity, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.id, ErrClosed
	}
	if e.id.Pending != nil {
		committed, err := e.resumeReset()
		if err != nil {
			return e.id, err
		}
		if committed {
			return e.id, nil
		}
	}
	v, err := e.readEpoch()
	if err != nil {
		return e.id, err
	}
	if v != e.id.Epoch {
		e.closeLocked()
		return e.id, ErrStaleIdentity
	}
	pending := &PendingReset{Epoch: v + 1}
	rand.Read(pending.Seed[:])
	tmpl, err := e.primaryTemplate(pending.Seed, true, pending.Epoch)
	if err != nil {
		return e.id, err
	}
	p, _, err := e.createPrimary(tmpl)
	if err != nil {
		return e.id, err
	}
	e.flush(p.Handle)
	pending.PrimaryName = p.Name.Buffer
	e.id.Pending = pending
	if err := e.persist(); err != nil {
		e.id.Pending = nil
		return e.id, err
	}
	// The commit point.
	v, err = e.incrementCounter(e.id.EpochIndex)
	// Whatever the increment's outcome, the old storage key is not used
	// again until the epoch says the reset did not happen.
	e.pool.close()
	e.flush(e.srk.Handle)
	e.srk = tpm2.NamedHandle{}
	if err != nil {
		// A lost response leaves it unknown: the TPM says.
		committed, rerr := e.resumeReset()
		switch {
		case rerr != nil:
			return e.id, fmt.Errorf("%w (the reset is settled by the next operation or start)", err)
		case !committed:
			return e.id, err
		}
	} else if err := e.finishReset(v); err != nil {
		return e.id, fmt.Errorf("%w (the reset committed; it is finished by the next operation or start)", err)
	}
	e.log.Warn("tpm: identity reset: every credential made before is gone", "epoch", e.id.Epoch)
	return e.id, nil
}

// resumeReset settles a reset saved as pending whose commit this process
// did not see: finished if the epoch moved (true), rolled back if not.
// Called with e.mu held and e.srk not loaded.
func (e *Engine) resumeReset() (bool, error) {
	v, err := e.readEpoch()
	if err != nil {
		return false, err
	}
	switch {
	case v == e.id.Epoch:
		pending := e.id.Pending
		e.id.Pending = nil
		if err := e.persist(); err != nil {
			e.id.Pending = pending
			return false, err
		}
		p, pub, err := e.identityPrimary()
		if err != nil {
			return false, err
		}
		if err := e.attach(p, pub); err != nil {
			return false, err
		}
		e.pool.rebind(e.srk.Handle, e.srkPub)
		e.log.Warn("the reset did not commit; the identity stays as it was")
		return false, nil
	case v > e.id.Epoch:
		return true, e.finishReset(v)
	}
	return false, ErrEpochIndex
}

// finishReset makes the pending identity current once the epoch has moved
// to v: its primary, storage key and hmac-secret key; saves it; removes
// the PIN index. Running it again after a failure or a crash is harmless;
// on failure e.id is the pending one again. Called with e.mu held, e.srk
// not loaded.
func (e *Engine) finishReset(v uint64) (err error) {
	orig := e.id
	defer func() {
		if err != nil {
			if e.srk.Handle != 0 {
				e.flush(e.srk.Handle)
			}
			e.srk, e.id = tpm2.NamedHandle{}, orig
		}
	}()
	pending := *e.id.Pending
	if !e.id.Bound {
		// The first reset of a migrated identity: its credentials live
		// under the plain primary, which no epoch guards. The marker
		// makes the daemon refuse a version 1 copy of it.
		if err := e.defineCounter(retiredIndex(e.id.Seed)); err != nil && !errors.Is(err, tpm2.TPMRCNVDefined) {
			return err
		}
	}
	// The old identity's UV retry index goes with it: the epoch moved, so
	// that identity never comes back. Before the new identity is saved,
	// so a crash here reruns it (harmless) instead of leaking the index.
	if err := e.dropUVIndex(e.id.Seed); err != nil {
		return err
	}
	next := e.id
	next.Seed, next.Epoch, next.Bound, next.Pending = pending.Seed, v, true, nil
	next.HMACKey, next.StorageKey, next.PrimaryName = nil, nil, nil
	if next.PINIndex != 0 {
		if next.PINPending != 0 {
			if err := e.undefinePIN(next.PINPending); err != nil && !errors.Is(err, tpm2.TPMRCHandle) {
				return err
			}
		}
		next.PINIndex, next.PINPending = 0, next.PINIndex
	}
	if v != pending.Epoch {
		e.log.Warn("the reset epoch moved further than this reset moved it: someone else incremented it", "expected", pending.Epoch, "epoch", v)
	}
	e.id = next
	p, pub, err := e.identityPrimary()
	if err != nil {
		return err
	}
	if v == pending.Epoch && !bytes.Equal(p.Name.Buffer, pending.PrimaryName) {
		e.flush(p.Handle)
		return ErrPrimaryMismatch
	}
	e.id.PrimaryName = p.Name.Buffer
	if err := e.createStorageKey(p); err != nil {
		e.flush(p.Handle)
		return err
	}
	if err := e.attach(p, pub); err != nil {
		return err
	}
	if err := e.provisionHMACKey(); err != nil {
		return err
	}
	if err := e.persist(); err != nil {
		return err
	}
	if err := e.cleanPINIndexes(); err != nil {
		return err
	}
	if e.pool != nil {
		e.pool.rebind(e.srk.Handle, e.srkPub)
	}
	return e.afterIdentityChange()
}
