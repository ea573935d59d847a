package interop

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/internal/doctor"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// `tpm-u2f doctor` against the real daemon and swtpm: the daemon check is
// a FIX until the daemon runs and OK after; the TPM check talks to the TPM
// the daemon uses; the exit code is non-zero while anything blocks use
// (here at least /dev/uhid, which this kernel lacks, or which the guest
// has).
func TestDoctorAgainstTheDaemon(t *testing.T) {
	spec := tpmtest.SWTPM(t)
	sock := filepath.Join(t.TempDir(), "control.sock")
	run := func() (map[string]doctor.Result, int) {
		t.Helper()
		cmd := exec.Command(binary(t), "doctor", "--json", "--control", sock, "--tpm", spec)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var rs []doctor.Result
		if err := json.Unmarshal(out, &rs); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, out)
		}
		m := map[string]doctor.Result{}
		for _, r := range rs {
			m[r.Name] = r
		}
		return m, code
	}
	rs, _ := run()
	if r := rs["daemon"]; r.OK || !r.Blocking {
		t.Errorf("no daemon yet: %+v", r)
	}
	if r := rs["TPM capabilities"]; !r.OK {
		t.Errorf("TPM capabilities on swtpm, asked directly: %+v", r)
	}
	startDaemonEnv(t, t.TempDir(), nil, "--tpm", spec, "--control", sock)
	rs, code := run()
	if r := rs["daemon"]; !r.OK {
		t.Errorf("daemon running: %+v", r)
	}
	if r := rs["TPM capabilities"]; !r.OK {
		t.Errorf("TPM capabilities on swtpm: %+v", r)
	}
	blocked := false
	for _, r := range rs {
		blocked = blocked || r.Blocking
	}
	if blocked != (code != 0) {
		t.Errorf("exit code %d with blocked=%v", code, blocked)
	}
}
