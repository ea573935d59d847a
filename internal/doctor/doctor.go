// Package doctor checks, in the order a user would fix them, what
// tpm-u2f needs from the machine and the desktop: the uhid module and
// /dev/uhid, the TPM and what it can do, the daemon, the key's hidraw node
// and its ACL, the session bus, the notification server, the tray host,
// pinentry, and Flatpak and snap browsers. Each check says OK or what is
// wrong and the exact command that fixes it. It owns no state and changes
// nothing.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Result is one check's verdict.
type Result struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Blocking: the key cannot be used until this is fixed.
	Blocking bool   `json:"blocking"`
	Detail   string `json:"detail"`
	// Fix is the command (or step) that fixes it; empty when OK.
	Fix string `json:"fix,omitempty"`
	// Skipped: not applicable here (no such browser, a TPM that is not a
	// device node...).
	Skipped bool `json:"skipped,omitempty"`
}

// check is one step.
type check struct {
	name     string
	blocking bool
	run      func(ctx context.Context, e *Env) Result
}

// Run runs every check in order.
func Run(ctx context.Context, e *Env) []Result {
	var out []Result
	for _, c := range checks {
		r := c.run(ctx, e)
		r.Name, r.Blocking = c.name, c.blocking && !r.OK && !r.Skipped
		out = append(out, r)
	}
	return out
}

// Blocked reports whether any result blocks use.
func Blocked(rs []Result) bool {
	for _, r := range rs {
		if r.Blocking {
			return true
		}
	}
	return false
}

// Print writes the results for a person: OK, FIX (blocking), WARN, or
// SKIP, each with its detail and, for FIX and WARN, the fix.
func Print(w io.Writer, rs []Result) {
	for _, r := range rs {
		tag := "OK  "
		switch {
		case r.Skipped:
			tag = "SKIP"
		case r.Blocking:
			tag = "FIX "
		case !r.OK:
			tag = "WARN"
		}
		fmt.Fprintf(w, "%s %s: %s\n", tag, r.Name, r.Detail)
		if !r.OK && !r.Skipped && r.Fix != "" {
			for _, line := range strings.Split(r.Fix, "\n") {
				fmt.Fprintf(w, "       %s\n", line)
			}
		}
	}
}

// PrintJSON writes the results as a JSON array, for scripts.
func PrintJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

func ok(detail string, args ...any) Result {
	return Result{OK: true, Detail: fmt.Sprintf(detail, args...)}
}

func fix(fixWith, detail string, args ...any) Result {
	return Result{Detail: fmt.Sprintf(detail, args...), Fix: fixWith}
}

func skip(detail string, args ...any) Result {
	return Result{Skipped: true, Detail: fmt.Sprintf(detail, args...)}
}
