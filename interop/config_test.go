package interop

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/tpm-u2f/tpm-u2f/token/ctap2"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// TestRestoredStateKeepsSettings, on swtpm: the state directory is copied,
// then `tpm-u2f config set` raises the minimum PIN length and switches
// alwaysUv on; the copy is restored. The daemon started on the restored
// files still has both (they are in the TPM), and a CTAP reset returns
// them to the defaults.
func TestRestoredStateKeepsSettings(t *testing.T) {
	sw := tpmtest.StartSWTPM(t)
	state, backup := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	sock := filepath.Join(t.TempDir(), "control.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	getInfo := func(addr string) ctap2.Info {
		t.Helper()
		st, body, err := ctap2Call(ctx, dial(t, ctx, addr), ctap2.CmdGetInfo, nil)
		var i ctap2.Info
		if err != nil || st != ctap2.OK || cbor.Unmarshal(body, &i) != nil {
			t.Fatalf("getInfo: %v %v", st, err)
		}
		return i
	}

	_, stop, _ := startDaemonIn(t, state, "--tpm", sw.Spec, "--ctap2", "--control", sock)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	copyDir(t, state, backup)

	addr, stop, _ := startDaemonIn(t, state, "--tpm", sw.Spec, "--ctap2", "--control", sock)
	if out, code := cli(t, "config", "set", "--min-pin-length", "6", "--always-uv", "on", "--control", sock); code != 0 {
		t.Fatalf("config set: exit %d\n%s", code, out)
	}
	if i := getInfo(addr); !i.Options["alwaysUv"] || i.MinPINLength != 6 {
		t.Fatalf("after config set: %+v", i)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	os.RemoveAll(state)
	copyDir(t, backup, state)
	addr, stop, _ = startDaemonIn(t, state, "--tpm", sw.Spec, "--ctap2", "--control", sock)
	if i := getInfo(addr); !i.Options["alwaysUv"] || i.MinPINLength != 6 {
		t.Fatalf("the restored state directory brought the old settings back: alwaysUv %v, minPINLength %d", i.Options["alwaysUv"], i.MinPINLength)
	}
	if st, _, err := ctap2Call(ctx, dial(t, ctx, addr), ctap2.CmdReset, nil); err != nil || st != ctap2.OK {
		t.Fatalf("reset: %v %v", st, err)
	}
	if i := getInfo(addr); i.Options["alwaysUv"] || i.MinPINLength != 4 {
		t.Fatalf("after reset: alwaysUv %v, minPINLength %d", i.Options["alwaysUv"], i.MinPINLength)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
