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
	more, err := a.parseMakeCredentialExtensions(req.Extensions, rk, hmacSecret)
	if err != nil {
		return nil, err
	}
	defer more.hmacSecretMC.zero()
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
	// credBlob (CTAP 2.1 section 12.2): kept only with a discoverable
	// credential (our IDs are the TPM's, with no room for it); the output
	// says whether it was.
	var credBlob []byte
	if more.credBlob != nil {
		stored := rk && len(more.credBlob) <= maxCredBlobLength
		if stored {
			credBlob = more.credBlob
		}
		exts["credBlob"] = stored
	}
	if more.thirdPartyPayment {
		// CTAP 2.2's thirdPartyPayment: the flag goes into the credential
		// ID's policy below; the output says it was set, as a YubiKey 5.8
		// (Yubico's SDK reads it from authData) and pico-fido answer.
		exts["thirdPartyPayment"] = true
	}
	if more.minPinLength {
		if n, listed := a.minPINLengthFor(req.RP.ID); listed {
			exts["minPinLength"] = n
		}
	}
	format := attestationFormat(req.AttestationFormatsPreference)
	var credID, cose []byte
	var rsp ctap2.MakeCredentialResponse
	// authDataFor builds authData once the ID and the extension outputs
	// are known.
	authDataFor := func(id []byte) ([]byte, error) {
		ad := authenticatorData(rpHash, flags, counter)
		ad = append(ad, AAGUID[:]...)
		ad = binary.BigEndian.AppendUint16(ad, uint16(len(id)))
		ad = append(ad, id...)
		ad = append(ad, cose...)
		if len(exts) > 0 {
			ad[32] |= ctap2.FlagED
			extOut, err := ctap2.Marshal(exts)
			if err != nil {
				return nil, err
			}
			ad = append(ad, extOut...)
		}
		return ad, nil
	}
	attest := func(authData []byte, k crypto.Signer) error {
		if format == "none" {
			rsp = ctap2.MakeCredentialResponse{Fmt: "none", AuthData: authData, AttStmt: map[string]any{}}
			return nil
		}
		// Packed self-attestation (WebAuthn section 8.2): the credential
		// key signs authData || clientDataHash; no certificate, nothing
		// shared between credentials.
		sig, err := signWith(k, append(append([]byte(nil), authData...), req.ClientDataHash...))
		if err != nil {
			return err
		}
		rsp = ctap2.MakeCredentialResponse{Fmt: "packed", AuthData: authData, AttStmt: map[string]any{"alg": alg, "sig": sig}}
		return nil
	}
	policy := CredentialPolicy{CredProtect: credProtect, Discoverable: rk, ThirdPartyPayment: more.thirdPartyPayment}
	err = a.keys.NewCredential(rpHash, alg, policy, func(id []byte, k crypto.Signer) error {
		var err error
		if cose, err = credentialPublicKey(k.Public(), alg); err != nil {
			return err
		}
		credID = append([]byte(nil), id...)
		if more.hmacSecretMC != nil {
			// Its output needs the TPM, which is busy with this key: the
			// attestation follows once the key is flushed.
			return nil
		}
		authData, err := authDataFor(id)
		if err != nil {
			return err
		}
		return attest(authData, k)
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
	if more.hmacSecretMC != nil {
		// hmac-secret-mc (CTAP 2.2): the PRF at registration, the same
		// CredRandom getAssertion's hmac-secret uses with this uv.
		out, err := a.hmacSecretOutput(more.hmacSecretMC, credID, uv)
		if err != nil {
			return nil, err
		}
		exts["hmac-secret-mc"] = out
		authData, err := authDataFor(credID)
		if err != nil {
			return nil, err
		}
		if format == "none" {
			err = attest(authData, nil)
		} else {
			err = a.keys.UseCredential(credID, rpHash, func(k crypto.Signer) error { return attest(authData, k) })
		}
		if err != nil {
			return nil, err
		}
	}
	if more.largeBlobKey {
		if rsp.LargeBlobKey, err = a.cfg.Secrets.LargeBlobKey(credID); err != nil {
			return nil, err
		}
	}
	if rk {
		err := a.cfg.Resident.Put(credstore.Credential{
			ID: credID, RPID: req.RP.ID, RPName: req.RP.Name, UserID: req.User.ID, UserName: req.User.Name,
			DisplayName: req.User.DisplayName, CredProtect: credProtect, Created: time.Now(), CredBlob: credBlob,
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

// attestationFormats are getInfo's attestationFormats (CTAP 2.2 section
// 6.4, 0x16), the default first.
var attestationFormats = []string{"packed", "none"}

// attestationFormat picks the first format of the RP's
// attestationFormatsPreference (CTAP 2.2 section 6.1.1, 0x0B) that we
// have; unknown ones are ignored, and with none of ours the default,
// packed, is used.
func attestationFormat(pref []string) string {
	for _, f := range pref {
		if slices.Contains(attestationFormats, f) {
			return f
		}
	}
	return attestationFormats[0]
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
