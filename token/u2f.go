package token

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// U2F instructions (FIDO U2F Raw Message Formats v1.2, section 4-6).
const (
	insRegister     byte = 0x01
	insAuthenticate byte = 0x02
	insVersion      byte = 0x03
)

// AUTHENTICATE control bytes (P1), section 5.1.
const (
	authEnforcePresence     byte = 0x03
	authCheckOnly           byte = 0x07
	authDontEnforcePresence byte = 0x08
)

// ErrUnknownCredential means a credential ID is not one of ours for the
// relying party it came with. Keys implementations wrap it.
var ErrUnknownCredential = errors.New("token: unknown credential")

// HandleAPDU answers one U2F request message with response data and a
// status word. It never panics on malformed input.
func (a *Authenticator) HandleAPDU(ctx context.Context, msg []byte) []byte {
	rsp, err := a.handleAPDU(ctx, msg)
	if err != nil {
		var ae *APDUError
		if !errors.As(err, &ae) {
			a.log.Error("u2f request failed", "err", err)
			ae = apduErr(SWUnknown, "internal error")
		} else if ae.SW != SWConditionsNotSatisfied {
			a.log.Info("u2f request rejected", "sw", hex.EncodeToString([]byte{byte(ae.SW >> 8), byte(ae.SW)}), "reason", ae.Reason)
		}
		return withSW(nil, ae.SW)
	}
	return withSW(rsp, SWNoError)
}

func (a *Authenticator) handleAPDU(ctx context.Context, msg []byte) ([]byte, error) {
	if !a.U2FAllowed() {
		// alwaysUv is on: U2F is not offered (getInfo leaves U2F_V2 out,
		// and the CTAPHID server refuses CTAPHID_MSG when wired to
		// U2FAllowed); an APDU that reaches us anyway is refused whole.
		return nil, apduErr(SWInsNotSupported, "U2F is off while alwaysUv is on")
	}
	apdu, err := ParseAPDU(msg)
	if err != nil {
		return nil, err
	}
	if apdu.CLA != 0 {
		return nil, apduErr(SWClaNotSupported, "CLA not supported")
	}
	switch apdu.INS {
	case insVersion:
		if len(apdu.Data) != 0 {
			return nil, apduErr(SWWrongLength, "VERSION takes no data")
		}
		return []byte("U2F_V2"), nil
	case insRegister:
		return a.register(ctx, apdu)
	case insAuthenticate:
		return a.authenticate(ctx, apdu)
	}
	return nil, apduErr(SWInsNotSupported, "INS not supported")
}

// register implements U2F_REGISTER (section 4). The attestation
// certificate is self-signed by the new credential key itself: there is no
// shared batch key to copy, and no two registrations can be linked.
func (a *Authenticator) register(ctx context.Context, apdu *APDU) ([]byte, error) {
	if len(apdu.Data) != 64 {
		return nil, apduErr(SWWrongLength, "REGISTER needs 64 bytes")
	}
	challenge, app := apdu.Data[:32], [32]byte(apdu.Data[32:])
	if a.Locked() {
		return nil, apduErr(SWConditionsNotSatisfied, errLocked.Error())
	}
	if err := a.gate.check(requestKey([]byte{insRegister}, apdu.Data),
		presence.Request{Operation: "register", RelyingParty: AppIDName(app)}, a.cfg.PromptGrace); err != nil {
		return nil, apduErr(SWConditionsNotSatisfied, err.Error())
	}
	var rsp []byte
	err := a.keys.NewCredential(app, ctap2.AlgES256, CredentialPolicy{}, func(id []byte, k crypto.Signer) error {
		pub, ok := k.Public().(*ecdsa.PublicKey)
		if !ok {
			return errors.New("credential key is not ECDSA")
		}
		cert, err := selfSignedCertificate(k)
		if err != nil {
			return err
		}
		point := marshalPoint(pub)
		d := sha256.New()
		d.Write([]byte{0})
		d.Write(app[:])
		d.Write(challenge)
		d.Write(id)
		d.Write(point)
		sig, err := k.Sign(rand.Reader, d.Sum(nil), crypto.SHA256)
		if err != nil {
			return err
		}
		rsp = make([]byte, 0, 1+65+1+len(id)+len(cert)+len(sig))
		rsp = append(rsp, 0x05)
		rsp = append(rsp, point...)
		rsp = append(rsp, byte(len(id)))
		rsp = append(rsp, id...)
		rsp = append(rsp, cert...)
		rsp = append(rsp, sig...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.log.Info("u2f registration", "rp", AppIDName(app), "response_bytes", len(rsp))
	return rsp, nil
}

// authenticate implements U2F_AUTHENTICATE (section 5).
func (a *Authenticator) authenticate(ctx context.Context, apdu *APDU) ([]byte, error) {
	data := apdu.Data
	if len(data) < 65 {
		return nil, apduErr(SWWrongLength, "AUTHENTICATE shorter than 65 bytes")
	}
	challenge, app := data[:32], [32]byte(data[32:64])
	l := int(data[64])
	if len(data) != 65+l {
		return nil, apduErr(SWWrongLength, "key handle length does not match the data")
	}
	handle := data[65:]
	var up byte
	switch apdu.P1 {
	case authCheckOnly:
		// Answered also while locked: it signs nothing and asks nobody,
		// and refusing it would have to claim either "ours" (0x6985) or
		// "not ours" (0x6A80) for every handle, so a browser would think
		// the key already registered, or not, for any site.
		c, err := a.u2fCredential(handle, app)
		if err != nil {
			return nil, err
		}
		if mine, err := a.confirm(c, app); err != nil || !mine {
			return nil, credentialErr(cmp.Or(err, ErrUnknownCredential))
		}
		// "Despite the name this signals success" (section 5.1).
		return nil, apduErr(SWConditionsNotSatisfied, "check-only: key handle is ours")
	case authEnforcePresence:
		up = 1
	case authDontEnforcePresence:
	default:
		return nil, apduErr(SWIncorrectP1P2, "unknown AUTHENTICATE control byte")
	}
	// A request that was signed before is refused before anyone is asked
	// (seed 001: the key covers the whole request, not just the challenge,
	// so distinct requests never collide). 0x6A80 rather than 0x6985: a
	// U2F client polls on 0x6985 until it times out, while 0x6A80 makes it
	// give up at once, and no signature is made either way.
	replayKey := requestKey([]byte("u2f authenticate"), app[:], challenge, handle, []byte{up})
	if err := a.checkReplay(replayKey, AppIDName(app)); err != nil {
		return nil, apduErr(SWWrongData, err.Error())
	}
	// Presence is asked only for a handle that can be ours: never prompt
	// the user for a request that cannot succeed. A handle that is not
	// ours, deleted, or credProtect 3 is 0x6A80 whatever P1 says and
	// whether or not the token is locked.
	if _, err := a.u2fCredential(handle, app); err != nil {
		return nil, err
	}
	if a.Locked() {
		// Locked, nothing signs, with or without presence (P1 0x08 too).
		// 0x6985 is what a key waiting for a touch answers: the client
		// keeps polling as for an untouched key, and signs in once the
		// user unlocks, instead of giving up on a "bad key handle".
		return nil, apduErr(SWConditionsNotSatisfied, errLocked.Error())
	}
	presenceKey := requestKey([]byte{insAuthenticate}, data)
	ask := presence.Request{Operation: "sign in", RelyingParty: AppIDName(app)}
	if up == 1 && a.gate.wouldPrompt(presenceKey) && !automatic(a.cfg.Presence) {
		// Only the TPM can tell a tampered key handle from ours, so the
		// key is loaded before the user is asked, and if the answer comes
		// within the grace period the same load signs: no extra command.
		return a.sign(handle, app, challenge, up, replayKey, func() error {
			if err := a.gate.check(presenceKey, ask, a.cfg.PromptGrace); err != nil {
				return apduErr(SWConditionsNotSatisfied, err.Error())
			}
			return nil
		})
	}
	if up == 1 {
		if err := a.gate.check(presenceKey, ask, a.cfg.PromptGrace); err != nil {
			return nil, apduErr(SWConditionsNotSatisfied, err.Error())
		}
	}
	return a.sign(handle, app, challenge, up, replayKey, nil)
}

// sign makes the U2F authentication signature. approve, when set, runs
// with the key loaded, before the signature.
func (a *Authenticator) sign(handle []byte, app [32]byte, challenge []byte, up byte, replayKey [32]byte, approve func() error) ([]byte, error) {
	// The counter is taken before the key is loaded: a value lost to a
	// failed signature or a prompt not yet answered is a harmless gap, and
	// the TPM lock is not held across two operations.
	counter, err := a.keys.NextCounter()
	if err != nil {
		return nil, err
	}
	var ctr [4]byte
	binary.BigEndian.PutUint32(ctr[:], counter)
	d := sha256.New()
	d.Write(app[:])
	d.Write([]byte{up})
	d.Write(ctr[:])
	d.Write(challenge)
	var sig []byte
	// Recorded while the TPM loads the key and signs, durable before the
	// response leaves: a crash in between loses a response that was never
	// sent, never lets the same request be signed twice. With the user
	// still to be asked, only once they approved.
	var recorded func() error
	if approve == nil {
		recorded = a.recordWhileSigning(replayKey)
	}
	err = a.keys.UseCredential(handle, app, func(k crypto.Signer) (err error) {
		if approve != nil {
			if err := approve(); err != nil {
				return err
			}
			recorded = a.recordWhileSigning(replayKey)
		}
		sig, err = k.Sign(rand.Reader, d.Sum(nil), crypto.SHA256)
		return err
	})
	if recorded != nil {
		if rerr := recorded(); rerr != nil && err == nil {
			return nil, rerr
		}
	}
	if err != nil {
		return nil, credentialErr(err)
	}
	return append(append([]byte{up}, ctr[:]...), sig...), nil
}

// u2fCredential finds a key handle for U2F: ours, alive, and not
// credProtect 3, which U2F, having no user verification, may never use
// (CTAP 2.1 section 12.1; OpenSK's CTAP1 path filters such credentials the
// same way). A legacy handle is confirmed by the TPM when it signs.
func (a *Authenticator) u2fCredential(handle []byte, app [32]byte) (candidate, error) {
	c, ok := a.named(handle, app)
	if !ok || c.CredProtect >= credProtectUVRequired {
		return candidate{}, credentialErr(ErrUnknownCredential)
	}
	return c, nil
}

func credentialErr(err error) error {
	if errors.Is(err, ErrUnknownCredential) {
		return apduErr(SWWrongData, "key handle is not ours for this appID")
	}
	return err
}

func marshalPoint(pub *ecdsa.PublicKey) []byte {
	b, _ := pub.Bytes() // uncompressed: 0x04 || X || Y
	return b
}

// selfSignedCertificate is the U2F attestation certificate: the credential
// key certifies itself. The fields carry nothing that could tell two
// registrations apart except the key: fixed validity dates (no creation
// time), a serial derived from the key.
func selfSignedCertificate(k crypto.Signer) ([]byte, error) {
	pub := k.Public().(*ecdsa.PublicKey)
	serial := sha256.Sum256(marshalPoint(pub))
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(serial[:16]),
		Subject:               pkix.Name{CommonName: "tpm-u2f credential"},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, k)
}

// AppIDName names a U2F application parameter for prompts and logs. The
// appID itself is not sent, only its hash, so the few well-known ones are
// recognised and the rest are shown as a short hash.
func AppIDName(app [32]byte) string {
	if name, ok := knownAppIDs[app]; ok {
		return name
	}
	return "appID " + hex.EncodeToString(app[:8])
}

var knownAppIDs = func() map[[32]byte]string {
	m := make(map[[32]byte]string)
	for appID, site := range map[string]string{
		"https://github.com/u2f/trusted_facets":            "github.com",
		"https://www.gstatic.com/securitykey/origins.json": "google.com",
		"https://www.dropbox.com/u2f-app-id.json":          "dropbox.com",
		"https://gitlab.com":                               "gitlab.com",
		"https://demo.yubico.com":                          "demo.yubico.com",
		"ssh:":                                             "OpenSSH",
	} {
		m[sha256.Sum256([]byte(appID))] = site
	}
	// Chrome's dummy registration, sent to make a key blink when a
	// credential is already registered: 32 bytes of 'A' (0x41).
	var bogus [32]byte
	for i := range bogus {
		bogus[i] = 'A'
	}
	m[bogus] = "browser probe"
	return m
}()
