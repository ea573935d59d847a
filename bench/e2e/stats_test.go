package e2e

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/u2fhost"
	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
)

// TestStatsInStatus: `tpm-u2f run --stats` accounts each operation, and
// `tpm-u2f status` and SIGUSR1 show the accounts.
func TestStatsInStatus(t *testing.T) {
	d := startDaemon(t, "sim", "--stats")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialUDP(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	app := sha256.Sum256([]byte("https://stats.example"))
	reg, err := u2fhost.Register(ctx, c.Client, [32]byte{}, app)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.u2fAuthenticate(ctx, uint64(i), app, reg.KeyHandle); err != nil {
			t.Fatal(err)
		}
	}
	id, _, err := c.makeCredential(ctx, "stats.example", []byte("u"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := c.getAssertion(ctx, "stats.example", 1, id); err != nil {
		t.Fatal(err)
	}
	// clientPIN getKeyAgreement (subCommand 2): answered with no PIN set
	// (getPINRetries is PIN_NOT_SET then).
	if _, err := c.ctap2Call(ctx, ctap2.CmdClientPIN, map[int]any{1: 2, 2: 2}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(daemonBinary(t), "status", "--control", d.Control).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm-u2f status: %v\n%s", err, out)
	}
	t.Logf("tpm-u2f status:\n%s", out)
	for _, want := range []string{
		"u2f register: n=1 p50/p95/p99 ms: total ",
		"u2f authenticate: n=3 p50/p95/p99 ms: total ",
		"ctap2 makeCredential: n=1 ",
		"ctap2 getAssertion: n=1 ",
		"ctap2 clientPIN: n=1 ",
		", tpm ", ", replay ", ", presence ", ", rest ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if err := d.signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(d.Log)
		if strings.Contains(string(b), `msg="operation stats since start"`) && strings.Contains(string(b), "u2f authenticate: n=3") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no operation stats logged on SIGUSR1:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
