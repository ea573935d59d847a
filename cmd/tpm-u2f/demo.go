package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/webauthnrp"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	transport := fs.String("transport", "memory", "memory (an in-memory HID pipe) or udp:127.0.0.1:PORT (CTAPHID over loopback UDP)")
	verbose := fs.Bool("verbose", false, "log at debug level")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level := "warn"
	if *verbose {
		level = "debug"
	}
	log, err := newLogger(stderr, level)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return demo(ctx, *transport, stdout, log)
}

func demo(ctx context.Context, transport string, out io.Writer, log *slog.Logger) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	t, _, err := tpm.Open("sim")
	if err != nil {
		return err
	}
	defer t.Close()
	meter := tpm.NewMeter(t)
	say("TPM: the embedded reference simulator; its state lives in memory and is gone when the demo ends.")
	mark := meter.Snapshot()
	used := func() string {
		now := meter.Snapshot()
		s := now.Sub(mark).String()
		mark = now
		return s
	}
	engine, _, err := tpm.New(meter, tpm.NewIdentity(), tpm.Options{Logger: log})
	if err != nil {
		return err
	}
	defer engine.Close()
	say("  start-up (once per process): %s", used())

	auth := token.New(token.Config{Keys: token.TPMKeys{Engine: engine}, Presence: presence.Always{}, Logger: log})
	defer auth.Close()
	say("User presence: approved automatically in this demo (the daemon asks the desktop).")

	dev, host, err := demoTransport(transport, log)
	if err != nil {
		return err
	}
	srv := ctaphid.NewServer(dev, auth, ctaphid.Options{Capabilities: ctaphid.CapWink | ctaphid.CapCBOR, Logger: log})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer host.Close()

	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		return err
	}
	say("CTAPHID: channel %08x allocated over %s.", c.Channel(), transport)

	rp, err := webauthnrp.New("localhost")
	if err != nil {
		return err
	}
	user := &webauthnrp.User{ID: make([]byte, 32), Name: "alice"}
	rand.Read(user.ID)
	say("Relying party: %s (go-webauthn), user %q.", rp.Origin, user.Name)

	cred, err := rp.Register(ctx, c, user)
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	say("1. Registration verified by go-webauthn: attestation %q, self-signed by the new credential key inside the TPM.", cred.AttestationFormat)
	say("   credential ID: %d bytes, the P-256 key wrapped by the TPM and bound to %s; AAGUID %s", len(cred.ID), rp.ID, hex.EncodeToString(cred.Authenticator.AAGUID))
	say("   TPM: %s", used())

	var last uint32
	for i := 1; i <= 2; i++ {
		got, err := rp.Login(ctx, c, user, false)
		if err != nil {
			return fmt.Errorf("login %d: %w", i, err)
		}
		if i > 1 && got.Authenticator.SignCount <= last {
			return fmt.Errorf("login %d: signature counter %d did not move past %d", i, got.Authenticator.SignCount, last)
		}
		last = got.Authenticator.SignCount
		say("%d. Login verified by go-webauthn: signature by the TPM, counter %d.", i+1, last)
		say("   TPM: %s", used())
	}
	if _, err := rp.Login(ctx, c, user, true); err == nil {
		return fmt.Errorf("a login with a tampered signature was accepted: verification is not working")
	}
	say("4. A login with one bit of the signature flipped is rejected by go-webauthn, as it must be.")
	used()

	other, _ := webauthnrp.New("evil.example")
	evilUser := &webauthnrp.User{ID: user.ID, Name: user.Name, Credentials: user.Credentials}
	if _, err := other.Login(ctx, c, evilUser, false); err == nil || !strings.Contains(err.Error(), "6A80") {
		return fmt.Errorf("another site could use alice's credential: %v", err)
	}
	say("5. evil.example presenting alice's credential ID gets 0x6A80 (bound to localhost); TPM: %s", orNone(used()))

	say("CTAP2 (experimental in the daemon: --ctap2):")
	bob := &webauthnrp.User{ID: make([]byte, 32), Name: "bob"}
	rand.Read(bob.ID)
	cred2, err := rp.RegisterCTAP2(ctx, c, bob)
	if err != nil {
		return fmt.Errorf("CTAP2 registration: %w", err)
	}
	say("6. makeCredential verified by go-webauthn: attestation %q (self-attestation: the new key signs, no certificate); TPM: %s", cred2.AttestationFormat, used())
	got, err := rp.LoginCTAP2(ctx, c, bob)
	if err != nil {
		return fmt.Errorf("CTAP2 login: %w", err)
	}
	say("7. getAssertion verified by go-webauthn, counter %d; TPM: %s", got.Authenticator.SignCount, used())

	// Closing the host end ends the in-memory pipe; a UDP server stops
	// with the context.
	host.Close()
	if transport != "memory" {
		dev.Close()
	}
	if err := <-served; err != nil {
		return err
	}
	say("demo: OK")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no command"
	}
	return s
}

// demoTransport returns the device and host ends the demo talks over.
func demoTransport(spec string, log *slog.Logger) (dev, host ctaphid.Transport, err error) {
	switch {
	case spec == "memory":
		dev, host = hidtest.NewPipe()
		return dev, host, nil
	case strings.HasPrefix(spec, "udp:"):
		dev, err = ctaphid.ListenUDP(strings.TrimPrefix(spec, "udp:"), log)
		if err != nil {
			return nil, nil, err
		}
		addr := dev.(interface{ LocalAddr() net.Addr }).LocalAddr().String()
		host, err = ctaphid.DialUDP(addr)
		if err != nil {
			dev.Close()
			return nil, nil, err
		}
		return dev, host, nil
	}
	return nil, nil, fmt.Errorf("--transport: want memory or udp:127.0.0.1:PORT, not %q", spec)
}
