package ctaphid_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
)

// testHandler echoes MSG payloads; a payload starting with "slow" waits
// for its context (or release) and reports UPNEEDED meanwhile.
type testHandler struct {
	release   chan struct{}
	cancelled chan struct{}
}

func (h *testHandler) Handle(ctx context.Context, req ctaphid.Request) []byte {
	if bytes.HasPrefix(req.Payload, []byte("slow")) {
		req.SetStatus(ctaphid.StatusUPNeeded)
		select {
		case <-ctx.Done():
			close(h.cancelled)
			return []byte{0x2d} // CTAP2_ERR_KEEPALIVE_CANCEL
		case <-h.release:
		}
	}
	return append([]byte("echo:"), req.Payload...)
}

type rig struct {
	host    ctaphid.Transport
	h       *testHandler
	reports chan ctaphid.Report
	stop    func()
}

func newRig(t *testing.T, opt ctaphid.Options) *rig {
	t.Helper()
	leakCheck(t)
	dev, host := hidtest.NewPipe()
	h := &testHandler{release: make(chan struct{}), cancelled: make(chan struct{})}
	srv := ctaphid.NewServer(dev, h, opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	r := &rig{host: host, h: h, reports: make(chan ctaphid.Report, 1024)}
	go func() {
		for {
			rep, err := host.ReadReport()
			if err != nil {
				close(r.reports)
				return
			}
			r.reports <- rep
		}
	}()
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		host.Close()
	}
	t.Cleanup(r.stop)
	return r
}

// leakCheck fails the test if it leaves goroutines behind (as
// wireguard-go's goroutineLeakCheck does).
func leakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func (r *rig) send(t *testing.T, raw []byte) {
	t.Helper()
	var rep ctaphid.Report
	copy(rep.Data[:], raw)
	if err := r.host.WriteReport(rep); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) sendMsg(t *testing.T, cid uint32, cmd byte, payload []byte) {
	t.Helper()
	pkts, err := ctaphid.Fragment(cid, cmd, payload)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		r.send(t, p[:])
	}
}

// recv reads one whole message on cid, skipping keepalives unless asked.
func (r *rig) recv(t *testing.T, cid uint32, keepalives bool) (byte, []byte) {
	t.Helper()
	var cmd byte
	var want int
	var buf []byte
	timeout := time.After(3 * time.Second)
	for {
		var rep ctaphid.Report
		select {
		case rep = <-r.reports:
		case <-timeout:
			t.Fatalf("no reply on channel %08x", cid)
		}
		d := rep.Data
		if binary.BigEndian.Uint32(d[0:4]) != cid {
			continue
		}
		if d[4]&0x80 != 0 {
			cmd = d[4] &^ 0x80
			if cmd == ctaphid.CmdKeepalive && !keepalives {
				continue
			}
			want = int(binary.BigEndian.Uint16(d[5:7]))
			buf = append([]byte(nil), d[7:7+min(want, 57)]...)
		} else {
			buf = append(buf, d[5:5+min(want-len(buf), 59)]...)
		}
		if len(buf) == want {
			return cmd, buf
		}
	}
}

func (r *rig) expectError(t *testing.T, cid uint32, want ctaphid.Error) {
	t.Helper()
	cmd, p := r.recv(t, cid, false)
	if cmd != ctaphid.CmdError || len(p) != 1 || ctaphid.Error(p[0]) != want {
		t.Fatalf("got cmd %#x payload %x, want ERROR %v", cmd, p, want)
	}
}

func (r *rig) init(t *testing.T) uint32 {
	t.Helper()
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	r.sendMsg(t, ctaphid.BroadcastCID, ctaphid.CmdInit, nonce)
	cmd, p := r.recv(t, ctaphid.BroadcastCID, false)
	if cmd != ctaphid.CmdInit || len(p) != 17 || !bytes.Equal(p[:8], nonce) {
		t.Fatalf("INIT reply cmd %#x payload %x", cmd, p)
	}
	if p[12] != 2 {
		t.Errorf("protocol version %d, want 2", p[12])
	}
	cid := binary.BigEndian.Uint32(p[8:12])
	if cid == 0 || cid == ctaphid.BroadcastCID {
		t.Fatalf("allocated CID %08x", cid)
	}
	return cid
}

func TestInitAndPing(t *testing.T) {
	r := newRig(t, ctaphid.Options{Capabilities: ctaphid.CapWink, DeviceVersion: [3]byte{1, 2, 3}})
	a, b := r.init(t), r.init(t)
	if a == b {
		t.Fatal("two INITs got the same channel")
	}
	for _, n := range []int{0, 1, 57, 58, 59 + 57, 7609} {
		payload := bytes.Repeat([]byte{byte(n)}, n)
		r.sendMsg(t, a, ctaphid.CmdPing, payload)
		cmd, got := r.recv(t, a, false)
		if cmd != ctaphid.CmdPing || !bytes.Equal(got, payload) {
			t.Fatalf("PING %d bytes: got cmd %#x, %d bytes", n, cmd, len(got))
		}
	}
	// Resync on an allocated channel answers on that channel with the same CID.
	r.sendMsg(t, a, ctaphid.CmdInit, []byte{9, 9, 9, 9, 9, 9, 9, 9})
	cmd, p := r.recv(t, a, false)
	if cmd != ctaphid.CmdInit || binary.BigEndian.Uint32(p[8:12]) != a || p[16] != ctaphid.CapWink || p[13] != 1 || p[15] != 3 {
		t.Fatalf("resync reply %#x %x", cmd, p)
	}
	r.sendMsg(t, a, ctaphid.CmdWink, nil)
	if cmd, _ := r.recv(t, a, false); cmd != ctaphid.CmdWink {
		t.Fatalf("WINK reply %#x", cmd)
	}
}

func TestErrors(t *testing.T) {
	r := newRig(t, ctaphid.Options{MessageTimeout: 100 * time.Millisecond})
	cid := r.init(t)

	// Declared length over 7609.
	pkt := make([]byte, 64)
	binary.BigEndian.PutUint32(pkt, cid)
	pkt[4], pkt[5], pkt[6] = 0x80|ctaphid.CmdPing, 0x1d, 0xba // 7610
	r.send(t, pkt)
	r.expectError(t, cid, ctaphid.ErrInvalidLen)

	// INIT with a length other than 8.
	r.sendMsg(t, ctaphid.BroadcastCID, ctaphid.CmdInit, []byte{1, 2, 3})
	r.expectError(t, ctaphid.BroadcastCID, ctaphid.ErrInvalidLen)

	// Unknown command; CBOR without the capability.
	r.sendMsg(t, cid, 0x55, nil)
	r.expectError(t, cid, ctaphid.ErrInvalidCmd)
	r.sendMsg(t, cid, ctaphid.CmdCBOR, []byte{4})
	r.expectError(t, cid, ctaphid.ErrInvalidCmd)

	// CID 0, and a non-INIT command on the broadcast channel.
	r.sendMsg(t, 0, ctaphid.CmdPing, nil)
	r.expectError(t, 0, ctaphid.ErrInvalidChannel)
	r.sendMsg(t, ctaphid.BroadcastCID, ctaphid.CmdPing, nil)
	r.expectError(t, ctaphid.BroadcastCID, ctaphid.ErrInvalidChannel)

	// A skipped sequence number.
	pkts, _ := ctaphid.Fragment(cid, ctaphid.CmdPing, make([]byte, 200))
	r.send(t, pkts[0][:])
	r.send(t, pkts[2][:])
	r.expectError(t, cid, ctaphid.ErrInvalidSeq)

	// An init packet arriving in the middle of a message.
	r.send(t, pkts[0][:])
	r.sendMsg(t, cid, ctaphid.CmdPing, []byte("x"))
	r.expectError(t, cid, ctaphid.ErrInvalidSeq)

	// A message whose continuation never comes.
	r.send(t, pkts[0][:])
	start := time.Now()
	r.expectError(t, cid, ctaphid.ErrMsgTimeout)
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("timed out after %v, before the message timeout", d)
	}
	// A stray continuation packet is ignored; the channel still works.
	r.send(t, pkts[1][:])
	r.sendMsg(t, cid, ctaphid.CmdPing, []byte("ok"))
	if _, p := r.recv(t, cid, false); string(p) != "ok" {
		t.Fatalf("PING after faults: %q", p)
	}

	// LOCK over 10 s.
	r.sendMsg(t, cid, ctaphid.CmdLock, []byte{11})
	r.expectError(t, cid, ctaphid.ErrInvalidPar)
}

// TestEmptyCBORIsInvalidLen: a CTAPHID_CBOR message without even the
// command byte is a CTAPHID_ERROR INVALID_LEN frame (CTAP 2.1 section
// 11.2.9.1.2: BCNT is at least 1), and never reaches the handler.
func TestEmptyCBORIsInvalidLen(t *testing.T) {
	r := newRig(t, ctaphid.Options{Capabilities: ctaphid.CapCBOR})
	cid := r.init(t)
	r.sendMsg(t, cid, ctaphid.CmdCBOR, nil)
	r.expectError(t, cid, ctaphid.ErrInvalidLen)
	r.sendMsg(t, cid, ctaphid.CmdCBOR, []byte{4})
	if cmd, p := r.recv(t, cid, false); cmd != ctaphid.CmdCBOR || string(p) != "echo:\x04" {
		t.Fatalf("CBOR with a command byte: cmd %#x payload %q", cmd, p)
	}
}

func TestNeverAllocatedChannelServed(t *testing.T) {
	r := newRig(t, ctaphid.Options{})
	r.sendMsg(t, 0x01020304, ctaphid.CmdMsg, []byte("hi"))
	if cmd, p := r.recv(t, 0x01020304, false); cmd != ctaphid.CmdMsg || string(p) != "echo:hi" {
		t.Fatalf("got %#x %q", cmd, p)
	}
}

func TestBusyKeepaliveCancel(t *testing.T) {
	r := newRig(t, ctaphid.Options{KeepaliveInterval: 20 * time.Millisecond})
	a, b := r.init(t), r.init(t)
	r.sendMsg(t, a, ctaphid.CmdMsg, []byte("slow"))
	// KEEPALIVE UPNEEDED while the handler waits for the user.
	cmd, p := r.recv(t, a, true)
	if cmd != ctaphid.CmdKeepalive || len(p) != 1 || p[0] != ctaphid.StatusUPNeeded {
		t.Fatalf("got %#x %x, want KEEPALIVE UPNEEDED", cmd, p)
	}
	// Another channel: MSG is busy, but INIT and PING are answered at once.
	r.sendMsg(t, b, ctaphid.CmdMsg, []byte("x"))
	r.expectError(t, b, ctaphid.ErrChannelBusy)
	r.sendMsg(t, b, ctaphid.CmdPing, []byte("alive"))
	if _, p := r.recv(t, b, false); string(p) != "alive" {
		t.Fatalf("PING during a slow request: %q", p)
	}
	r.init(t)
	// The same channel sending another request meanwhile is busy too.
	r.sendMsg(t, a, ctaphid.CmdMsg, []byte("again"))
	r.expectError(t, a, ctaphid.ErrChannelBusy)
	// CANCEL on another channel is ignored; on ours it ends the request.
	r.sendMsg(t, b, ctaphid.CmdCancel, nil)
	r.sendMsg(t, a, ctaphid.CmdCancel, nil)
	select {
	case <-r.h.cancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("CANCEL did not reach the handler")
	}
	if cmd, p := r.recv(t, a, false); cmd != ctaphid.CmdMsg || !bytes.Equal(p, []byte{0x2d}) {
		t.Fatalf("after CANCEL: %#x %x", cmd, p)
	}
	// Free again.
	r.sendMsg(t, b, ctaphid.CmdMsg, []byte("now"))
	if _, p := r.recv(t, b, false); string(p) != "echo:now" {
		t.Fatalf("after the slow request: %q", p)
	}
}

func TestLock(t *testing.T) {
	r := newRig(t, ctaphid.Options{})
	a, b := r.init(t), r.init(t)
	r.sendMsg(t, a, ctaphid.CmdLock, []byte{1})
	if cmd, _ := r.recv(t, a, false); cmd != ctaphid.CmdLock {
		t.Fatalf("LOCK reply %#x", cmd)
	}
	r.sendMsg(t, b, ctaphid.CmdMsg, []byte("x"))
	r.expectError(t, b, ctaphid.ErrChannelBusy)
	r.sendMsg(t, a, ctaphid.CmdMsg, []byte("mine"))
	if _, p := r.recv(t, a, false); string(p) != "echo:mine" {
		t.Fatalf("lock owner: %q", p)
	}
	r.sendMsg(t, a, ctaphid.CmdLock, []byte{0})
	r.recv(t, a, false)
	r.sendMsg(t, b, ctaphid.CmdMsg, []byte("free"))
	if _, p := r.recv(t, b, false); string(p) != "echo:free" {
		t.Fatalf("after unlock: %q", p)
	}
}

func TestChannelTableBounded(t *testing.T) {
	r := newRig(t, ctaphid.Options{MaxChannels: 4})
	for range 50 {
		r.init(t)
	}
	// Still serving, and the newest channel works.
	cid := r.init(t)
	r.sendMsg(t, cid, ctaphid.CmdPing, []byte("p"))
	if _, p := r.recv(t, cid, false); string(p) != "p" {
		t.Fatal("no answer after many INITs")
	}
}

func TestClientOverPipe(t *testing.T) {
	leakCheck(t)
	dev, host := hidtest.NewPipe()
	h := &testHandler{release: make(chan struct{}), cancelled: make(chan struct{})}
	srv := ctaphid.NewServer(dev, h, ctaphid.Options{KeepaliveInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ctx) }()
	defer func() { cancel(); wg.Wait(); host.Close() }()

	c := ctaphid.NewClient(host)
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("z"), 3000)
	got, err := c.Call(ctx, ctaphid.CmdMsg, big)
	if err != nil || !bytes.Equal(got, append([]byte("echo:"), big...)) {
		t.Fatalf("Call: %d bytes, %v", len(got), err)
	}
	var statuses []byte
	var mu sync.Mutex
	c.OnKeepalive = func(s byte) { mu.Lock(); statuses = append(statuses, s); mu.Unlock() }
	go func() { time.Sleep(50 * time.Millisecond); close(h.release) }()
	if _, err := c.Call(ctx, ctaphid.CmdMsg, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(statuses) == 0 || statuses[0] != ctaphid.StatusUPNeeded {
		t.Errorf("keepalives seen: %v", statuses)
	}
	mu.Unlock()
	_, err = c.Call(ctx, 0x55, nil)
	if e, ok := ctaphid.ErrorCode(err); !ok || e != ctaphid.ErrInvalidCmd || !strings.Contains(err.Error(), "invalid command") {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestUDP(t *testing.T) {
	if _, err := ctaphid.ListenUDP("192.0.2.1:8111", nil); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("non-loopback address: %v", err)
	}
	leakCheck(t)
	dev, err := ctaphid.ListenUDP("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := dev.(interface{ LocalAddr() net.Addr }).LocalAddr().String()
	h := &testHandler{release: make(chan struct{}), cancelled: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctaphid.NewServer(dev, h, ctaphid.Options{}).Serve(ctx) }()
	defer func() { cancel(); <-done }()
	// Two clients from two ports: each gets its own answers.
	for i := range 2 {
		host, err := ctaphid.DialUDP(addr)
		if err != nil {
			t.Fatal(err)
		}
		c := ctaphid.NewClient(host)
		if err := c.Init(ctx); err != nil {
			t.Fatal(err)
		}
		msg := bytes.Repeat([]byte{byte(i)}, 500)
		got, err := c.Call(ctx, ctaphid.CmdMsg, msg)
		if err != nil || !bytes.Equal(got, append([]byte("echo:"), msg...)) {
			t.Fatalf("client %d over UDP: %v", i, err)
		}
		host.Close()
	}
}

// TestMsgRefusedAtRunTime: while MsgRefused says so, CTAPHID_MSG is
// ERR_INVALID_CMD, as on a key without U2F; CBOR goes on; once it says
// no more, MSG is answered again.
func TestMsgRefusedAtRunTime(t *testing.T) {
	var refused atomic.Bool
	refused.Store(true)
	r := newRig(t, ctaphid.Options{Capabilities: ctaphid.CapCBOR, MsgRefused: refused.Load})
	cid := r.init(t)
	r.sendMsg(t, cid, ctaphid.CmdMsg, []byte("hi"))
	r.expectError(t, cid, ctaphid.ErrInvalidCmd)
	r.sendMsg(t, cid, ctaphid.CmdCBOR, []byte("cbor"))
	if cmd, _ := r.recv(t, cid, false); cmd != ctaphid.CmdCBOR {
		t.Fatalf("CBOR answered with 0x%02x", cmd)
	}
	refused.Store(false)
	r.sendMsg(t, cid, ctaphid.CmdMsg, []byte("hi"))
	if cmd, p := r.recv(t, cid, false); cmd != ctaphid.CmdMsg || string(p) != "echo:hi" {
		t.Fatalf("MSG after: 0x%02x %q", cmd, p)
	}
}
