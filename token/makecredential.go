package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
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

// coseKey is a P-256 public key as a COSE_Key with the given algorithm.
func coseKey(pub *ecdsa.PublicKey, alg int64) *ctap2.COSEKey {
	return &ctap2.COSEKey{Kty: 2, Alg: alg, Crv: 1, X: pub.X.FillBytes(make([]byte, 32)), Y: pub.Y.FillBytes(make([]byte, 32))}
}
