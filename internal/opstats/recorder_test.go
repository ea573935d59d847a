package opstats

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// restTime is what fakeToken spends outside the TPM, the replay store and
// the prompt.
const restTime = 10 * time.Millisecond

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
	time.Sleep(restTime) // work of the daemon's own
	if req.Command == ctaphid.CmdCBOR {
		return []byte{0}
	}
	return []byte{0x90, 0x00}
}

func TestRecorderSplitsARequest(t *testing.T) {
	r := New()
	// Long enough that a loaded machine's scheduling delays (the rest)
	// stay well below the replay's time.
	const tpmTime, replayTime, presenceTime = 40 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond
	h := r.Handler(fakeToken{r.TPM(slowTPM{tpmTime}), r.Replay(slowGuard{replayTime}), r.Prompter(slowPrompter{presenceTime})})
	// One request: every sketch then holds that request's own parts, so
	// they add up whatever the machine's load made of the sleeps (medians
	// of several requests would each come from another request).
	h.Handle(context.Background(), ctaphid.Request{Command: ctaphid.CmdCBOR, Payload: []byte{0x02, 0xa0}})
	p := r.ops["ctap2 getAssertion"]
	if p == nil || p.total.Count() != 1 {
		t.Fatalf("not recorded as ctap2 getAssertion:\n%s", r)
	}
	const slack = 1.035 // the sketch's resolution
	tpm, replay, pres, rest, total := p.tpm.Quantile(.5), p.replay.Quantile(.5), p.presence.Quantile(.5), p.rest.Quantile(.5), p.total.Quantile(.5)
	if float64(tpm)*slack < float64(tpmTime) || float64(replay)*slack < float64(replayTime) || float64(pres)*slack < float64(presenceTime) {
		t.Errorf("tpm %v replay %v presence %v: less than they took", tpm, replay, pres)
	}
	// The record ran inside the TPM command: the rest is the 10 ms of the
	// token's own work, neither holding the replay's 20 ms (not
	// subtracted) nor short of it (subtracted twice, which would clamp it
	// to 0). A loaded machine's scheduling may add to it, well below 10 ms.
	if float64(rest)*slack < float64(restTime) || rest >= restTime+replayTime/2 {
		t.Errorf("total %v, rest %v (want about %v): the overlapped replay time was subtracted twice, or counted as the rest", total, rest, restTime)
	}
	if !strings.Contains(r.String(), "ctap2 getAssertion: n=1 p50/p95/p99 ms: total ") {
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
