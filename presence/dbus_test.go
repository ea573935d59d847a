package presence_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpm-u2f/tpm-u2f/presence"
	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
)

var req = presence.Request{Operation: "sign in", RelyingParty: "example.org"}

func TestDBusAllowDenyTimeout(t *testing.T) {
	cases := []struct {
		answer string
		want   error
	}{
		{"allow", nil},
		{"deny", presence.ErrDenied},
		{"", presence.ErrTimeout},
	}
	for _, c := range cases {
		t.Run("answer="+c.answer, func(t *testing.T) {
			addr := notifytest.SessionBus(t)
			n := &notifytest.Server{Caps: []string{"actions", "body"}, Answer: c.answer, Delay: 50 * time.Millisecond}
			n.Serve(t, addr)
			p := presence.NewDBus(notifytest.Connect(t, addr), 500*time.Millisecond, nil)
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
			if err := p.Confirm(context.Background(), req); !errors.Is(err, c.want) {
				t.Fatalf("Confirm = %v, want %v", err, c.want)
			}
			shown := n.Shown()
			if len(shown) != 1 || !strings.Contains(shown[0], "example.org") || !strings.Contains(shown[0], "sign in") {
				t.Fatalf("notifications shown: %q", shown)
			}
		})
	}
}

// TestDBusSpoofedClickIgnored: another client on the bus sends
// ActionInvoked "allow" for our notification before the real server
// answers "deny". The spoof must not count.
func TestDBusSpoofedClickIgnored(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "deny", Delay: 300 * time.Millisecond}
	n.Serve(t, addr)
	spoofer := notifytest.Connect(t, addr)
	go func() {
		for range 20 {
			time.Sleep(10 * time.Millisecond)
			if id := n.LastID(); id != 0 {
				spoofer.Emit(notifytest.Path, "org.freedesktop.Notifications.ActionInvoked", id, "allow")
				return
			}
		}
	}()
	p := presence.NewDBus(notifytest.Connect(t, addr), 2*time.Second, nil)
	if err := p.Confirm(context.Background(), req); !errors.Is(err, presence.ErrDenied) {
		t.Fatalf("Confirm = %v: a spoofed click was accepted", err)
	}
}

func TestDBusCancelClosesNotification(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}}
	n.Serve(t, addr)
	p := presence.NewDBus(notifytest.Connect(t, addr), 10*time.Second, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := p.Confirm(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("Confirm = %v, want context.Canceled", err)
	}
	if closed := n.Closed(); len(closed) != 1 || closed[0] != n.LastID() {
		t.Fatalf("notifications closed: %v", closed)
	}
}

// TestDBusDenyClosesNotification: a server that leaves a notification up
// after its action was invoked (mako does) must not keep showing a
// prompt that was already answered Deny.
func TestDBusDenyClosesNotification(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "deny"}
	n.Serve(t, addr)
	p := presence.NewDBus(notifytest.Connect(t, addr), 10*time.Second, nil)
	if err := p.Confirm(context.Background(), req); !errors.Is(err, presence.ErrDenied) {
		t.Fatalf("Confirm = %v, want ErrDenied", err)
	}
	if closed := n.Closed(); len(closed) != 1 || closed[0] != n.LastID() {
		t.Fatalf("notifications closed: %v", closed)
	}
}

func TestDBusServerWithoutActionsRefuses(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"body"}, Answer: "allow"}
	n.Serve(t, addr)
	p := presence.NewDBus(notifytest.Connect(t, addr), time.Second, nil)
	if err := p.Confirm(context.Background(), req); !errors.Is(err, presence.ErrNoActions) {
		t.Fatalf("Confirm = %v, want ErrNoActions", err)
	}
	if len(n.Shown()) != 0 {
		t.Fatal("showed a notification that cannot be answered")
	}
}

func TestDBusNoServer(t *testing.T) {
	addr := notifytest.SessionBus(t)
	p := presence.NewDBus(notifytest.Connect(t, addr), time.Second, nil)
	if err := p.Confirm(context.Background(), req); err == nil {
		t.Fatal("approved with no notification server")
	}
}

func TestDBusOnePromptAtATime(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "allow", Delay: 200 * time.Millisecond}
	n.Serve(t, addr)
	p := presence.NewDBus(notifytest.Connect(t, addr), 5*time.Second, nil)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Confirm(context.Background(), req); err != nil {
				t.Error(err)
			}
		}()
	}
	maxOpen := 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		maxOpen = max(maxOpen, len(n.Shown())-len(n.Closed()))
	}
	wg.Wait()
	if maxOpen > 1 {
		t.Fatalf("%d prompts were open at once", maxOpen)
	}
	if len(n.Shown()) != 3 {
		t.Fatalf("%d prompts shown, want 3 in turn", len(n.Shown()))
	}
}

// A notification server without buttons: with a fallback (the tray), the
// question goes there, and only an answer there decides.
func TestDBusFallsBackWhenTheServerHasNoButtons(t *testing.T) {
	addr := notifytest.SessionBus(t)
	n := &notifytest.Server{Caps: []string{"body"}, Answer: "allow"}
	n.Serve(t, addr)
	p := presence.NewDBus(notifytest.Connect(t, addr), time.Second, nil)
	manual := presence.NewManual(2 * time.Second)
	p.SetFallback(manual, func() bool { return true })
	for _, allow := range []bool{true, false} {
		done := make(chan error, 1)
		go func() { done <- p.Confirm(context.Background(), req) }()
		var q presence.Request
		for deadline := time.Now().Add(2 * time.Second); ; {
			var ok bool
			if q, ok = manual.Pending(); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the fallback was never asked")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if q != req {
			t.Fatalf("fallback asked %+v", q)
		}
		manual.Answer(allow)
		err := <-done
		if allow && err != nil || !allow && !errors.Is(err, presence.ErrDenied) {
			t.Fatalf("answer %v: Confirm = %v", allow, err)
		}
	}
	if len(n.Shown()) != 0 {
		t.Fatal("showed a notification that cannot be answered")
	}
}

func TestManual(t *testing.T) {
	m := presence.NewManual(50 * time.Millisecond)
	m.Answer(true) // a click with nothing pending approves nothing
	if err := m.Confirm(context.Background(), req); !errors.Is(err, presence.ErrTimeout) {
		t.Fatalf("unanswered: %v", err)
	}
	if _, ok := m.Pending(); ok {
		t.Fatal("still pending after the timeout")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Confirm(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// With no tray host to show the fallback's question, nobody could answer
// it: the request is refused at once instead of waiting for its timeout.
func TestDBusNoFallbackWhileTheTrayIsNotShown(t *testing.T) {
	addr := notifytest.SessionBus(t)
	p := presence.NewDBus(notifytest.Connect(t, addr), time.Second, nil)
	manual := presence.NewManual(time.Minute)
	p.SetFallback(manual, func() bool { return false })
	start := time.Now()
	if err := p.Confirm(context.Background(), req); err == nil {
		t.Fatal("approved with no notification server and no tray")
	}
	if _, asked := manual.Pending(); asked || time.Since(start) > 30*time.Second {
		t.Fatal("asked a fallback nobody can see")
	}
}

// A notification server that starts after the daemon (a login race) is
// used from the next prompt on: the server is looked for at each prompt.
func TestDBusServerThatStartsLaterIsUsed(t *testing.T) {
	addr := notifytest.SessionBus(t)
	p := presence.NewDBus(notifytest.Connect(t, addr), 2*time.Second, nil)
	if err := p.Confirm(context.Background(), req); err == nil {
		t.Fatal("approved with no notification server")
	}
	n := &notifytest.Server{Caps: []string{"actions"}, Answer: "allow"}
	n.Serve(t, addr)
	if err := p.Confirm(context.Background(), req); err != nil {
		t.Fatalf("Confirm with the server that came later: %v", err)
	}
}
