package token

import (
	"context"
	"errors"
	"fmt"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

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
		return a.clientPIN(ctx, req, setStatus)
	case ctap2.CmdCredentialMgmt, ctap2.CmdCredentialMgmtPreview:
		req, p, err := ctap2.DecodeCredMgmt(params)
		if err != nil {
			return nil, err
		}
		return a.credentialManagement(req, p)
	case ctap2.CmdLargeBlobs:
		req, err := ctap2.DecodeLargeBlobs(params)
		if err != nil {
			return nil, err
		}
		return a.largeBlobs(req)
	case ctap2.CmdConfig:
		req, p, err := ctap2.DecodeConfig(params)
		if err != nil {
			return nil, err
		}
		return a.authenticatorConfig(req, p)
	case ctap2.CmdSelection:
		if err := a.askUser(ctx, presence.Request{Operation: "select this key"}, setStatus); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, ctap2.ErrInvalidCommand
}

// askUser asks for presence the way CTAP2 does: the request waits (the
// client sees KEEPALIVE UPNEEDED), and CANCEL ends the wait.
func (a *Authenticator) askUser(ctx context.Context, req presence.Request, setStatus func(byte)) error {
	if a.Locked() {
		return ctap2.ErrOperationDenied
	}
	if !automatic(a.cfg.Presence) {
		// Nobody is asked under --presence=always: no "touch the key"
		// status, and no two KEEPALIVE reports per request for it.
		setStatus(statusUPNeeded)
		defer setStatus(statusProcessing)
	}
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

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
