package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/internal/webauthnrp"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// demoCommand is "tpm-u2f demo" (what "make demo" runs): the token on the
// embedded simulator, a relying party verifying it with go-webauthn, and
// the TPM commands each step costs. Nothing touches the real TPM; the
// passkey store is a temporary directory removed at the end.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	transport := fs.String("transport", "memory", "memory (an in-memory HID pipe) or udp:127.0.0.1:PORT (CTAPHID over loopback UDP; port 0 picks one)")
	verbose := fs.Bool("verbose", false, "log at debug level (default: warnings only)")
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
	// Presence is automatic, so every step is quick; a bound keeps a
	// broken step from hanging "make demo".
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return demo(ctx, *transport, stdout, log)
}

func demo(ctx context.Context, transport string, out io.Writer, log *slog.Logger) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	t, _, err := tpm.Open("sim")
	if err != nil {
		return fmt.Errorf("open the TPM simulator: %w", err)
	}
	defer t.Close()
	meter := tpm.NewMeter(t)
	say("TPM: the embedded reference simulator; its state lives in memory and is gone when the demo ends.")
	mark := meter.Snapshot()
	// used is the TPM commands since the previous call: what one step cost.
	used := func() string {
		now := meter.Snapshot()
		s := now.Sub(mark).String()
		mark = now
		if s == "" {
			return "no command"
		}
		return s
	}
	engine, _, err := tpm.New(meter, tpm.NewIdentity(), tpm.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("start the TPM engine: %w", err)
	}
	defer engine.Close()
	say("  start-up (once per process): %s", used())

	// presence.Always without its logger: it would warn on every request,
	// and the line below already says it once.
	// Passkeys need a credential store; the demo's lives in a temporary
	// directory, like its TPM state, and goes with it.
	dir, err := os.MkdirTemp("", "tpm-u2f-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret, _, err := engine.Seal()
	if err != nil {
		return fmt.Errorf("seal the credential store key: %w", err)
	}
	creds, err := credstore.Open(filepath.Join(dir, "credentials.db"), secret, 100)
	clear(secret)
	if err != nil {
		return err
	}
	defer creds.Close()
	say("  passkey store key drawn and sealed by the TPM: %s", used())
	auth := token.New(token.Config{Keys: token.TPMKeys{Engine: engine}, Presence: presence.Always{}, Resident: creds, Logger: log})
	defer auth.Close()
	say("User presence: approved automatically in this demo (the daemon asks the desktop).")

	dev, host, err := demoTransport(transport, log)
	if err != nil {
		return err
	}
	srv := ctaphid.NewServer(dev, auth, ctaphid.Options{Capabilities: ctaphid.CapWink | ctaphid.CapCBOR, Logger: log})
	srvCtx, stopSrv := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	// Serve owns dev and closes it; stop ends it on every path (the host
	// end too, for UDP) and waits, so no goroutine outlives the demo.
	stop := sync.OnceValue(func() error {
		stopSrv()
		host.Close()
		return <-served
	})
	defer stop()

	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		return fmt.Errorf("CTAPHID INIT: %w", err)
	}
	say("CTAPHID INIT: channel %08x allocated over %s.", c.Channel(), describeTransport(transport))

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
		// Login already refuses a counter that did not move; this checks
		// the demo's own claim.
		if i > 1 && got.Authenticator.SignCount <= last {
			return fmt.Errorf("login %d: signature counter %d did not move past %d", i, got.Authenticator.SignCount, last)
		}
		last = got.Authenticator.SignCount
		say("%d. Login verified by go-webauthn: signature by the TPM, counter %d.", i+1, last)
		say("   TPM: %s", used())
	}
	if _, err := rp.Login(ctx, c, user, true); err == nil {
		return errors.New("a login with a tampered signature was accepted: verification is not working")
	}
	say("4. A login with one bit of the signature flipped is rejected by go-webauthn, as it must be.")
	used()

	other, err := webauthnrp.New("evil.example")
	if err != nil {
		return err
	}
	evilUser := &webauthnrp.User{ID: user.ID, Name: user.Name, Credentials: user.Credentials}
	var se *u2fhost.StatusError
	if _, err := other.Login(ctx, c, evilUser, false); !errors.As(err, &se) || se.SW != u2fhost.SWWrongData {
		return fmt.Errorf("evil.example presenting alice's credential: got %v, want status 6A80", err)
	}
	say("5. evil.example presenting alice's credential ID gets 0x6A80 (bound to localhost); TPM: %s", used())

	say("CTAP2:")
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

	carol := &webauthnrp.User{ID: make([]byte, 32), Name: "carol"}
	rand.Read(carol.ID)
	if _, err := rp.RegisterPasskey(ctx, c, carol); err != nil {
		return fmt.Errorf("passkey registration: %w", err)
	}
	say("8. passkey (discoverable credential) for carol registered and verified; account names stored encrypted; TPM: %s", used())
	who, pk, err := rp.LoginPasskey(ctx, c, []*webauthnrp.User{bob, carol})
	if err != nil {
		return fmt.Errorf("passkey login: %w", err)
	}
	if who != carol {
		return fmt.Errorf("passkey login found %q, want carol", who.Name)
	}
	say("9. passkey login without a user name: the key named %s, go-webauthn verified, counter %d; TPM: %s", who.Name, pk.Authenticator.SignCount, used())

	if err := stop(); err != nil {
		return fmt.Errorf("CTAPHID server: %w", err)
	}
	say("demo: OK")
	return nil
}

// describeTransport says in words what --transport chose.
func describeTransport(spec string) string {
	if spec == "memory" {
		return "an in-memory HID pipe"
	}
	return "loopback UDP (" + strings.TrimPrefix(spec, "udp:") + ")"
}

// demoTransport returns the device and host ends the demo talks over.
func demoTransport(spec string, log *slog.Logger) (dev, host ctaphid.Transport, err error) {
	switch {
	case spec == "memory":
		dev, host = hidtest.NewPipe()
		return dev, host, nil
	case strings.HasPrefix(spec, "udp:"):
		addr := strings.TrimPrefix(spec, "udp:")
		if h, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(h).IsLoopback() {
			// The demo's token approves every request: never offer it
			// beyond this machine.
			return nil, nil, fmt.Errorf("--transport %s: the demo listens on a loopback address only", spec)
		}
		dev, err = ctaphid.ListenUDP(addr, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--transport: %w", err)
		}
		la, ok := dev.(interface{ LocalAddr() net.Addr })
		if !ok {
			dev.Close()
			return nil, nil, errors.New("--transport: the UDP transport does not report its address")
		}
		host, err = ctaphid.DialUDP(la.LocalAddr().String())
		if err != nil {
			dev.Close()
			return nil, nil, fmt.Errorf("--transport: %w", err)
		}
		return dev, host, nil
	}
	return nil, nil, fmt.Errorf("--transport: want memory or udp:127.0.0.1:PORT, not %q", spec)
}
