package ctaphid_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid/hidtest"
)

// statusHandler sets the given statuses in turn and answers.
type statusHandler struct{ statuses []byte }

func (h statusHandler) Handle(_ context.Context, req ctaphid.Request) []byte {
	for _, st := range h.statuses {
		req.SetStatus(st)
	}
	return []byte{0}
}

// TestKeepaliveOnlyWhenStatusChanges: SetStatus with the status a request
// already has (PROCESSING, from its start) sends nothing; a change is sent
// at once.
func TestKeepaliveOnlyWhenStatusChanges(t *testing.T) {
	for _, tc := range []struct {
		statuses []byte
		want     int
	}{
		{[]byte{ctaphid.StatusProcessing}, 0},
		{[]byte{ctaphid.StatusProcessing, ctaphid.StatusProcessing}, 0},
		{[]byte{ctaphid.StatusUPNeeded, ctaphid.StatusUPNeeded, ctaphid.StatusProcessing}, 2},
	} {
		dev, host := hidtest.NewPipe()
		// No periodic KEEPALIVE during the test: only the immediate ones.
		srv := ctaphid.NewServer(dev, statusHandler{tc.statuses}, ctaphid.Options{Capabilities: ctaphid.CapCBOR, KeepaliveInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ctx) }()
		c := ctaphid.NewClient(host)
		var n atomic.Int32
		c.OnKeepalive = func(byte) { n.Add(1) }
		if err := c.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(ctx, ctaphid.CmdCBOR, []byte{4}); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		host.Close()
		if got := int(n.Load()); got != tc.want {
			t.Errorf("statuses %v: %d KEEPALIVE reports, want %d", tc.statuses, got, tc.want)
		}
	}
}
