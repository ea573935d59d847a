package interop

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
)

// pythonWithFido2 finds an interpreter that can import python-fido2
// (Debian's python3-fido2; a pyenv python3 first on PATH may lack it).
func pythonWithFido2(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if err := exec.Command(p, "-c", "import fido2, cryptography").Run(); err == nil {
			return p
		}
	}
	tpmtest.SkipMissing(t, "no python3 with fido2 (apt-get install python3-fido2)")
	return ""
}

func runPythonU2F(t *testing.T, tpmSpec string, env []string, extraArgs ...string) {
	py := pythonWithFido2(t)
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), env, append([]string{"--tpm", tpmSpec}, extraArgs...)...)
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/u2f_udp.py", host, port).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil {
		t.Fatalf("python-fido2 interop failed: %v", err)
	}
	if !strings.Contains(string(out), " 0 failed") {
		t.Fatal("python-fido2 did not report its summary line")
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit after SIGTERM: %v", err)
	}
}

// TestPythonFido2U2F: python-fido2's own CTAPHID and CTAP1 code registers
// and authenticates against the daemon on the embedded simulator.
func TestPythonFido2U2F(t *testing.T) { runPythonU2F(t, "sim", nil) }

// TestPythonFido2U2FOnSWTPM does the same with swtpm as the TPM.
func TestPythonFido2U2FOnSWTPM(t *testing.T) { runPythonU2F(t, tpmtest.SWTPM(t), nil) }

// TestPythonFido2U2FWithDesktopPrompt runs the same client against the
// daemon's default presence mode: each registration and authentication
// shows a desktop notification on a real (private) session bus, and a
// test notification server clicks Allow; python-fido2 polls meanwhile.
func TestPythonFido2U2FWithDesktopPrompt(t *testing.T) {
	bus := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions", "body"}, Answer: "allow", Delay: 150 * time.Millisecond}
	n.Serve(t, bus)
	runPythonU2F(t, "sim", []string{"DBUS_SESSION_BUS_ADDRESS=" + bus}, "--presence", "dbus")
	shown := n.Shown()
	if len(shown) != 3 { // one registration, two authentications
		t.Fatalf("%d prompts shown, want 3: %q", len(shown), shown)
	}
	for _, s := range shown {
		t.Logf("prompt: %s", s)
	}
}

// TestPythonFido2CTAP2 drives the experimental CTAP2 support (--ctap2) with
// python-fido2's Ctap2 class; python-fido2 verifies the packed
// self-attestation and the assertions itself.
func TestPythonFido2CTAP2(t *testing.T) {
	py := pythonWithFido2(t)
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--ctap2")
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/ctap2_udp.py", host, port).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("python-fido2 CTAP2 interop failed: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}

// TestPythonFido2ClientPIN: python-fido2's ClientPin (protocols 1 and 2),
// Fido2Client and Fido2Server (a passkey registered and used with the PIN,
// discoverable login), CredentialManagement, and the wrong-PIN rules with
// re-plugs through `tpm-u2f replug`.
func TestPythonFido2ClientPIN(t *testing.T) {
	py := pythonWithFido2(t)
	sock := filepath.Join(t.TempDir(), "control.sock")
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--ctap2", "--control", sock)
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/pin_udp.py", host, port, binary(t), sock).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("python-fido2 clientPIN interop failed: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}

// TestPythonFido2Extensions: python-fido2 (Ctap2, ClientPin, LargeBlobs)
// uses credBlob, largeBlobKey with the large-blob array, hmac-secret-mc,
// thirdPartyPayment and attestationFormatsPreference against the daemon.
func TestPythonFido2Extensions(t *testing.T) {
	py := pythonWithFido2(t)
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--ctap2")
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/ext_udp.py", host, port).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("python-fido2 extensions interop failed: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}

// TestPythonFido2Config: python-fido2's Config (toggle_always_uv,
// set_min_pin_length) with pinUvAuthTokens carrying acfg, both PIN/UV auth
// protocols; getInfo follows; alwaysUv makes UV necessary and switches
// U2F off (CTAPHID_MSG refused); a raised minimum forces a PIN change
// that a too-short PIN cannot satisfy, and changePIN ends it. A pcmr
// token (CTAP 2.2) lists credentials, again, and cannot delete them.
func TestPythonFido2Config(t *testing.T) {
	py := pythonWithFido2(t)
	addr, stop, _, _ := startDaemonEnv(t, t.TempDir(), nil, "--tpm", "sim", "--ctap2")
	host, port, _ := net.SplitHostPort(clientAddr(t, addr))
	out, err := exec.Command(py, "python/config_udp.py", host, port).CombinedOutput()
	t.Logf("python-fido2:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 failed") {
		t.Fatalf("python-fido2 config interop failed: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}
