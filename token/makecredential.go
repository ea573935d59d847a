package token

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// makeCredential implements authenticatorMakeCredential (CTAP 2.1 section
// 6.1.2) for non-discoverable credentials with packed self-attestation.
func (a *Authenticator) makeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest, setStatus func(byte)) ([]byte, error) {
	setStatus(statusProcessing)
	// Section 6.1.2 step 3: the first algorithm of the RP's list, in its
	// order of preference, that this TPM can do.
	alg, ok := int64(0), false
	for _, p := range req.PubKeyCredParams {
		if p.Type == "public-key" && slices.Contains(a.keys.Algorithms(), p.Alg) {
			alg, ok = p.Alg, true
			break
		}
	}
	if !ok {
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
	builtIn, err := a.builtInUV(ctx, req.Options, req.PinUvAuthParam, uv, presence.Request{Operation: "register", RelyingParty: req.RP.ID}, setStatus)
	if err != nil {
		return nil, err
	}
	uv = uv || builtIn
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
	if err := a.checkExcludeList(ctx, req, rpHash, uv, setStatus); err != nil {
		return nil, err
	}
	if rk && a.cfg.Resident.Remaining() == 0 && !a.cfg.Resident.Exists(req.RP.ID, req.User.ID) {
		return nil, ctap2.ErrKeyStoreFull // before the user is asked for nothing
	}
	if !builtIn { // a finger on the reader was this request's presence
		if err := a.askUser(ctx, op, setStatus); err != nil {
			return nil, err
		}
	}
	a.presenceCollected()
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
	policy := CredentialPolicy{CredProtect: credProtect, Discoverable: rk}
	err = a.keys.NewCredential(rpHash, alg, policy, func(id []byte, k crypto.Signer) error {
		cose, err := credentialPublicKey(k.Public(), alg)
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
		sig, err := signWith(k, append(append([]byte(nil), authData...), req.ClientDataHash...))
		if err != nil {
			return err
		}
		rsp = ctap2.MakeCredentialResponse{Fmt: "packed", AuthData: authData, AttStmt: map[string]any{"alg": alg, "sig": sig}}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		// CANCEL while the TPM made the key (an RSA key takes seconds on a
		// real TPM, and a TPM command cannot be interrupted): the platform
		// gave up, so nothing is stored and no credential is announced. The
		// key made is a wrapped blob nobody holds.
		return nil, ctap2.ErrKeepaliveCancel
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

// checkExcludeList implements CTAP 2.1 section 6.1.2 step 4: a
// credential of ours for this RP in the excludeList ends the request with
// CREDENTIAL_EXCLUDED after the user was asked for presence, whatever the
// answer (a denial or a timeout too: the platform must learn that this key
// is registered, and only after a touch, so that a site cannot probe for
// keys silently). A credProtect-3 credential without user verification is
// left out, as if unknown. A TPM failure while checking an entry is an
// error: the request never goes on to register a duplicate.
func (a *Authenticator) checkExcludeList(ctx context.Context, req *ctap2.MakeCredentialRequest, rpHash [32]byte, uv bool, setStatus func(byte)) error {
	ids := make([][]byte, 0, len(req.ExcludeList))
	for _, d := range req.ExcludeList {
		if d.Type == "public-key" {
			ids = append(ids, d.ID)
		}
	}
	c, err := a.firstNamed(ids, rpHash, uv)
	if err != nil || c == nil {
		return err
	}
	err = a.askUser(ctx, presence.Request{Operation: "confirm this key is already registered", RelyingParty: req.RP.ID}, setStatus)
	if errors.Is(err, ctap2.ErrKeepaliveCancel) {
		return err
	}
	return ctap2.ErrCredentialExcluded
}

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
