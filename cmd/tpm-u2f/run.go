package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/credstore"
	"github.com/tpm-u2f/tpm-u2f/internal/atomicfile"
	"github.com/tpm-u2f/tpm-u2f/internal/journal"
	"github.com/tpm-u2f/tpm-u2f/internal/opstats"
	"github.com/tpm-u2f/tpm-u2f/internal/sdnotify"
	"github.com/tpm-u2f/tpm-u2f/largeblob"
	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/replay"
	"github.com/tpm-u2f/tpm-u2f/token"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tray"
)

type runFlags struct {
	tpm       string
	transport string
	presence  string
	state     string
	stats     bool
	window    time.Duration
	prompt    time.Duration
	control   string
	lockAfter time.Duration
	ctap2     bool
	pinentry  string
	logLevel  string
	hidName   string
	vendor    uint
	product   uint
	uv        string
}

func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "tpm-u2f")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "tpm-u2f")
	}
	return ""
}

func defaultTPM() string {
	if s := os.Getenv("TPM_U2F_TPM"); s != "" {
		return s
	}
	return tpm.DefaultDevice
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f runFlags
	fs := flag.NewFlagSet("tpm-u2f run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.tpm, "tpm", defaultTPM(), "TPM backend: a device path (/dev/tpmrm0), sim (embedded simulator, in memory), unix:PATH or tcp:HOST:PORT (swtpm); env TPM_U2F_TPM")
	fs.StringVar(&f.transport, "transport", "uhid", "how hosts reach the key: uhid (/dev/uhid), or udp:HOST:PORT (loopback only; for development and test clients)")
	fs.StringVar(&f.presence, "presence", "dbus", "how user presence is confirmed: dbus (desktop prompt), or always (approve everything: tests only)")
	fs.StringVar(&f.state, "state", defaultStateDir(), "state directory (identity, replay store); created 0700")
	fs.StringVar(&f.control, "control", "", "control socket for the tpm-u2f commands (default $XDG_RUNTIME_DIR/tpm-u2f/control.sock)")
	fs.BoolVar(&f.ctap2, "ctap2", true, "speak CTAP2 (FIDO2: passkeys, PIN, credential management); --ctap2=false offers U2F only")
	fs.DurationVar(&f.lockAfter, "lock-after", 0, "lock the token after this long without a request (0: never); it also locks when the screen locks")
	fs.DurationVar(&f.prompt, "prompt-timeout", 30*time.Second, "how long the desktop prompt waits for Allow or Deny")
	fs.StringVar(&f.pinentry, "pinentry", "pinentry", "the pinentry program that asks for the PIN when the key is unlocked from the tray or with \"tpm-u2f unlock\" and a PIN is set")
	fs.DurationVar(&f.window, "replay-window", 10*time.Minute, "refuse to sign the same request again within this time")
	fs.BoolVar(&f.stats, "stats", false, "log TPM command counts and times, and per operation where its time went (TPM, replay store, presence, the rest: p50/p95/p99), on SIGUSR1 and at exit; tpm-u2f status shows them too")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.hidName, "hid-name", "tpm-u2f security key", "USB product name the host sees")
	fs.UintVar(&f.vendor, "hid-vendor", 0x15d9, "USB vendor ID the host sees")
	fs.UintVar(&f.product, "hid-product", 0x0a37, "USB product ID the host sees")
	fs.StringVar(&f.uv, "uv", "auto", "built-in user verification: fprintd (a finger on the reader), none (the PIN only), or auto (fprintd when a reader with an enrolled finger is there at start)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	if journal.Under() {
		// Under systemd: each record's attributes (rp, operation, status...)
		// become journal fields. Without the socket, stderr (which systemd
		// also sends to the journal, as plain lines) it is.
		var l slog.Level
		l.UnmarshalText([]byte(f.logLevel))
		if h, err := journal.New(cmp.Or(os.Getenv("TPM_U2F_JOURNAL_SOCKET"), journal.DefaultSocket), "tpm-u2f", l); err == nil {
			log = slog.New(h)
		} else {
			log.Warn("cannot write to the journal: logging to stderr", "err", err)
		}
	}
	return run(ctx, f, log)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func run(ctx context.Context, f runFlags, log *slog.Logger) error {
	ctx, quit := context.WithCancel(ctx) // the tray's Quit
	defer quit()
	defer startProfiles(log)() // developers only: TPM_U2F_CPUPROFILE, TPM_U2F_TRACE
	if os.Getenv("TPM_U2F_TEST_CRASH_AFTER_RECORD") != "" {
		// Crash trials only: die like SIGKILL after a signature's replay
		// record is on disk and before its response is sent.
		log.Warn("TPM_U2F_TEST_CRASH_AFTER_RECORD is set: the daemon exits after the first signature it records")
		token.TestOnlyAfterReplayRecord = func() { os.Exit(137) }
	}
	prompter, bus, err := newPrompter(f.presence, f.prompt, log)
	if err != nil {
		return err
	}
	if bus != nil {
		defer bus.Close()
	}
	if f.state == "" {
		return errors.New("--state: no state directory (set XDG_STATE_HOME or HOME, or pass --state)")
	}
	unlock, err := lockStateDir(f.state)
	if err != nil {
		return err
	}
	defer unlock()

	sdnotify.Status("opening the TPM " + f.tpm)
	var (
		t       transport.TPMCloser
		backend tpm.Backend
	)
	err = openWhenReady(ctx, "the TPM "+f.tpm, "add yourself to the tss group, then log in again; tpm-u2f doctor says more", log, func() (err error) {
		t, backend, err = tpm.Open(f.tpm)
		return err
	})
	if err != nil {
		return err
	}
	defer t.Close()
	var ops *opstats.Recorder // per-operation times with --stats (nil: off)
	if f.stats {
		ops = opstats.New()
	}
	meter := tpm.NewMeter(ops.TPM(t))
	if backend.Volatile {
		log.Warn("TPM is the embedded simulator: its state lives in this process only; every credential made now is lost at exit", "tpm", f.tpm)
	}
	id, err := loadIdentity(f.state, backend, log)
	if err != nil {
		return err
	}
	// A bare TPM (swtpm, the simulator, /dev/tpm0) has no resource manager
	// to reclaim what a crashed daemon left loaded; we clean up at start.
	persist := func(id tpm.Identity) error {
		if backend.Volatile {
			return nil
		}
		return tpm.SaveIdentity(filepath.Join(f.state, "identity.json"), id)
	}
	engine, id, err := tpm.New(meter, id, tpm.Options{Logger: log, FlushStale: backend.Bare, Persist: persist})
	if errors.Is(err, tpm.ErrPrimaryMismatch) || errors.Is(err, tpm.ErrStaleIdentity) || errors.Is(err, tpm.ErrEpochIndex) {
		return fmt.Errorf("%w (state directory: %s)", err, f.state)
	}
	if err != nil {
		return err
	}
	defer engine.Close()
	if err := persist(id); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if f.stats {
		logStats := func() {
			log.Info("tpm command stats", "commands", meter.Snapshot().String())
			log.Info("operation stats since start", "operations", ops.String())
		}
		defer logStats()
		go onSignal(ctx, syscall.SIGUSR1, logStats)
	}

	store, err := replay.Open(filepath.Join(f.state, "replay.log"), replay.Options{Window: f.window, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()
	if st := store.Status(); !st.Healthy {
		log.Error("replay store is failing closed: no signatures until the window has passed", "until", st.FailClosedUntil)
	}

	creds, err := openCredentials(f.state, backend, engine, log)
	if err != nil {
		return err
	}
	defer creds.Close()

	blobs, err := openLargeBlobs(f.state, backend, id, log)
	if err != nil {
		return err
	}
	reset := func() error { return resetAll(f.state, backend, engine, creds, blobs, persist) }
	uv, uvRetries, closeUV, err := newUV(ctx, f.uv, engine, log)
	if err != nil {
		return err
	}
	defer closeUV()
	auth := token.New(token.Config{Keys: token.TPMKeys{Engine: engine}, Presence: ops.Prompter(prompter), Replay: ops.Replay(store), Resident: creds, PIN: token.TPMPIN{Engine: engine}, Secrets: token.TPMKeys{Engine: engine}, LargeBlobs: blobs, Logger: log,
		PresenceTimeout: f.prompt + time.Second, Reset: reset, Settings: engine, UV: uv, UVRetries: uvRetries})
	defer auth.Close()

	var (
		tr           ctaphid.Transport
		replugDevice func() error
	)
	err = openWhenReady(ctx, "the HID device ("+f.transport+")", "the udev rule gives /dev/uhid to the seat's user; see docs/install.md", log, func() (err error) {
		tr, replugDevice, err = openTransport(f, serialFor(id), log)
		return err
	})
	if err != nil {
		return err
	}
	defer tr.Close()
	if bus != nil {
		if err := presence.WatchScreenLock(ctx, bus, auth.Lock, log); err != nil {
			log.Warn("cannot watch the screen lock", "err", err)
		}
	}
	if system, err := dbus.ConnectSystemBus(); err == nil {
		defer system.Close()
		if err := presence.WatchLogindLock(ctx, system, auth.Lock, log); err != nil {
			log.Warn("cannot watch logind's session lock", "err", err)
		}
	} else {
		log.Debug("no system bus: not watching logind's session lock", "err", err)
	}
	if f.lockAfter > 0 {
		go lockWhenIdle(ctx, auth, f.lockAfter)
	}
	manual := presence.NewManual(f.prompt)
	d := &daemon{f: f, quit: quit, ask: prompter, manual: manual, auth: auth, engine: engine, store: store, meter: meter, ops: ops, replug: replugDevice, creds: creds, reset: reset, log: log}
	// Any process of the user can send SIGHUP: it re-plugs as the control
	// socket's replug does.
	go onSignal(ctx, syscall.SIGHUP, func() {
		if err := d.Replug(); err != nil {
			log.Warn("re-plug on SIGHUP refused", "err", err)
		}
	})
	if err := serveControl(ctx, f, d, log); err != nil {
		return err
	}
	if bus != nil {
		// The tray runs whether or not a tray host is there yet: the panel
		// may start after us at login, or restart, and the item registers
		// whenever a StatusNotifierWatcher appears.
		go tray.Run(ctx, trayView{d}, log)
		if tray.Available(bus) {
			log.Info("tray icon shown")
		} else {
			log.Info("no StatusNotifierWatcher on the session bus yet: the tray icon appears when a panel with a tray starts (until then lock, unlock and re-plug with the tpm-u2f command)")
		}
		if p, ok := prompter.(*presence.DBus); ok {
			// Where the notification server cannot show Allow/Deny, the
			// tray asks instead of every request being refused.
			p.SetFallback(manual, func() bool { return tray.Available(bus) })
		}
	}

	caps := ctaphid.CapWink
	if f.ctap2 {
		caps |= ctaphid.CapCBOR
	} else {
		log.Info("--ctap2=false: U2F only")
	}
	srv := ctaphid.NewServer(tr, ops.Handler(auth), ctaphid.Options{
		Capabilities:  caps,
		DeviceVersion: [3]byte{0, 1, 0},
		Logger:        log,
		MsgRefused:    func() bool { return !auth.U2FAllowed() },
	})
	log.Info("tpm-u2f ready", "version", version, "tpm", f.tpm, "transport", f.transport, "presence", f.presence, "state", f.state)
	// READY=1 only now: the HID device exists and the TPM answered (the
	// engine made its primary and sessions).
	sdnotify.Ready(fmt.Sprintf("ready: %s on %s", f.transport, f.tpm))
	err = srv.Serve(ctx)
	sdnotify.Stopping()
	log.Info("tpm-u2f stopping")
	return err
}

// newPrompter returns the presence prompter for mode, and the session bus
// connection it uses (nil for the test mode).
func newPrompter(mode string, timeout time.Duration, log *slog.Logger) (presence.Prompter, *dbus.Conn, error) {
	switch mode {
	case "always":
		log.Warn("--presence=always: every request is approved without asking anyone; use this for tests only")
		// The tray and the screen-lock watch still want the session bus
		// where there is one.
		var conn *dbus.Conn
		if os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" {
			if c, err := dbus.ConnectSessionBus(); err == nil {
				conn = c
			}
		}
		return presence.Always{Log: log}, conn, nil
	case "dbus":
		conn, err := dbus.ConnectSessionBus()
		if err != nil {
			return nil, nil, fmt.Errorf("--presence=dbus: cannot connect to the session bus (is the daemon running in your desktop session?): %w", err)
		}
		p := presence.NewDBus(conn, timeout, log)
		if err := p.Check(); err != nil {
			// Not fatal: the desktop may start its notification server
			// after us. Until then a request needing presence asks through
			// the tray where there is one (SetFallback below), or is refused.
			log.Warn("presence prompts cannot be shown yet; until a notification server with actions appears, requests that need presence ask through the tray icon if there is one, or are refused", "reason", err)
		}
		return p, conn, nil
	}
	return nil, nil, fmt.Errorf("--presence: unknown mode %q (want dbus or always)", mode)
}

// openCredentials opens the discoverable-credential store: its metadata
// key is sealed by the TPM (credentials.key), its entries are in
// credentials.db. The simulator forgets its keys at exit, so for it the
// store lives in a temporary directory.
func openCredentials(dir string, b tpm.Backend, e *tpm.Engine, log *slog.Logger) (*credstore.Store, error) {
	if b.Volatile {
		tmp, err := os.MkdirTemp("", "tpm-u2f-sim-credentials")
		if err != nil {
			return nil, err
		}
		dir = tmp
	}
	keyPath, dbPath := filepath.Join(dir, "credentials.key"), filepath.Join(dir, "credentials.db")
	var secret []byte
	blob, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		secret, err = e.Unseal(blob)
		if errors.Is(err, tpm.ErrSealedForeign) {
			// Another installation's (the identity was reset): its
			// credentials cannot be used with this TPM identity anyway.
			log.Warn("the credential store belongs to an earlier identity; moving it aside", "path", dbPath)
			os.Rename(keyPath, keyPath+".old")
			os.Rename(dbPath, dbPath+".old")
			secret = nil
		} else if err != nil {
			return nil, fmt.Errorf("credential store key: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if secret == nil {
		var blob []byte
		if secret, blob, err = e.Seal(); err != nil {
			return nil, fmt.Errorf("seal the credential store key: %w", err)
		}
		if err := atomicfile.Write(keyPath, blob); err != nil {
			return nil, err
		}
	}
	defer clear(secret)
	store, err := credstore.Open(dbPath, secret, 256)
	if err != nil {
		return nil, err
	}
	if n, err := store.Prune(); err != nil {
		store.Close()
		return nil, err
	} else if n > 0 {
		log.Warn("deleted credential store entries that do not decrypt under this identity's key (older than its last reset, or damaged)", "entries", n)
	}
	return store, nil
}

// resetStep lets a test stop resetAll between its steps, as a crash would.
var resetStep = func(string) error { return nil }

// resetAll is authenticatorReset: the TPM identity first (its epoch
// increment is the commit point; tpm/epoch.go), then the credential store.
// The store is wiped and re-keyed before its new sealed key is written:
// a crash between the two leaves an empty store under the old key file,
// which no longer unseals and is moved aside at the next start; the other
// order would leave old entries under a key they do not decrypt with.
// The large-blob array is emptied right after the commit (its entries are
// sealed to largeBlobKeys the new identity no longer derives); if that
// does not happen, the next start empties it (openLargeBlobs).
func resetAll(dir string, b tpm.Backend, e *tpm.Engine, creds *credstore.Store, blobs *largeblob.Store, persist func(tpm.Identity) error) error {
	newID, err := e.Reset()
	if err != nil {
		return err
	}
	if err := persist(newID); err != nil {
		return err
	}
	if err := resetStep("identity"); err != nil {
		return err
	}
	if blobs != nil {
		if err := blobs.Reset(largeBlobOwner(newID)); err != nil {
			return err
		}
	}
	secret, blob, err := e.Seal()
	if err != nil {
		return err
	}
	defer clear(secret)
	if err := creds.Reset(secret); err != nil {
		return err
	}
	if err := resetStep("store"); err != nil {
		return err
	}
	if !b.Volatile {
		if err := atomicfile.Write(filepath.Join(dir, "credentials.key"), blob); err != nil {
			return err
		}
	}
	return nil
}

// serveControl starts the control socket; without XDG_RUNTIME_DIR (and no
// --control) the daemon runs without one and says so.
func serveControl(ctx context.Context, f runFlags, h control.Handler, log *slog.Logger) error {
	path := f.control
	if path == "" {
		var err error
		if path, err = control.DefaultPath(); err != nil {
			log.Warn("no control socket: the tpm-u2f status/lock/unlock/replug commands will not reach this daemon", "reason", err)
			return nil
		}
	}
	srv, err := control.Listen(path, h, log)
	if err != nil {
		return err
	}
	go srv.Serve(ctx)
	log.Info("control socket ready", "path", path)
	return nil
}

// lockWhenIdle locks the token once no request has come for idle.
func lockWhenIdle(ctx context.Context, auth *token.Authenticator, idle time.Duration) {
	t := time.NewTicker(min(idle/4, time.Minute))
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			last := auth.LastUsed()
			if last.IsZero() {
				last = start
			}
			if !auth.Locked() && now.Sub(last) >= idle {
				auth.Lock()
			}
		}
	}
}

// loadIdentity reads the installation identity, or makes one on first run.
// The simulator forgets everything at exit, so it gets a fresh identity
// every time and nothing is written for it.
func loadIdentity(dir string, b tpm.Backend, log *slog.Logger) (tpm.Identity, error) {
	if b.Volatile {
		return tpm.NewIdentity(), nil
	}
	path := filepath.Join(dir, "identity.json")
	id, err := tpm.LoadIdentity(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("first run: creating a new token identity", "path", path)
		return tpm.NewIdentity(), nil
	}
	return id, err
}

// serialFor is the USB serial (uniq) the host sees: stable per
// installation, ASCII, and not the seed itself.
func serialFor(id tpm.Identity) string {
	h := sha256.Sum256(append([]byte("tpm-u2f usb serial\x00"), id.Seed[:]...))
	return strings.ToUpper(hex.EncodeToString(h[:8]))
}

// lockStateDir creates the state directory (0700) and takes an exclusive
// lock in it, so that two daemons never share one identity and counter.
func lockStateDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("state directory %s is in use by another tpm-u2f: %w", dir, err)
	}
	return func() { lf.Close() }, nil
}

// onSignal calls fn for every sig until ctx ends.
func onSignal(ctx context.Context, sig os.Signal, fn func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	defer signal.Stop(c)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c:
			fn()
		}
	}
}

// replug power-cycles the key: the device is re-created and the token
// forgets everything volatile, as when a key is unplugged.
func replug(dev func() error, auth *token.Authenticator, log *slog.Logger) {
	auth.PowerCycle()
	if err := dev(); err != nil {
		log.Error("re-plug failed", "err", err)
		return
	}
	log.Info("re-plugged: volatile state dropped")
}
