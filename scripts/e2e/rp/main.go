// Command rp is the e2e guest's relying party for the browser tests: an
// HTTP server on localhost (a secure context for WebAuthn without TLS)
// whose page makes Chromium register and sign in with the security key
// twice, a non-discoverable credential and a passkey (residentKey
// "required", empty allowCredentials at login). Every ceremony is
// verified by github.com/go-webauthn/webauthn, and the verdict is printed
// as one "RP RESULT <name> PASS|FAIL <detail>" line on stdout; the
// guest's test script turns them into E2E RESULT lines. "RP DONE" ends the
// run (and the program, with -exit).
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

type user struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

type server struct {
	wa       *webauthn.WebAuthn
	mu       sync.Mutex
	users    map[string]*user // by name
	sessions map[string]*webauthn.SessionData
	done     chan struct{}
	start    time.Time
}

// The two accounts: alice gets a non-discoverable credential, bob a
// passkey.
var modes = map[string]string{"alice": "nondiscoverable", "bob": "passkey"}

var hints = []protocol.PublicKeyCredentialHints{protocol.PublicKeyCredentialHintSecurityKey}

func (s *server) user(name string) (*user, error) {
	if _, ok := modes[name]; !ok {
		return nil, fmt.Errorf("unknown user %q", name)
	}
	u := s.users[name]
	if u == nil {
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		u = &user{id: id, name: name}
		s.users[name] = u
	}
	return u, nil
}

func (s *server) result(name string, err error, detail string) {
	st := "PASS"
	if err != nil {
		st, detail = "FAIL", err.Error()
	}
	fmt.Printf("RP RESULT %s %s %s (t=%.1fs)\n", name, st, oneLine(detail), time.Since(s.start).Seconds())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func flagsOf(f webauthn.CredentialFlags) string {
	return fmt.Sprintf("UP=%t UV=%t BE=%t BS=%t", f.UserPresent, f.UserVerified, f.BackupEligible, f.BackupState)
}

// registerBegin: /register/begin?user=alice|bob.
func (s *server) registerBegin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.URL.Query().Get("user")
	u, err := s.user(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opts := []webauthn.RegistrationOption{
		// "direct": the authenticator's own attestation statement is sent
		// and verified, not "none".
		webauthn.WithConveyancePreference(protocol.PreferDirectAttestation),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
		// "security-key": Chromium goes straight to the USB key instead of
		// first asking where to save a passkey (a choice nobody can click
		// in a headless browser).
		webauthn.WithPublicKeyCredentialHints(hints),
	}
	sel := protocol.AuthenticatorSelection{
		AuthenticatorAttachment: protocol.CrossPlatform,
		UserVerification:        protocol.VerificationDiscouraged,
		ResidentKey:             protocol.ResidentKeyRequirementDiscouraged,
	}
	if modes[name] == "passkey" {
		sel.ResidentKey = protocol.ResidentKeyRequirementRequired
		sel.RequireResidentKey = protocol.ResidentKeyRequired()
	} else {
		sel.RequireResidentKey = protocol.ResidentKeyNotRequired()
	}
	opts = append(opts, webauthn.WithAuthenticatorSelection(sel))
	creation, session, err := s.wa.BeginRegistration(u, opts...)
	if err != nil {
		s.result("register-"+modes[name], err, "")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.sessions["register-"+name] = session
	writeJSON(w, creation)
}

func (s *server) registerFinish(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, test, u, session, body, err := s.finishing(r, "register")
	var parsed *protocol.ParsedCredentialCreationData
	if err == nil {
		parsed, err = protocol.ParseCredentialCreationResponseBytes(body)
	}
	var cred *webauthn.Credential
	if err == nil {
		cred, err = s.wa.CreateCredential(u, *session, parsed)
	}
	if err != nil {
		s.result(test, err, "")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.creds = append(u.creds, *cred)
	rk := "?"
	if cp := parsed.ClientExtensionResults.CredProps; cp != nil {
		if cp.RK != nil {
			rk = fmt.Sprint(*cp.RK)
		}
	}
	s.result(test, nil, fmt.Sprintf("attestation=%s aaguid=%s credential=%d bytes %s credProps.rk=%s",
		cred.AttestationType, hex.EncodeToString(cred.Authenticator.AAGUID), len(cred.ID), flagsOf(cred.Flags), rk))
	writeJSON(w, map[string]any{"ok": true, "rk": rk})
}

// finishing reads what a /register/finish or /login/finish request needs:
// the user, the test's name, the session its begin left, and the body.
// Called with s.mu held.
func (s *server) finishing(r *http.Request, kind string) (name, test string, u *user, session *webauthn.SessionData, body []byte, err error) {
	name = r.URL.Query().Get("user")
	test = kind + "-" + modes[name]
	u, err = s.user(name)
	session = s.sessions[kind+"-"+name]
	if err == nil && session == nil {
		err = fmt.Errorf("no %s session for %q", kind, name)
	}
	if err == nil {
		body, err = io.ReadAll(r.Body)
	}
	return name, test, u, session, body, err
}

// loginBegin: /login/begin?user=alice names alice's credentials;
// ?user=bob is the passkey login: no user, no allowCredentials.
func (s *server) loginBegin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.URL.Query().Get("user")
	u, err := s.user(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var assertion *protocol.CredentialAssertion
	var session *webauthn.SessionData
	opts := []webauthn.LoginOption{
		webauthn.WithUserVerification(protocol.VerificationDiscouraged),
		webauthn.WithAssertionPublicKeyCredentialHints(hints),
	}
	if modes[name] == "passkey" {
		assertion, session, err = s.wa.BeginDiscoverableLogin(opts...)
	} else {
		assertion, session, err = s.wa.BeginLogin(u, opts...)
	}
	if err != nil {
		s.result("login-"+modes[name], err, "")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.sessions["login-"+name] = session
	writeJSON(w, assertion)
}

func (s *server) loginFinish(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, test, u, session, body, err := s.finishing(r, "login")
	var parsed *protocol.ParsedCredentialAssertionData
	if err == nil {
		parsed, err = protocol.ParseCredentialRequestResponseBytes(body)
	}
	var cred *webauthn.Credential
	var who webauthn.User = u
	if err == nil {
		if modes[name] == "passkey" {
			// The account comes from the assertion's user handle alone.
			who, cred, err = s.wa.ValidatePasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
				for _, c := range s.users {
					if bytes.Equal(c.id, userHandle) {
						return c, nil
					}
				}
				return nil, fmt.Errorf("no account with user handle %x", userHandle)
			}, *session, parsed)
		} else {
			cred, err = s.wa.ValidateLogin(u, *session, parsed)
		}
	}
	if err == nil && who.WebAuthnName() != name {
		err = fmt.Errorf("signed in as %q, expected %q", who.WebAuthnName(), name)
	}
	if err != nil {
		s.result(test, err, "")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.result(test, nil, fmt.Sprintf("user=%s userHandle=%d bytes signCount=%d %s",
		who.WebAuthnName(), len(parsed.Response.UserHandle), cred.Authenticator.SignCount, flagsOf(webauthn.NewCredentialFlags(parsed.Response.AuthenticatorData.Flags))))
	writeJSON(w, map[string]any{"ok": true})
}

// logHandler prints what the page reports (progress, browser errors).
func (s *server) logHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	fmt.Printf("RP LOG (t=%.1fs) %s\n", time.Since(s.start).Seconds(), oneLine(string(b)))
	if r.URL.Query().Get("done") == "1" {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	origin := flag.String("origin", "http://localhost:8443", "the page's origin")
	rpID := flag.String("rpid", "localhost", "relying party ID")
	exit := flag.Bool("exit", false, "exit once the page reports it is done")
	log.SetFlags(0)
	timeout := flag.Duration("timeout", 90*time.Second, "the ceremonies' timeout (the browser gives up after it)")
	flag.Parse()
	t := webauthn.TimeoutConfig{Enforce: true, Timeout: *timeout, TimeoutUVD: *timeout}
	wa, err := webauthn.New(&webauthn.Config{RPID: *rpID, RPDisplayName: "tpm-u2f e2e", RPOrigins: []string{*origin},
		Timeouts: webauthn.TimeoutsConfig{Login: t, Registration: t}})
	if err != nil {
		log.Fatal(err)
	}
	s := &server{wa: wa, users: map[string]*user{}, sessions: map[string]*webauthn.SessionData{}, done: make(chan struct{}), start: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("RP LOG (t=%.1fs) page requested by %s\n", time.Since(s.start).Seconds(), r.UserAgent())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
	mux.HandleFunc("POST /register/begin", s.registerBegin)
	mux.HandleFunc("POST /register/finish", s.registerFinish)
	mux.HandleFunc("POST /login/begin", s.loginBegin)
	mux.HandleFunc("POST /login/finish", s.loginFinish)
	mux.HandleFunc("POST /log", s.logHandler)
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() {
		<-s.done
		fmt.Println("RP DONE")
		if *exit {
			time.Sleep(200 * time.Millisecond)
			os.Exit(0)
		}
	}()
	fmt.Printf("RP LOG listening on %s, origin %s, RP ID %s\n", *addr, *origin, *rpID)
	log.Fatal(srv.ListenAndServe())
}

// page runs the four ceremonies on load, one after the other, and reports
// each step to /log. The options and responses cross as JSON with
// base64url for binary members, converted here by hand (no dependence on
// the browser's parseCreationOptionsFromJSON/toJSON).
const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>tpm-u2f e2e relying party</title></head>
<body><h1>tpm-u2f e2e</h1><pre id="out"></pre>
<script>
const out = document.getElementById("out");
async function log(msg, done) {
  out.textContent += msg + "\n";
  await fetch("/log" + (done ? "?done=1" : ""), {method: "POST", body: msg});
}
const b64 = {
  dec(s) { s = s.replace(/-/g, "+").replace(/_/g, "/"); while (s.length % 4) s += "="; return Uint8Array.from(atob(s), c => c.charCodeAt(0)).buffer; },
  enc(b) { return btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""); },
};
async function post(url) {
  const r = await fetch(url, {method: "POST"});
  if (!r.ok) throw new Error(url + ": " + r.status + " " + await r.text());
  return r.json();
}
async function finish(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!r.ok) throw new Error(url + ": " + r.status + " " + await r.text());
}
async function register(user) {
  const o = (await post("/register/begin?user=" + user)).publicKey;
  o.challenge = b64.dec(o.challenge);
  o.user.id = b64.dec(o.user.id);
  (o.excludeCredentials || []).forEach(c => c.id = b64.dec(c.id));
  await log("create() for " + user + ": " + JSON.stringify(o.authenticatorSelection));
  const c = await navigator.credentials.create({publicKey: o});
  await finish("/register/finish?user=" + user, {
    id: c.id, rawId: b64.enc(c.rawId), type: c.type,
    authenticatorAttachment: c.authenticatorAttachment,
    clientExtensionResults: c.getClientExtensionResults(),
    response: {
      clientDataJSON: b64.enc(c.response.clientDataJSON),
      attestationObject: b64.enc(c.response.attestationObject),
      transports: c.response.getTransports ? c.response.getTransports() : [],
    },
  });
}
async function login(user) {
  const o = (await post("/login/begin?user=" + user)).publicKey;
  o.challenge = b64.dec(o.challenge);
  (o.allowCredentials || []).forEach(c => c.id = b64.dec(c.id));
  await log("get() for " + user + ": " + (o.allowCredentials || []).length + " allowed credential(s)");
  const a = await navigator.credentials.get({publicKey: o});
  await finish("/login/finish?user=" + user, {
    id: a.id, rawId: b64.enc(a.rawId), type: a.type,
    authenticatorAttachment: a.authenticatorAttachment,
    clientExtensionResults: a.getClientExtensionResults(),
    response: {
      clientDataJSON: b64.enc(a.response.clientDataJSON),
      authenticatorData: b64.enc(a.response.authenticatorData),
      signature: b64.enc(a.response.signature),
      userHandle: a.response.userHandle ? b64.enc(a.response.userHandle) : null,
    },
  });
}
(async () => {
  await log("page loaded: " + navigator.userAgent + " secureContext=" + window.isSecureContext + " PublicKeyCredential=" + (typeof PublicKeyCredential));
  // Firefox refuses WebAuthn to a document without the focus
  // (NotAllowedError); on a display without a window manager the guest's
  // xdotool gives it. Wait for it (Chromium has it at once).
  for (let t = 0; !document.hasFocus(); t++) {
    if (t % 20 === 0) await log("waiting for the focus");
    await new Promise(r => setTimeout(r, 500));
  }
  await log("document has the focus");
  const steps = [["register", "alice"], ["login", "alice"], ["register", "bob"], ["login", "bob"]];
  for (const [what, user] of steps) {
    const t = performance.now();
    try {
      await (what === "register" ? register(user) : login(user));
      await log(what + " " + user + ": ok in " + ((performance.now() - t) / 1000).toFixed(1) + " s");
    } catch (e) {
      await log(what + " " + user + ": " + e.name + ": " + e.message + " after " + ((performance.now() - t) / 1000).toFixed(1) + " s");
    }
  }
  await log("all steps run", true);
})();
</script></body></html>
`
