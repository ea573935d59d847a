package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"

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
		if st == ctap2.ErrOther {
			a.log.Error("ctap2 request failed", "err", err)
		} else {
			a.log.Info("ctap2 request refused", "status", byte(st), "reason", err)
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
	switch msg[0] {
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
	return ctap2.Info{
		Versions:                 []string{"U2F_V2", "FIDO_2_0"},
		AAGUID:                   AAGUID[:],
		Options:                  map[string]bool{"rk": false, "up": true, "plat": false},
		MaxMsgSize:               7609,
		MaxCredentialCountInList: 8,
		MaxCredentialIDLength:    255,
		Transports:               []string{"usb"},
		Algorithms:               []ctap2.CredentialParameter{{Type: "public-key", Alg: ctap2.AlgES256}},
		FirmwareVersion:          1,
	}
}

// checkPinUvAuth rejects pinUvAuth parameters: no PIN/UV protocol is
// supported yet, and getInfo says so (no clientPin option).
func checkPinUvAuth(param *[]byte, protocol *uint64) error {
	if param == nil {
		return nil
	}
	if protocol == nil {
		return ctap2.ErrMissingParameter
	}
	return ctap2.ErrInvalidParameter
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
	if err := checkPinUvAuth(req.PinUvAuthParam, req.PinUvAuthProtocol); err != nil {
		return nil, err
	}
	if ctap2.Option(req.Options, "rk", false) {
		return nil, ctap2.ErrUnsupportedOption // discoverable credentials: not yet
	}
	if !ctap2.Option(req.Options, "up", true) || ctap2.Option(req.Options, "uv", false) {
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
	if err := a.askUser(ctx, op, setStatus); err != nil {
		return nil, err
	}
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	var rsp ctap2.MakeCredentialResponse
	err = a.keys.NewCredential(rpHash, func(id []byte, k crypto.Signer) error {
		pub, ok := k.Public().(*ecdsa.PublicKey)
		if !ok {
			return errors.New("credential key is not ECDSA")
		}
		cose, err := ctap2.Marshal(map[int]any{1: 2, 3: ctap2.AlgES256, -1: 1, -2: pub.X.FillBytes(make([]byte, 32)), -3: pub.Y.FillBytes(make([]byte, 32))})
		if err != nil {
			return err
		}
		authData := authenticatorData(rpHash, ctap2.FlagUP|ctap2.FlagAT, counter)
		authData = append(authData, AAGUID[:]...)
		authData = binary.BigEndian.AppendUint16(authData, uint16(len(id)))
		authData = append(authData, id...)
		authData = append(authData, cose...)
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
	a.log.Info("ctap2 registration", "rp", req.RP.ID)
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
	if err := checkPinUvAuth(req.PinUvAuthParam, req.PinUvAuthProtocol); err != nil {
		return nil, err
	}
	if _, ok := req.Options["rk"]; ok {
		return nil, ctap2.ErrUnsupportedOption
	}
	if ctap2.Option(req.Options, "uv", false) {
		return nil, ctap2.ErrInvalidOption
	}
	up := ctap2.Option(req.Options, "up", true)
	rpHash := sha256.Sum256([]byte(req.RPID))
	var id []byte
	for _, d := range req.AllowList {
		if d.Type == "public-key" && a.keys.Precheck(d.ID, rpHash) == nil {
			id = d.ID
			break
		}
	}
	if id == nil {
		// No discoverable credentials yet: without an allowList entry of
		// ours there is nothing to sign with.
		return nil, ctap2.ErrNoCredentials
	}
	var flags byte
	// A silent (up=false) assertion is a pre-flight, not a use: it is not
	// recorded, so it never makes the real request look like a replay.
	replayKey := requestKey([]byte("ctap2 getAssertion"), rpHash[:], req.ClientDataHash, id, []byte{boolByte(up)})
	if up {
		if err := a.checkReplay(replayKey, req.RPID); err != nil {
			return nil, ctap2.ErrOperationDenied
		}
		// The TPM vouches for the credential before the user is asked.
		if err := a.keys.UseCredential(id, rpHash, func(crypto.Signer) error { return nil }); err != nil {
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
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	authData := authenticatorData(rpHash, flags, counter)
	d := sha256.Sum256(append(append([]byte(nil), authData...), req.ClientDataHash...))
	var sig []byte
	err = a.keys.UseCredential(id, rpHash, func(k crypto.Signer) (err error) {
		sig, err = k.Sign(rand.Reader, d[:], crypto.SHA256)
		return err
	})
	if errors.Is(err, ErrUnknownCredential) {
		return nil, ctap2.ErrNoCredentials
	}
	if err != nil {
		return nil, err
	}
	if up {
		if err := a.recordReplay(replayKey); err != nil {
			return nil, err
		}
	}
	return ctap2.Marshal(ctap2.GetAssertionResponse{
		Credential: ctap2.CredentialDescriptor{Type: "public-key", ID: id},
		AuthData:   authData,
		Signature:  sig,
	})
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
