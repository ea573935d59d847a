package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tpm-u2f/tpm-u2f/control"
)

// controlFlags adds --control and resolves the socket path.
func controlFlags(fs *flag.FlagSet) func() (string, error) {
	path := fs.String("control", "", "the daemon's control socket (default $XDG_RUNTIME_DIR/tpm-u2f/control.sock)")
	return func() (string, error) {
		if *path != "" {
			return *path, nil
		}
		return control.DefaultPath()
	}
}

// callDaemon sends one request, mapping "no daemon" to errNoDaemon.
func callDaemon(path string, req control.Request, stderr io.Writer) (control.Response, error) {
	rsp, err := control.Call(path, req)
	if errors.Is(err, control.ErrNoDaemon) {
		fmt.Fprintf(stderr, "tpm-u2f: the daemon is not running (no control socket at %s)\n", path)
		return rsp, errNoDaemon
	}
	return rsp, err
}

// credentialsCommand: tpm-u2f credentials list | delete ID.
func credentialsCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	sub, fs, socket, err := subcommand("credentials", args, stderr, "list [--json] [--stdin] | delete [--stdin] ID", "list", "delete")
	if err != nil {
		return err
	}
	asJSON := fs.Bool("json", false, "print JSON (list only)")
	fromStdin := fs.Bool("stdin", false, "read the PIN from standard input (for scripts); without it the daemon asks through pinentry where a PIN is set")
	positional, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	path, err := socket()
	if err != nil {
		return err
	}
	// Both need what credentialManagement needs: the PIN where one is
	// set, else an Allow on the desktop (delete: the Allow in any case).
	req := control.Request{Command: "credentials"}
	defer req.Zero()
	if sub == "delete" {
		if len(positional) != 1 {
			fmt.Fprintln(stderr, "usage: tpm-u2f credentials delete ID   (the ID as `tpm-u2f credentials list` shows it, or a unique prefix)")
			return errUsage
		}
		req.Command, req.ID = "delete", positional[0]
	} else if len(positional) != 0 {
		return errUsage
	}
	if *fromStdin {
		p, err := readLine(pinInput)
		if err != nil {
			return fmt.Errorf("reading the PIN from standard input: %w", err)
		}
		req.PINHash = pinHash(p)
	} else {
		fmt.Fprintln(stderr, "tpm-u2f: confirm on the desktop (the PIN in pinentry where one is set, else Allow)")
	}
	rsp, err := callDaemon(path, req, stderr)
	if err != nil {
		return err
	}
	if sub == "delete" {
		fmt.Fprintln(stdout, "deleted")
		return nil
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rsp.Credentials)
	}
	if len(rsp.Credentials) == 0 {
		fmt.Fprintln(stdout, "no discoverable credentials (U2F and other non-discoverable credentials are not stored on the key)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSITE\tUSER\tCREATED")
	for _, c := range rsp.Credentials {
		user := c.UserName
		if c.DisplayName != "" && c.DisplayName != c.UserName {
			user += " (" + c.DisplayName + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.RPID, user, c.Created.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// resetCommand: tpm-u2f reset, after a typed confirmation.
func resetCommand(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f reset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := controlFlags(fs)
	yes := fs.Bool("yes", false, "do not ask for confirmation (for scripts)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, err := socket()
	if err != nil {
		return err
	}
	if !*yes {
		fmt.Fprint(stdout, "This deletes every credential on the key, for every site. You will be locked out of accounts that use it.\nType \"reset\" to go on: ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if strings.TrimSpace(line) != "reset" {
			fmt.Fprintln(stderr, "tpm-u2f reset: not confirmed; nothing was changed")
			return errors.New("not confirmed")
		}
	}
	if _, err := callDaemon(path, control.Request{Command: "reset"}, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "the key was reset: every credential is gone")
	return nil
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("delete ID --control PATH" as well as "delete --control PATH
// ID"), which the flag package alone does not.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// subcommand checks that args start with one of subs and returns it with
// a flag set for "tpm-u2f name sub" that already has --control.
func subcommand(name string, args []string, stderr io.Writer, usage string, subs ...string) (string, *flag.FlagSet, func() (string, error), error) {
	if len(args) == 0 || !slices.Contains(subs, args[0]) {
		fmt.Fprintln(stderr, "usage: tpm-u2f "+name+" "+usage)
		return "", nil, nil, errUsage
	}
	fs := flag.NewFlagSet("tpm-u2f "+name+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	return args[0], fs, controlFlags(fs), nil
}
