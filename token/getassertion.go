package token

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// getAssertion implements authenticatorGetAssertion (CTAP 2.1 section
// 6.2.2) for credentials named in the allowList.
func (a *Authenticator) getAssertion(ctx context.Context, req *ctap2.GetAssertionRequest, setStatus func(byte)) ([]byte, error) {
	setStatus(statusProcessing)
	if a.Locked() {
		// Locked means nothing signs: not a silent (up=false) assertion,
		// which asks nobody, nor its hmac-secret output. The answer is the
		// one a locked key gives when presence is asked.
		return nil, ctap2.ErrOperationDenied
	}
	probe := func() error {
		return a.askUser(ctx, presence.Request{Operation: "select this key", RelyingParty: req.RPID}, setStatus)
	}
	uv, err := a.pinUvAuthForRequest(ctx, req.PinUvAuthParam, req.PinUvAuthProtocol, req.ClientDataHash, ctap2.PermGetAssertion, req.RPID, probe)
	if err != nil {
		return nil, err
	}
	builtIn, err := a.builtInUV(ctx, req.Options, req.PinUvAuthParam, uv, presence.Request{Operation: "sign in", RelyingParty: req.RPID}, setStatus)
	if err != nil {
		return nil, err
	}
	uv = uv || builtIn
	if _, ok := req.Options["rk"]; ok {
		return nil, ctap2.ErrUnsupportedOption
	}
	if ctap2.Option(req.Options, "uv", false) && !uv {
		return nil, ctap2.ErrInvalidOption
	}
	up := ctap2.Option(req.Options, "up", true)
	rpHash := sha256.Sum256([]byte(req.RPID))
	gx, err := a.parseGetAssertionExtensions(req.Extensions)
	if err != nil {
		return nil, err
	}
	hs, err := a.parseHMACSecret(req.Extensions)
	if err != nil {
		return nil, err
	}
	creds, err := a.applicableCredentials(req, rpHash, uv)
	if err != nil {
		return nil, err
	}
	if len(creds) == 0 {
		hs.zero()
		return nil, ctap2.ErrNoCredentials
	}
	first := creds[0]
	var flags byte
	if uv {
		flags |= ctap2.FlagUV
	}
	// A silent (up=false) assertion is a pre-flight, not a use: it is not
	// recorded, so it never makes the real request look like a replay.
	// The credential is known to be ours before the user is asked:
	// applicableCredentials checked its tag, or had the TPM load a legacy
	// one.
	if up {
		if err := a.checkReplay(assertionKey(rpHash, req.ClientDataHash, first.ID, up), req.RPID); err != nil {
			return nil, ctap2.ErrOperationDenied
		}
		if !builtIn { // a finger on the reader was this request's presence
			if err := a.askUser(ctx, presence.Request{Operation: "sign in", RelyingParty: req.RPID}, setStatus); err != nil {
				return nil, err
			}
		}
		a.presenceCollected()
		flags |= ctap2.FlagUP
	}
	rsp, err := a.assert(rpHash, req.RPID, req.ClientDataHash, flags, first, uv && len(creds) > 1, hs, gx)
	if err != nil || len(creds) == 1 {
		hs.zero()
	}
	if err != nil {
		return nil, err
	}
	if len(creds) > 1 {
		rsp.NumberOfCredentials = uint64(len(creds))
		a.nextMu.Lock()
		a.next = &nextAssertions{rpHash: rpHash, rpID: req.RPID, cdh: req.ClientDataHash, flags: flags,
			creds: creds[1:], deadline: a.cfg.Now().Add(nextAssertionWindow), hmacSecret: hs, ext: gx}
		a.nextMu.Unlock()
	}
	return ctap2.Marshal(rsp)
}

// applicableCredentials finds the credentials a getAssertion may use
// (CTAP 2.1 section 6.2.2 step 7): the first in the allowList that is ours,
// alive and allowed without user verification if there was none; or,
// without an allowList, every discoverable credential for the RP, newest
// first, leaving out what credProtect keeps from an assertion without user
// verification (section 12.1: level 2 and 3 need it here). The levels are
// read from the credential IDs, which the TPM binds, not from the store.
func (a *Authenticator) applicableCredentials(req *ctap2.GetAssertionRequest, rpHash [32]byte, uv bool) ([]credstore.Credential, error) {
	if len(req.AllowList) > 0 {
		ids := make([][]byte, 0, len(req.AllowList))
		for _, d := range req.AllowList {
			if d.Type == "public-key" {
				ids = append(ids, d.ID)
			}
		}
		c, err := a.firstNamed(ids, rpHash, uv)
		if err != nil || c == nil {
			return nil, err
		}
		return []credstore.Credential{c.Credential}, nil
	}
	if a.cfg.Resident == nil {
		return nil, nil
	}
	stored, err := a.cfg.Resident.List(rpHash)
	if err != nil {
		a.log.Warn("credential store: some entries could not be read", "err", err)
	}
	var out []credstore.Credential
	for _, c := range stored {
		p, legacy, err := a.keys.Inspect(c.ID, rpHash)
		if err != nil {
			a.log.Warn("credential store: an entry's credential ID is not ours", "rp", c.RPID)
			continue
		}
		if !legacy {
			c.CredProtect = p.CredProtect
		}
		if c.CredProtect <= credProtectUVOptional || uv {
			out = append(out, c)
		}
	}
	return out, nil
}

func assertionKey(rpHash [32]byte, cdh, id []byte, up bool) [32]byte {
	return requestKey([]byte("ctap2 getAssertion"), rpHash[:], cdh, id, []byte{boolByte(up)})
}

// assert signs one assertion with c and records it in the replay store
// when the user was present.
// With names set (user verified, several accounts), the user entity
// carries the names too, since the token has no display to choose on.
func (a *Authenticator) assert(rpHash [32]byte, rpID string, cdh []byte, flags byte, c credstore.Credential, names bool, hs *hmacSecretInput, gx getAssertionExtensions) (*ctap2.GetAssertionResponse, error) {
	exts := map[string]any{}
	if hs != nil {
		out, err := a.hmacSecretOutput(hs, c.ID, flags&ctap2.FlagUV != 0)
		if err != nil {
			return nil, err
		}
		exts["hmac-secret"] = out
	}
	if gx.credBlob {
		// Section 12.2: the stored value, or an empty byte string.
		exts["credBlob"] = append([]byte{}, c.CredBlob...)
	}
	if gx.thirdPartyPayment {
		// CTAP 2.2's thirdPartyPayment: the flag the credential ID carries
		// (bound by the TPM); a legacy ID has none.
		p, _, err := a.keys.Inspect(c.ID, rpHash)
		exts["thirdPartyPayment"] = err == nil && p.ThirdPartyPayment
	}
	var extOut []byte
	if len(exts) > 0 {
		var err error
		if extOut, err = ctap2.Marshal(exts); err != nil {
			return nil, err
		}
		flags |= ctap2.FlagED
	}
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	authData := append(authenticatorData(rpHash, flags, counter), extOut...)
	var sig []byte
	var recorded func() error
	if flags&ctap2.FlagUP != 0 {
		// Recorded while the TPM loads the key and signs, durable before
		// the response leaves (recordWhileSigning).
		recorded = a.recordWhileSigning(assertionKey(rpHash, cdh, c.ID, true))
	}
	err = a.keys.UseCredential(c.ID, rpHash, func(k crypto.Signer) (err error) {
		sig, err = signWith(k, append(append([]byte(nil), authData...), cdh...))
		return err
	})
	if recorded != nil {
		if rerr := recorded(); rerr != nil && err == nil {
			return nil, rerr
		}
	}
	if errors.Is(err, ErrUnknownCredential) {
		return nil, ctap2.ErrNoCredentials
	}
	if err != nil {
		return nil, err
	}
	rsp := &ctap2.GetAssertionResponse{
		Credential: ctap2.CredentialDescriptor{Type: "public-key", ID: c.ID},
		AuthData:   authData,
		Signature:  sig,
	}
	if gx.largeBlobKey && c.UserID != nil {
		// Only a stored (discoverable) credential has a largeBlobKey
		// (section 12.3), as only one can be made with it.
		if rsp.LargeBlobKey, err = a.cfg.Secrets.LargeBlobKey(c.ID); err != nil {
			return nil, err
		}
	}
	if c.UserID != nil {
		// Without user verification only the user id, never the names.
		rsp.User = &ctap2.UserEntity{ID: c.UserID}
		if names {
			rsp.User.Name, rsp.User.DisplayName = c.UserName, c.DisplayName
		}
	}
	return rsp, nil
}

// nextAssertionWindow is how long getNextAssertion may follow the
// getAssertion or getNextAssertion before it (CTAP 2.1 section 6.3: the
// timer is reset by each, 30 seconds).
const nextAssertionWindow = 30 * time.Second

// nextAssertions is what authenticatorGetNextAssertion still has to
// return: valid for 30 s after the last getAssertion or getNextAssertion,
// and only until another command arrives.
type nextAssertions struct {
	rpHash     [32]byte
	rpID       string
	cdh        []byte
	flags      byte
	creds      []credstore.Credential
	deadline   time.Time
	hmacSecret *hmacSecretInput
	ext        getAssertionExtensions
}

func (a *Authenticator) clearNext() {
	a.nextMu.Lock()
	if a.next != nil {
		a.next.hmacSecret.zero()
	}
	a.next = nil
	a.nextMu.Unlock()
}

// getNextAssertion implements authenticatorGetNextAssertion (section 6.3).
func (a *Authenticator) getNextAssertion() ([]byte, error) {
	a.nextMu.Lock()
	n := a.next
	if n != nil && a.Locked() {
		n.hmacSecret.zero()
		a.next = nil
		a.nextMu.Unlock()
		return nil, ctap2.ErrOperationDenied
	}
	if n == nil || a.cfg.Now().After(n.deadline) || len(n.creds) == 0 {
		if n != nil {
			n.hmacSecret.zero()
		}
		a.next = nil
		a.nextMu.Unlock()
		return nil, ctap2.ErrNotAllowed
	}
	c := n.creds[0]
	n.creds = n.creds[1:]
	n.deadline = a.cfg.Now().Add(nextAssertionWindow) // section 6.3 step 7: reset the timer
	a.nextMu.Unlock()
	rsp, err := a.assert(n.rpHash, n.rpID, n.cdh, n.flags, c, n.flags&ctap2.FlagUV != 0, n.hmacSecret, n.ext)
	if err != nil {
		return nil, err
	}
	return ctap2.Marshal(rsp)
}
