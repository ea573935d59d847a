package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tpm-u2f/tpm-u2f/control"
)

// exitNoDaemon is the exit code when no daemon answers, so that scripts
// can tell "not running" from "failed".
const exitNoDaemon = 3

var errNoDaemon = errors.New("no daemon")

// ctlCommand runs status, lock, unlock and replug against the daemon.
func ctlCommand(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON (status only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, err := socket()
	if err != nil {
		return err
	}
	rsp, err := callDaemon(path, control.Request{Command: cmd}, stderr)
	if err != nil {
		return err
	}
	switch {
	case cmd == "status" && *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rsp.Status)
	case cmd == "status":
		printStatus(stdout, rsp.Status)
	default:
		fmt.Fprintf(stdout, "%s: done\n", cmd)
	}
	return nil
}

func printStatus(w io.Writer, s *control.Status) {
	state := "unlocked"
	if s.Locked {
		state = "locked (requests that need presence are refused)"
	}
	replay := fmt.Sprintf("healthy, %d entries", s.ReplayEntries)
	if !s.ReplayHealthy {
		replay = "FAILING CLOSED: no signatures until " + s.ReplayUntil.Local().Format(time.DateTime)
	}
	pin := "not set"
	if s.PINRetries != nil {
		pin = describePIN(true, *s.PINRetries)
	}
	fmt.Fprintf(w, "tpm-u2f %s\n", s.Version)
	fmt.Fprintf(w, "  TPM:          %s\n", s.TPM)
	fmt.Fprintf(w, "  transport:    %s (device present: %v)\n", s.Transport, s.DevicePresent)
	fmt.Fprintf(w, "  state:        %s\n", state)
	fmt.Fprintf(w, "  presence:     %s\n", s.Presence)
	fmt.Fprintf(w, "  counter:      next value %d\n", s.NextCounter)
	fmt.Fprintf(w, "  PIN:          %s\n", pin)
	fmt.Fprintf(w, "  replay store: %s\n", replay)
	fmt.Fprintf(w, "  TPM commands: %s\n", s.TPMCommandStats)
	if s.OperationStats != "" {
		fmt.Fprintf(w, "  operations (since start):\n")
		for _, line := range strings.Split(s.OperationStats, "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}
