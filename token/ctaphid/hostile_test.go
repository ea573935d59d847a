package ctaphid_test

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// ping checks that a well-behaved client on cid is served.
func (r *rig) ping(t *testing.T, cid uint32, what string) {
	t.Helper()
	r.sendMsg(t, cid, ctaphid.CmdPing, []byte(what))
	if cmd, p := r.recv(t, cid, false); cmd != ctaphid.CmdPing || string(p) != what {
		t.Fatalf("%s: the well-behaved client got cmd %#x %q", what, cmd, p)
	}
}

func initPacket(cid uint32, cmd byte, bcnt int, data []byte) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b, cid)
	b[4] = cmd | 0x80
	binary.BigEndian.PutUint16(b[5:7], uint16(bcnt))
	copy(b[7:], data)
	return b
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHostileClients: what a hostile program that opened the hidraw node
// can do over CTAPHID, one attack after another, with a well-behaved
// client checked after each. The token stays responsive and its memory
// bounded.
func TestHostileClients(t *testing.T) {
	r := newRig(t, ctaphid.Options{MaxChannels: 64, MessageTimeout: 100 * time.Millisecond})
	good := r.init(t)
	before := heap()

	// Thousands of INITs: the channel table stays at MaxChannels, the
	// oldest reclaimed. (A reclaimed channel is still served, as a
	// never-allocated one is: TestNeverAllocatedChannelServed. The table
	// only orders reclaiming; nothing is denied by it.)
	for i := range 5000 {
		r.init(t)
		if i%500 == 0 {
			r.ping(t, good, "during the INIT flood")
		}
	}
	grown := int64(heap()) - int64(before)
	t.Logf("heap after 5000 INITs: %+d bytes", grown)
	if grown > 1<<20 {
		t.Fatalf("heap grew by %d bytes over 5000 INITs", grown)
	}

	// A message that never finishes holds the token for MessageTimeout
	// only: others are told the token is busy, then served.
	hog := r.init(t)
	for range 5 {
		r.send(t, initPacket(hog, ctaphid.CmdPing, 1000, []byte("never finished")))
		// (A short PING would be answered even now: hosts use it to
		// see the key is alive.)
		r.sendMsg(t, good, ctaphid.CmdMsg, []byte("blocked"))
		r.expectError(t, good, ctaphid.ErrChannelBusy)
		r.expectError(t, hog, ctaphid.ErrMsgTimeout)
		r.ping(t, good, "after a never-finished message")
	}

	// Interleaving: a continuation packet for another channel while one is
	// being assembled is ignored (CTAP 2.1 11.2.4) and does not corrupt it.
	other := r.init(t)
	payload := make([]byte, 100)
	for i := range payload {
		payload[i] = byte(i)
	}
	pkts, _ := ctaphid.Fragment(good, ctaphid.CmdPing, payload)
	r.send(t, pkts[0][:])
	cont := make([]byte, 64)
	binary.BigEndian.PutUint32(cont, other)
	cont[4] = 0 // seq 0
	r.send(t, cont)
	r.send(t, pkts[1][:])
	if _, p := r.recv(t, good, false); string(p) != string(payload) {
		t.Fatalf("interleaved message came back as %x", p)
	}

	// Oversized declared lengths.
	for _, n := range []int{ctaphid.MaxMessageSize + 1, 0xffff} {
		r.send(t, initPacket(other, ctaphid.CmdPing, n, nil))
		r.expectError(t, other, ctaphid.ErrInvalidLen)
	}
	r.ping(t, good, "after oversized lengths")

	// LOCK abuse: more than 10 s is refused; a lock holds others off for
	// its time only.
	r.sendMsg(t, other, ctaphid.CmdLock, []byte{255})
	r.expectError(t, other, ctaphid.ErrInvalidPar)
	r.sendMsg(t, other, ctaphid.CmdLock, []byte{1})
	if cmd, _ := r.recv(t, other, false); cmd != ctaphid.CmdLock {
		t.Fatal("LOCK not acknowledged")
	}
	r.sendMsg(t, good, ctaphid.CmdMsg, []byte("locked out"))
	r.expectError(t, good, ctaphid.ErrChannelBusy)
	time.Sleep(1100 * time.Millisecond)
	r.ping(t, good, "after the lock expired")
}
