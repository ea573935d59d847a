package opstats

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

type slowTPM struct{ d time.Duration }

func (s slowTPM) Send(cmd []byte) ([]byte, error) { time.Sleep(s.d); return cmd, nil }

type slowGuard struct{ d time.Duration }

func (s slowGuard) Check([32]byte) error  { return nil }
func (s slowGuard) Record([32]byte) error { time.Sleep(s.d); return nil }

type slowPrompter struct{ d time.Duration }

func (s slowPrompter) Confirm(context.Context, presence.Request) error { time.Sleep(s.d); return nil }

// fakeToken does what a signature does: asks the user, then a TPM command
// while the replay record is written (the overlap), then answers.
type sender interface{ Send([]byte) ([]byte, error) }

type fakeToken struct {
	t sender
	g Guard
	p presence.Prompter
}

func (f fakeToken) Handle(ctx context.Context, req ctaphid.Request) []byte {
	f.p.Confirm(ctx, presence.Request{})
	done := make(chan struct{})
	go func() { f.g.Record([32]byte{}); close(done) }()
	f.t.Send(nil)
	<-done
	if req.Command == ctaphid.CmdCBOR {
		return []byte{0}
	}
	return []byte{0x90, 0x00}
}

func TestRecorderSplitsARequest(t *testing.T) {
	r := New()
	const tpmTime, replayTime, presenceTime = 4 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond
	h := r.Handler(fakeToken{r.TPM(slowTPM{tpmTime}), r.Replay(slowGuard{replayTime}), r.Prompter(slowPrompter{presenceTime})})
	for range 3 {
		h.Handle(context.Background(), ctaphid.Request{Command: ctaphid.CmdCBOR, Payload: []byte{0x02, 0xa0}})
	}
	p := r.ops["ctap2 getAssertion"]
	if p == nil || p.total.Count() != 3 {
		t.Fatalf("not recorded as ctap2 getAssertion:\n%s", r)
	}
	const slack = 1.035 // the sketch's resolution
	tpm, replay, pres, rest, total := p.tpm.Quantile(.5), p.replay.Quantile(.5), p.presence.Quantile(.5), p.rest.Quantile(.5), p.total.Quantile(.5)
	if float64(tpm)*slack < float64(tpmTime) || float64(replay)*slack < float64(replayTime) || float64(pres)*slack < float64(presenceTime) {
		t.Errorf("tpm %v replay %v presence %v: less than they took", tpm, replay, pres)
	}
	// The record ran inside the TPM command: it adds nothing to the rest.
	if float64(rest) > float64(total-tpm-pres)*slack+float64(100*time.Microsecond) || float64(total)*slack < float64(tpmTime+presenceTime) {
		t.Errorf("total %v, rest %v: the overlapped replay time was subtracted twice or not at all", total, rest)
	}
	if !strings.Contains(r.String(), "ctap2 getAssertion: n=3 p50/p95/p99 ms: total ") {
		t.Errorf("String:\n%s", r)
	}
}

func TestOperationNames(t *testing.T) {
	for _, tc := range []struct {
		cmd      byte
		req, rsp []byte
		want     string
	}{
		{ctaphid.CmdMsg, []byte{0, 0x02, 0x03, 0}, []byte{0x90, 0}, "u2f authenticate"},
		{ctaphid.CmdMsg, []byte{0, 0x02, 0x03, 0}, []byte{0x69, 0x85}, "u2f authenticate (refused)"},
		{ctaphid.CmdMsg, []byte{0, 0x02, 0x07, 0}, []byte{0x69, 0x85}, "u2f check-only (refused)"},
		{ctaphid.CmdMsg, []byte{0, 0x01, 0x03, 0}, []byte{5, 0x90, 0}, "u2f register"},
		{ctaphid.CmdMsg, nil, nil, "u2f other (refused)"},
		{ctaphid.CmdCBOR, []byte{0x01}, []byte{0}, "ctap2 makeCredential"},
		{ctaphid.CmdCBOR, []byte{0x06}, []byte{0x31}, "ctap2 clientPIN (refused)"},
		{ctaphid.CmdCBOR, nil, nil, "ctap2 other (refused)"},
	} {
		if got := Operation(tc.cmd, tc.req, tc.rsp); got != tc.want {
			t.Errorf("Operation(%x, %x, %x) = %q, want %q", tc.cmd, tc.req, tc.rsp, got, tc.want)
		}
	}
}

func TestNilRecorderWrapsNothing(t *testing.T) {
	var r *Recorder
	tp := slowTPM{}
	if r.TPM(tp) != tp || r.String() != "" {
		t.Fatal("a nil Recorder must pass things through")
	}
	if _, ok := New().Prompter(presence.Always{}).(presence.Always); !ok {
		t.Fatal("presence.Always must stay itself: the token approves it inline")
	}
}
