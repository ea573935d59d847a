package token

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"sync"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// credMgmtState is what enumerateRPsGetNextRP and
// enumerateCredentialsGetNextCredential still have to return. Any other
// command ends it, as it ends getNextAssertion.
type credMgmtState struct {
	mu    sync.Mutex
	rps   []credstore.Credential // one per RP
	creds []credstore.Credential
}

func (m *credMgmtState) clear() {
	m.mu.Lock()
	m.rps, m.creds = nil, nil
	m.mu.Unlock()
}

// credentialManagement implements authenticatorCredentialManagement (CTAP
// 2.1 section 6.8). Every subcommand but the two "next" ones needs a
// pinUvAuthToken with the cm permission, MACed over the subcommand byte
// and the raw subCommandParams.
func (a *Authenticator) credentialManagement(req *ctap2.CredMgmtRequest, params *ctap2.CredMgmtParams) ([]byte, error) {
	if a.cfg.Resident == nil || a.cfg.PIN == nil {
		return nil, ctap2.ErrInvalidCommand
	}
	sub := *req.SubCommand
	switch sub {
	case ctap2.CredMgmtEnumerateRPsNext:
		return a.mgmt.next(&a.mgmt.rps, rpResponse)
	case ctap2.CredMgmtEnumerateCredsNext:
		return a.mgmt.next(&a.mgmt.creds, a.credentialResponse)
	case ctap2.CredMgmtGetMetadata, ctap2.CredMgmtEnumerateRPsBegin, ctap2.CredMgmtEnumerateCredsBegin,
		ctap2.CredMgmtDelete, ctap2.CredMgmtUpdateUser:
	default:
		return nil, ctap2.ErrInvalidSubcommand
	}
	a.mgmt.clear()
	if req.PinUvAuthParam == nil {
		return nil, ctap2.ErrPUATRequired
	}
	msg := append([]byte{byte(sub)}, req.SubCommandParams...)
	persistent := false
	if err := a.verifyPinUvAuth(req.PinUvAuthProtocol, req.PinUvAuthParam, msg, ctap2.PermCredMgmt, ""); err != nil {
		// CTAP 2.2: the persistentPinUvAuthToken (pcmr) authorises the
		// read-only subcommands, never deleteCredential or
		// updateUserInformation.
		readOnly := sub == ctap2.CredMgmtGetMetadata || sub == ctap2.CredMgmtEnumerateRPsBegin || sub == ctap2.CredMgmtEnumerateCredsBegin
		if !readOnly || a.verifyPersistent(req.PinUvAuthProtocol, req.PinUvAuthParam, msg) != nil {
			return nil, err
		}
		persistent = true
	}
	bound := ""
	if !persistent {
		bound = a.boundRPID()
	}
	all, err := a.cfg.Resident.All()
	if err != nil {
		a.log.Warn("credential store: some entries could not be read", "err", err)
	}
	switch sub {
	case ctap2.CredMgmtGetMetadata:
		if bound != "" {
			return nil, ctap2.ErrPINAuthInvalid
		}
		n, rem := uint64(len(all)), uint64(a.cfg.Resident.Remaining())
		return ctap2.Marshal(ctap2.CredMgmtResponse{ExistingCount: &n, MaxRemaining: &rem})
	case ctap2.CredMgmtEnumerateRPsBegin:
		if bound != "" {
			return nil, ctap2.ErrPINAuthInvalid
		}
		var rps []credstore.Credential
		seen := map[string]bool{}
		for _, c := range all {
			if !seen[c.RPID] {
				seen[c.RPID] = true
				rps = append(rps, c)
			}
		}
		return a.mgmt.begin(&a.mgmt.rps, rps, rpResponse)
	case ctap2.CredMgmtEnumerateCredsBegin:
		if len(params.RPIDHash) != 32 {
			return nil, ctap2.ErrMissingParameter
		}
		if bound != "" && !bytes.Equal(hashOf(bound), params.RPIDHash) {
			return nil, ctap2.ErrPINAuthInvalid
		}
		var creds []credstore.Credential
		for _, c := range all {
			if bytes.Equal(hashOf(c.RPID), params.RPIDHash) {
				creds = append(creds, c)
			}
		}
		return a.mgmt.begin(&a.mgmt.creds, creds, a.credentialResponse)
	case ctap2.CredMgmtDelete, ctap2.CredMgmtUpdateUser:
		if params.CredentialID == nil || params.CredentialID.ID == nil || sub == ctap2.CredMgmtUpdateUser && params.User == nil {
			return nil, ctap2.ErrMissingParameter
		}
		c, ok := a.cfg.Resident.Find(params.CredentialID.ID)
		if !ok {
			return nil, ctap2.ErrNoCredentials
		}
		if bound != "" && bound != c.RPID {
			return nil, ctap2.ErrPINAuthInvalid
		}
		if sub == ctap2.CredMgmtDelete {
			if err := a.cfg.Resident.Delete(c.ID); err != nil {
				return nil, err
			}
			a.log.Info("credential deleted by credential management", "rp", c.RPID)
			return nil, nil
		}
		// Section 6.8.6: the user id must match; the names are replaced
		// (an absent name is removed).
		if !bytes.Equal(params.User.ID, c.UserID) {
			return nil, ctap2.ErrInvalidParameter
		}
		c.UserName, c.DisplayName = params.User.Name, params.User.DisplayName
		if err := a.cfg.Resident.Put(*c); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, ctap2.ErrInvalidSubcommand
}

func hashOf(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func (a *Authenticator) boundRPID() string {
	a.pin.mu.Lock()
	defer a.pin.mu.Unlock()
	return a.pin.rpID
}

func rpResponse(c credstore.Credential, total uint64) ([]byte, error) {
	rsp := ctap2.CredMgmtResponse{RP: &ctap2.RPEntity{ID: c.RPID, Name: c.RPName}, RPIDHash: hashOf(c.RPID)}
	if total > 0 {
		rsp.TotalRPs = &total
	}
	return ctap2.Marshal(rsp)
}

// credentialResponse answers enumerateCredentials; with large blobs on,
// it carries the credential's largeBlobKey (CTAP 2.1 section 6.8.3, 0x0B)
// so a platform can drop the array entries of deleted credentials.
func (a *Authenticator) credentialResponse(c credstore.Credential, total uint64) ([]byte, error) {
	rpHash := sha256.Sum256([]byte(c.RPID))
	pub, alg, err := tpm.CredentialPublicKey(c.ID, rpHash)
	if err != nil {
		return nil, errors.Join(ctap2.ErrOther, err)
	}
	cose, err := credentialPublicKey(pub, int64(alg))
	if err != nil {
		return nil, errors.Join(ctap2.ErrOther, err)
	}
	level := uint64(max(c.CredProtect, credProtectUVOptional))
	rsp := ctap2.CredMgmtResponse{
		User:         &ctap2.UserEntity{ID: c.UserID, Name: c.UserName, DisplayName: c.DisplayName},
		CredentialID: &ctap2.CredentialDescriptor{Type: "public-key", ID: c.ID},
		PublicKey:    cose,
		CredProtect:  &level,
	}
	if total > 0 {
		rsp.TotalCredentials = &total
	}
	if a.largeBlobsOn() {
		if rsp.LargeBlobKey, err = a.cfg.Secrets.LargeBlobKey(c.ID); err != nil {
			return nil, err
		}
	}
	return ctap2.Marshal(rsp)
}

// begin answers the first of items (with the total) and keeps the rest in
// *rest for the "next" subcommand.
func (m *credMgmtState) begin(rest *[]credstore.Credential, items []credstore.Credential, respond func(credstore.Credential, uint64) ([]byte, error)) ([]byte, error) {
	if len(items) == 0 {
		return nil, ctap2.ErrNoCredentials
	}
	m.mu.Lock()
	*rest = items[1:]
	m.mu.Unlock()
	return respond(items[0], uint64(len(items)))
}

// next answers the next of *rest; without a begin, NOT_ALLOWED.
func (m *credMgmtState) next(rest *[]credstore.Credential, respond func(credstore.Credential, uint64) ([]byte, error)) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(*rest) == 0 {
		return nil, ctap2.ErrNotAllowed
	}
	c := (*rest)[0]
	*rest = (*rest)[1:]
	return respond(c, 0)
}
