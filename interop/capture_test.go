package interop

import (
	"crypto/sha256"
	be "encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Seed corpora from real traffic. With TPM_U2F_CAPTURE_CORPUS=1 the
// python-fido2 tests talk to the daemon through captureProxy, which
// records every report the client sends and writes, per session:
//   - the whole report stream → token/ctaphid FuzzServer, FuzzAssemble
//   - each reassembled CTAPHID_MSG → token FuzzParseAPDU, FuzzHandleAPDU
//   - each CTAPHID_CBOR parameter map → token/ctap2 FuzzDecode<Command>
// as Go fuzz corpus files under testdata/fuzz, named by content hash, so
// running it again adds nothing twice. `make corpus` runs it.

func captureEnabled() bool { return os.Getenv("TPM_U2F_CAPTURE_CORPUS") != "" }

// captureProxy relays datagrams between one client and the daemon at
// daemonAddr and returns the address the client should use.
func captureProxy(t *testing.T, daemonAddr string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.Dial("udp", daemonAddr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		client  net.Addr
		reports [][]byte
	)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			client = from
			reports = append(reports, append([]byte(nil), buf[:n]...))
			mu.Unlock()
			up.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := client
			mu.Unlock()
			if to != nil {
				pc.WriteTo(buf[:n], to)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		up.Close()
		mu.Lock()
		defer mu.Unlock()
		writeCorpus(t, reports)
	})
	return pc.LocalAddr().String()
}

// ctap2Targets names the decoder fuzz target for a CTAP2 command byte.
var ctap2Targets = map[byte]string{
	0x01: "FuzzDecodeMakeCredential", 0x02: "FuzzDecodeGetAssertion",
	0x06: "FuzzDecodeClientPIN", 0x0a: "FuzzDecodeCredMgmt", 0x41: "FuzzDecodeCredMgmt",
}

func writeCorpus(t *testing.T, reports [][]byte) {
	var stream []byte
	type asm struct {
		cmd  byte
		want int
		data []byte
	}
	msgs := map[uint32]*asm{}
	wrote := 0
	add := func(dir, target string, b []byte) {
		if len(b) == 0 {
			return
		}
		sum := sha256.Sum256(b)
		path := filepath.Join("..", dir, "testdata", "fuzz", target, fmt.Sprintf("real-%x", sum[:8]))
		os.MkdirAll(filepath.Dir(path), 0o755)
		if _, err := os.Stat(path); err == nil {
			return
		}
		if err := os.WriteFile(path, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(b))+")\n"), 0o644); err != nil {
			t.Errorf("corpus: %v", err)
			return
		}
		wrote++
	}
	for _, r := range reports {
		if len(r) != 64 {
			continue
		}
		stream = append(stream, r...)
		cid := be.BigEndian.Uint32(r)
		if r[4]&0x80 != 0 {
			n := int(be.BigEndian.Uint16(r[5:7]))
			msgs[cid] = &asm{cmd: r[4] &^ 0x80, want: n, data: append([]byte(nil), r[7:7+min(n, 57)]...)}
		} else if m := msgs[cid]; m != nil {
			m.data = append(m.data, r[5:5+min(m.want-len(m.data), 59)]...)
		}
		m := msgs[cid]
		if m == nil || len(m.data) < m.want {
			continue
		}
		delete(msgs, cid)
		switch m.cmd {
		case 0x03: // MSG: an APDU
			add("token", "FuzzParseAPDU", m.data)
			add("token", "FuzzHandleAPDU", m.data)
		case 0x10: // CBOR: command byte, parameters
			if target, ok := ctap2Targets[m.data[0]]; ok {
				add("token/ctap2", target, m.data[1:])
			}
		}
	}
	// The report stream in pieces the fuzzer can handle (up to 64 reports).
	for i := 0; i < len(stream); i += 64 * 64 {
		piece := stream[i:min(i+64*64, len(stream))]
		add("token/ctaphid", "FuzzServer", piece)
		add("token/ctaphid", "FuzzAssemble", piece)
	}
	t.Logf("corpus: %d reports captured, %d new corpus files", len(reports), wrote)
}

// clientAddr is where a test client should send: the daemon, or the
// capture proxy in front of it.
func clientAddr(t *testing.T, daemonAddr string) string {
	if !captureEnabled() {
		return daemonAddr
	}
	return captureProxy(t, daemonAddr)
}
