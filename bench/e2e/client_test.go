package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// client is a CTAPHID host over its own UDP socket, as each browser or
// libfido2 process has its own hidraw handle.
type client struct {
	*ctaphid.Client
	t ctaphid.Transport
	// busy counts CTAPHID_ERR_CHANNEL_BUSY answers, and busyWait the
	// time spent waiting to retry after them.
	busy     int
	busyWait time.Duration
	// served is when the last attempt of the last retried call began:
	// what came before it was waiting for a turn.
	served time.Time
}

func dialUDP(addr string) (*client, error) {
	t, err := ctaphid.DialUDP(addr)
	if err != nil {
		return nil, err
	}
	return &client{Client: ctaphid.NewClient(t), t: t}, nil
}

func (c *client) Close() error { return c.t.Close() }

// busyRetry is how long a client waits after CHANNEL_BUSY before it sends
// again, as token.TestConcurrentChannelsUDP's clients do.
const busyRetry = time.Millisecond

// retry runs op until it ends with anything but CHANNEL_BUSY: CTAPHID
// serves one transaction per device at a time, and a client whose
// request arrives meanwhile is told to come back.
func (c *client) retry(ctx context.Context, op func() error) error {
	for {
		c.served = time.Now()
		err := op()
		if e, ok := ctaphid.ErrorCode(err); !ok || e != ctaphid.ErrChannelBusy {
			return err
		}
		c.busy++
		start := time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(busyRetry):
		}
		c.busyWait += time.Since(start)
	}
}

// u2fAuthenticate signs challenge i with a U2F key handle (P1 0x03:
// presence enforced, approved at once by --presence=always).
func (c *client) u2fAuthenticate(ctx context.Context, i uint64, app [32]byte, handle []byte, opts ...func(*[32]byte)) (*u2fhost.Assertion, error) {
	var chal [32]byte
	binary.BigEndian.PutUint64(chal[:], i)
	for _, o := range opts {
		o(&chal)
	}
	var a *u2fhost.Assertion
	err := c.retry(ctx, func() (err error) {
		a, err = u2fhost.Authenticate(ctx, c.Client, chal, app, handle, u2fhost.EnforcePresence)
		return err
	})
	return a, err
}

// ctap2Call sends one CTAP2 command and returns the CBOR of a successful
// answer.
func (c *client) ctap2Call(ctx context.Context, cmd byte, params any) ([]byte, error) {
	msg := []byte{cmd}
	if params != nil {
		b, err := ctap2.Marshal(params)
		if err != nil {
			return nil, err
		}
		msg = append(msg, b...)
	}
	var rsp []byte
	err := c.retry(ctx, func() (err error) {
		rsp, err = c.Call(ctx, ctaphid.CmdCBOR, msg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(rsp) == 0 {
		return nil, fmt.Errorf("ctap2: empty response")
	}
	if rsp[0] != byte(ctap2.OK) {
		return nil, ctap2.Status(rsp[0])
	}
	return rsp[1:], nil
}

// makeCredential makes an ES256 credential for rpID (discoverable with
// rk) and returns its ID and public key.
func (c *client) makeCredential(ctx context.Context, rpID string, user []byte, rk bool) ([]byte, *ecdsa.PublicKey, error) {
	cdh := sha256.Sum256(append([]byte("makeCredential "), user...))
	body, err := c.ctap2Call(ctx, ctap2.CmdMakeCredential, map[int]any{
		1: cdh[:],
		2: map[string]any{"id": rpID, "name": rpID},
		3: map[string]any{"id": user, "name": string(user), "displayName": string(user)},
		4: []map[string]any{{"type": "public-key", "alg": ctap2.AlgES256}},
		7: map[string]bool{"rk": rk},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("makeCredential: %w", err)
	}
	var mc struct {
		AuthData []byte `cbor:"2,keyasint"`
	}
	if err := cbor.Unmarshal(body, &mc); err != nil {
		return nil, nil, err
	}
	ad := mc.AuthData
	if len(ad) < 55 {
		return nil, nil, fmt.Errorf("short authenticator data")
	}
	n := int(ad[53])<<8 | int(ad[54])
	if len(ad) < 55+n {
		return nil, nil, fmt.Errorf("truncated credential ID")
	}
	id := ad[55 : 55+n]
	var key struct {
		X []byte `cbor:"-2,keyasint"`
		Y []byte `cbor:"-3,keyasint"`
	}
	if err := cbor.NewDecoder(bytes.NewReader(ad[55+n:])).Decode(&key); err != nil {
		return nil, nil, fmt.Errorf("credential public key: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, key.X...), key.Y...))
	if err != nil {
		return nil, nil, err
	}
	return id, pub, nil
}

// getAssertionRequest is the CBOR of a getAssertion naming one
// non-discoverable credential in its allowList, as a browser sends for a
// second factor.
func getAssertionRequest(rpID string, cdh [32]byte, id []byte) map[int]any {
	return map[int]any{
		1: rpID,
		2: cdh[:],
		3: []map[string]any{{"type": "public-key", "id": id}},
	}
}

// getAssertion signs clientDataHash i with credential id and returns the
// authenticator data and signature.
func (c *client) getAssertion(ctx context.Context, rpID string, i uint64, id []byte) (authData, sig []byte, cdh [32]byte, err error) {
	binary.BigEndian.PutUint64(cdh[:], i)
	cdh = sha256.Sum256(cdh[:])
	body, err := c.ctap2Call(ctx, ctap2.CmdGetAssertion, getAssertionRequest(rpID, cdh, id))
	if err != nil {
		return nil, nil, cdh, fmt.Errorf("getAssertion: %w", err)
	}
	var ga ctap2.GetAssertionResponse
	if err := cbor.Unmarshal(body, &ga); err != nil {
		return nil, nil, cdh, err
	}
	return ga.AuthData, ga.Signature, cdh, nil
}

// withChallenge sets the whole challenge.
func withChallenge(c [32]byte) func(*[32]byte) { return func(p *[32]byte) { *p = c } }
