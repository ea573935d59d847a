package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/pin"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// AAGUID identifies tpm-u2f authenticators (random, fixed for the
// product; the same for every installation, as an AAGUID must be).
var AAGUID = [16]byte{0x7f, 0x3a, 0x52, 0xc4, 0x1e, 0x9b, 0x4d, 0x60, 0xa1, 0x0d, 0x8e, 0x55, 0x24, 0xb9, 0x61, 0x3c}

// HandleCBOR answers one CTAPHID_CBOR message: a command byte and its CBOR
// parameters, answered by a status byte and CBOR (CTAP 2.1 section 8.1).
// setStatus switches the KEEPALIVE status while the user is asked.
func (a *Authenticator) HandleCBOR(ctx context.Context, msg []byte, setStatus func(byte)) []byte {
	if setStatus == nil {
		setStatus = func(byte) {}
	}
	rsp, err := a.handleCBOR(ctx, msg, setStatus)
	if err != nil {
		st := ctap2.StatusOf(err)
		cmd := byte(0)
		if len(msg) > 0 {
			cmd = msg[0]
		}
		if st == ctap2.ErrOther {
			a.log.Error("ctap2 request failed", "cmd", fmt.Sprintf("0x%02x", cmd), "err", err)
		} else {
			a.log.Info("ctap2 request refused", "cmd", fmt.Sprintf("0x%02x", cmd), "status", fmt.Sprintf("0x%02x", byte(st)), "reason", err)
		}
		return []byte{byte(st)}
	}
	return append([]byte{byte(ctap2.OK)}, rsp...)
}

func (a *Authenticator) handleCBOR(ctx context.Context, msg []byte, setStatus func(byte)) ([]byte, error) {
	if len(msg) == 0 {
		return nil, ctap2.ErrInvalidLength
	}
	params := msg[1:]
	if msg[0] != ctap2.CmdGetNextAssertion {
		// Any other command ends a getNextAssertion sequence (CTAP 2.1
		// section 6.3).
		a.clearNext()
	}
	if msg[0] != ctap2.CmdCredentialMgmt && msg[0] != ctap2.CmdCredentialMgmtPreview {
		a.mgmt.clear()
	}
	switch msg[0] {
	case ctap2.CmdGetNextAssertion:
		if len(params) != 0 {
			return nil, ctap2.ErrInvalidLength
		}
		return a.getNextAssertion()
	case ctap2.CmdGetInfo:
		if len(params) != 0 {
			return nil, ctap2.ErrInvalidLength
		}
		return ctap2.Marshal(a.info())
	case ctap2.CmdMakeCredential:
		req, err := ctap2.DecodeMakeCredential(params)
		if err != nil {
			return nil, err
		}
		return a.makeCredential(ctx, req, setStatus)
	case ctap2.CmdGetAssertion:
		req, err := ctap2.DecodeGetAssertion(params)
		if err != nil {
			return nil, err
		}
		return a.getAssertion(ctx, req, setStatus)
	case ctap2.CmdReset:
		if len(params) != 0 {
			return nil, ctap2.ErrInvalidLength
		}
		return nil, a.reset(ctx, setStatus)
	case ctap2.CmdClientPIN:
		req, err := ctap2.DecodeClientPIN(params)
		if err != nil {
			return nil, err
		}
		return a.clientPIN(ctx, req)
	case ctap2.CmdCredentialMgmt, ctap2.CmdCredentialMgmtPreview:
		req, p, err := ctap2.DecodeCredMgmt(params)
		if err != nil {
			return nil, err
		}
		return a.credentialManagement(req, p)
	case ctap2.CmdSelection:
		if err := a.askUser(ctx, presence.Request{Operation: "select this key"}, setStatus); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, ctap2.ErrInvalidCommand
}

// info is what getInfo says. Versions, options and extensions grow with
// the implementation: nothing is claimed that is not done.
func (a *Authenticator) info() ctap2.Info {
	info := ctap2.Info{
		Versions:                 []string{"U2F_V2", "FIDO_2_0", "FIDO_2_1"},
		AAGUID:                   AAGUID[:],
		Options:                  map[string]bool{"rk": a.cfg.Resident != nil, "up": true, "plat": false},
		MaxMsgSize:               7609,
		MaxCredentialCountInList: 8,
		MaxCredentialIDLength:    255,
		Transports:               []string{"usb"},
		Algorithms:               []ctap2.CredentialParameter{{Type: "public-key", Alg: ctap2.AlgES256}},
		FirmwareVersion:          1,
	}
	if a.cfg.Resident != nil {
		info.Extensions = []string{"credProtect"}
		if a.cfg.Secrets != nil {
			info.Extensions = append(info.Extensions, "hmac-secret")
		}
		n := uint64(a.cfg.Resident.Remaining())
		info.RemainingDiscoverable = &n
	}
	if a.cfg.PIN != nil {
		set, err := a.pinSet()
		if err != nil {
			a.log.Error("reading the PIN state", "err", err)
		}
		info.Options["clientPin"] = set
		info.Options["pinUvAuthToken"] = true
		// Non-discoverable credentials need no PIN, as with U2F; a
		// discoverable one does once a PIN is set (section 6.1.2 step 6).
		info.Options["makeCredUvNotRqd"] = true
		info.PinUvAuthProtocols = []uint64{2, 1}
		info.MinPINLength = pin.MinLength
		if a.cfg.Resident != nil {
			info.Options["credMgmt"] = true
		}
	}
	return info
}

// resetWindow is how long after power-up a reset is accepted (CTAP 2.1
// section 6.6): a remote site cannot wipe a key that has been plugged in
// for a while.
const resetWindow = 10 * time.Second

// reset implements authenticatorReset: within 10 s of power-up, with the
// user's consent, every credential is wiped for good.
func (a *Authenticator) reset(ctx context.Context, setStatus func(byte)) error {
	if a.cfg.Reset == nil {
		return ctap2.ErrNotAllowed
	}
	if a.cfg.Now().Sub(time.Unix(0, a.powerUp.Load())) > resetWindow {
		a.log.Info("ctap2 reset refused: only within 10 s of plugging the key in (tpm-u2f replug)")
		return ctap2.ErrNotAllowed
	}
	if err := a.askUser(ctx, presence.Request{Operation: "reset the key and delete every credential on it"}, setStatus); err != nil {
		return err
	}
	if err := a.cfg.Reset(); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	a.clearNext()
	a.gate.reset()
	a.pin.powerCycle() // the PIN is gone, and with it every pinUvAuthToken
	a.log.Warn("the key was reset: every credential is gone")
	return nil
}

// askUser asks for presence the way CTAP2 does: the request waits (the
// client sees KEEPALIVE UPNEEDED), and CANCEL ends the wait.
func (a *Authenticator) askUser(ctx context.Context, req presence.Request, setStatus func(byte)) error {
	if a.Locked() {
		return ctap2.ErrOperationDenied
	}
	setStatus(statusUPNeeded)
	defer setStatus(statusProcessing)
	pctx, cancel := context.WithTimeout(ctx, a.cfg.PresenceTimeout)
	defer cancel()
	err := a.cfg.Presence.Confirm(pctx, req)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctap2.ErrKeepaliveCancel
	case errors.Is(err, presence.ErrTimeout), errors.Is(pctx.Err(), context.DeadlineExceeded):
		return ctap2.ErrUserActionTimeout
	}
	a.log.Info("user presence not given", "operation", req.Operation, "rp", req.RelyingParty, "reason", err)
	return ctap2.ErrOperationDenied
}

// KEEPALIVE statuses (CTAPHID, CTAP 2.1 section 11.2.9.1.5); token does
// not import ctaphid's constants for them to keep the layers apart.
const (
	statusProcessing byte = 1
	statusUPNeeded   byte = 2
)

// makeCredential implements authenticatorMakeCredential (CTAP 2.1 section
// 6.1.2) for non-discoverable credentials with packed self-attestation.
func (a *Authenticator) makeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest, setStatus func(byte)) ([]byte, error) {
	setStatus(statusProcessing)
	alg := false
	for _, p := range req.PubKeyCredParams {
		if p.Type == "public-key" && p.Alg == ctap2.AlgES256 {
			alg = true
			break
		}
	}
	if !alg {
		return nil, ctap2.ErrUnsupportedAlg
	}
	rk := ctap2.Option(req.Options, "rk", false)
	probe := func() error {
		return a.askUser(ctx, presence.Request{Operation: "select this key", RelyingParty: req.RP.ID}, setStatus)
	}
	uv, err := a.pinUvAuthForRequest(ctx, req.PinUvAuthParam, req.PinUvAuthProtocol, req.ClientDataHash, ctap2.PermMakeCredential, req.RP.ID, probe)
	if err != nil {
		return nil, err
	}
	if !uv && rk {
		// Section 6.1.2 step 6: with a PIN set, a discoverable credential
		// needs the PIN (makeCredUvNotRqd covers the others).
		if set, err := a.pinSet(); err != nil {
			return nil, err
		} else if set {
			return nil, ctap2.ErrPUATRequired
		}
	}
	if rk && a.cfg.Resident == nil {
		return nil, ctap2.ErrUnsupportedOption
	}
	credProtect, err := credProtectExtension(req.Extensions)
	if err != nil {
		return nil, err
	}
	hmacSecret, err := hmacSecretRequested(req.Extensions)
	if err != nil {
		return nil, err
	}
	if !ctap2.Option(req.Options, "up", true) || ctap2.Option(req.Options, "uv", false) && !uv {
		return nil, ctap2.ErrInvalidOption
	}
	rpHash := sha256.Sum256([]byte(req.RP.ID))
	op := presence.Request{Operation: "register", RelyingParty: req.RP.ID}
	for _, d := range req.ExcludeList {
		if d.Type != "public-key" || a.keys.Precheck(d.ID, rpHash) != nil {
			continue
		}
		if err := a.keys.UseCredential(d.ID, rpHash, func(crypto.Signer) error { return nil }); err != nil {
			continue
		}
		// Already registered here: the user confirms, then the platform
		// learns it (section 6.1.2 step 4).
		op.Operation = "confirm this key is already registered"
		if err := a.askUser(ctx, op, setStatus); err != nil {
			return nil, err
		}
		return nil, ctap2.ErrCredentialExcluded
	}
	if rk && a.cfg.Resident.Remaining() == 0 && !a.cfg.Resident.Exists(req.RP.ID, req.User.ID) {
		return nil, ctap2.ErrKeyStoreFull // before the user is asked for nothing
	}
	if err := a.askUser(ctx, op, setStatus); err != nil {
		return nil, err
	}
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	flags := ctap2.FlagUP | ctap2.FlagAT
	if uv {
		flags |= ctap2.FlagUV
	}
	exts := map[string]any{}
	if credProtect != 0 {
		exts["credProtect"] = credProtect
	}
	if hmacSecret && a.cfg.Secrets != nil {
		exts["hmac-secret"] = true
	}
	var extOut []byte
	if len(exts) > 0 {
		flags |= ctap2.FlagED
		if extOut, err = ctap2.Marshal(exts); err != nil {
			return nil, err
		}
	}
	var credID []byte
	var rsp ctap2.MakeCredentialResponse
	err = a.keys.NewCredential(rpHash, func(id []byte, k crypto.Signer) error {
		pub, ok := k.Public().(*ecdsa.PublicKey)
		if !ok {
			return errors.New("credential key is not ECDSA")
		}
		cose, err := ctap2.Marshal(coseKey(pub, ctap2.AlgES256))
		if err != nil {
			return err
		}
		credID = append([]byte(nil), id...)
		authData := authenticatorData(rpHash, flags, counter)
		authData = append(authData, AAGUID[:]...)
		authData = binary.BigEndian.AppendUint16(authData, uint16(len(id)))
		authData = append(authData, id...)
		authData = append(authData, cose...)
		authData = append(authData, extOut...)
		// Packed self-attestation (WebAuthn section 8.2): the credential
		// key signs authData || clientDataHash; no certificate, nothing
		// shared between credentials.
		d := sha256.Sum256(append(append([]byte(nil), authData...), req.ClientDataHash...))
		sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			return err
		}
		rsp = ctap2.MakeCredentialResponse{Fmt: "packed", AuthData: authData, AttStmt: map[string]any{"alg": ctap2.AlgES256, "sig": sig}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rk {
		err := a.cfg.Resident.Put(credstore.Credential{
			ID: credID, RPID: req.RP.ID, RPName: req.RP.Name, UserID: req.User.ID, UserName: req.User.Name,
			DisplayName: req.User.DisplayName, CredProtect: credProtect, Created: time.Now(),
		})
		if errors.Is(err, credstore.ErrFull) {
			return nil, ctap2.ErrKeyStoreFull
		}
		if err != nil {
			return nil, err
		}
	}
	a.log.Info("ctap2 registration", "rp", req.RP.ID, "discoverable", rk)
	return ctap2.Marshal(rsp)
}

func authenticatorData(rpHash [32]byte, flags byte, counter uint32) []byte {
	out := make([]byte, 0, 37+16+2+255+77)
	out = append(out, rpHash[:]...)
	out = append(out, flags)
	return binary.BigEndian.AppendUint32(out, counter)
}

// getAssertion implements authenticatorGetAssertion (CTAP 2.1 section
// 6.2.2) for credentials named in the allowList.
func (a *Authenticator) getAssertion(ctx context.Context, req *ctap2.GetAssertionRequest, setStatus func(byte)) ([]byte, error) {
	setStatus(statusProcessing)
	probe := func() error {
		return a.askUser(ctx, presence.Request{Operation: "select this key", RelyingParty: req.RPID}, setStatus)
	}
	uv, err := a.pinUvAuthForRequest(ctx, req.PinUvAuthParam, req.PinUvAuthProtocol, req.ClientDataHash, ctap2.PermGetAssertion, req.RPID, probe)
	if err != nil {
		return nil, err
	}
	if _, ok := req.Options["rk"]; ok {
		return nil, ctap2.ErrUnsupportedOption
	}
	if ctap2.Option(req.Options, "uv", false) && !uv {
		return nil, ctap2.ErrInvalidOption
	}
	up := ctap2.Option(req.Options, "up", true)
	rpHash := sha256.Sum256([]byte(req.RPID))
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
	if up {
		if err := a.checkReplay(assertionKey(rpHash, req.ClientDataHash, first.ID, up), req.RPID); err != nil {
			return nil, ctap2.ErrOperationDenied
		}
		// The TPM vouches for the credential before the user is asked.
		if err := a.keys.UseCredential(first.ID, rpHash, func(crypto.Signer) error { return nil }); err != nil {
			if errors.Is(err, ErrUnknownCredential) {
				return nil, ctap2.ErrNoCredentials
			}
			return nil, err
		}
		if err := a.askUser(ctx, presence.Request{Operation: "sign in", RelyingParty: req.RPID}, setStatus); err != nil {
			return nil, err
		}
		flags |= ctap2.FlagUP
	}
	rsp, err := a.assert(rpHash, req.RPID, req.ClientDataHash, flags, first, uv && len(creds) > 1, hs)
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
			creds: creds[1:], deadline: a.cfg.Now().Add(nextAssertionWindow), hmacSecret: hs}
		a.nextMu.Unlock()
	}
	return ctap2.Marshal(rsp)
}

// applicableCredentials finds the credentials a getAssertion may use
// (CTAP 2.1 section 6.2.2 step 7): those in the allowList that are ours,
// or every discoverable credential for the RP, newest first; without user
// verification, credProtect leaves out what needs it (section 12.1).
func (a *Authenticator) applicableCredentials(req *ctap2.GetAssertionRequest, rpHash [32]byte, uv bool) ([]credstore.Credential, error) {
	var out []credstore.Credential
	if len(req.AllowList) > 0 {
		for _, d := range req.AllowList {
			if d.Type != "public-key" || a.keys.Precheck(d.ID, rpHash) != nil {
				continue
			}
			c := credstore.Credential{ID: d.ID}
			if a.cfg.Resident != nil {
				if stored, ok := a.cfg.Resident.Find(d.ID); ok {
					c = *stored
				}
			}
			if c.CredProtect >= credProtectUVRequired && !uv {
				continue
			}
			return []credstore.Credential{c}, nil // the first applicable one
		}
		return nil, nil
	}
	if a.cfg.Resident == nil {
		return nil, nil
	}
	stored, err := a.cfg.Resident.List(rpHash)
	if err != nil {
		a.log.Warn("credential store: some entries could not be read", "err", err)
	}
	for _, c := range stored {
		if c.CredProtect <= credProtectUVOptional || uv {
			out = append(out, c)
		}
	}
	return out, nil
}

// credProtect levels (CTAP 2.1 section 12.1).
const (
	credProtectUVOptional         = 1
	credProtectUVOptionalWithList = 2
	credProtectUVRequired         = 3
)

func credProtectExtension(ext map[string]cbor.RawMessage) (uint8, error) {
	raw, ok := ext["credProtect"]
	if !ok {
		return 0, nil
	}
	var level uint64
	if err := cbor.Unmarshal(raw, &level); err != nil {
		return 0, ctap2.ErrCBORUnexpectedType
	}
	if level < credProtectUVOptional || level > credProtectUVRequired {
		return 0, ctap2.ErrInvalidParameter
	}
	return uint8(level), nil
}

func assertionKey(rpHash [32]byte, cdh, id []byte, up bool) [32]byte {
	return requestKey([]byte("ctap2 getAssertion"), rpHash[:], cdh, id, []byte{boolByte(up)})
}

// assert signs one assertion with c and records it in the replay store
// when the user was present.
// With names set (user verified, several accounts), the user entity
// carries the names too, since the token has no display to choose on.
func (a *Authenticator) assert(rpHash [32]byte, rpID string, cdh []byte, flags byte, c credstore.Credential, names bool, hs *hmacSecretInput) (*ctap2.GetAssertionResponse, error) {
	var extOut []byte
	if hs != nil {
		out, err := a.hmacSecretOutput(hs, c.ID, flags&ctap2.FlagUV != 0)
		if err != nil {
			return nil, err
		}
		if extOut, err = ctap2.Marshal(map[string]any{"hmac-secret": out}); err != nil {
			return nil, err
		}
		flags |= ctap2.FlagED
	}
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	authData := append(authenticatorData(rpHash, flags, counter), extOut...)
	d := sha256.Sum256(append(append([]byte(nil), authData...), cdh...))
	var sig []byte
	err = a.keys.UseCredential(c.ID, rpHash, func(k crypto.Signer) (err error) {
		sig, err = k.Sign(rand.Reader, d[:], crypto.SHA256)
		return err
	})
	if errors.Is(err, ErrUnknownCredential) {
		return nil, ctap2.ErrNoCredentials
	}
	if err != nil {
		return nil, err
	}
	if flags&ctap2.FlagUP != 0 {
		if err := a.recordReplay(assertionKey(rpHash, cdh, c.ID, true)); err != nil {
			return nil, err
		}
	}
	rsp := &ctap2.GetAssertionResponse{
		Credential: ctap2.CredentialDescriptor{Type: "public-key", ID: c.ID},
		AuthData:   authData,
		Signature:  sig,
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
// getAssertion it continues (CTAP 2.1 section 6.3: 30 seconds).
const nextAssertionWindow = 30 * time.Second

// nextAssertions is what authenticatorGetNextAssertion still has to
// return: valid for 30 s, and only until another command arrives.
type nextAssertions struct {
	rpHash     [32]byte
	rpID       string
	cdh        []byte
	flags      byte
	creds      []credstore.Credential
	deadline   time.Time
	hmacSecret *hmacSecretInput
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
	a.nextMu.Unlock()
	rsp, err := a.assert(n.rpHash, n.rpID, n.cdh, n.flags, c, n.flags&ctap2.FlagUV != 0, n.hmacSecret)
	if err != nil {
		return nil, err
	}
	return ctap2.Marshal(rsp)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// coseKey is a P-256 public key as a COSE_Key with the given algorithm.
func coseKey(pub *ecdsa.PublicKey, alg int64) *ctap2.COSEKey {
	return &ctap2.COSEKey{Kty: 2, Alg: alg, Crv: 1, X: pub.X.FillBytes(make([]byte, 32)), Y: pub.Y.FillBytes(make([]byte, 32))}
}
