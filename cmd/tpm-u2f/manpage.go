package main

// The hidden helpers `tpm-u2f manpage` and `tpm-u2f completion bash|zsh`
// (for packaging): the man page tpm-u2f(1) and the shell completions,
// both made from the CLI itself so that they cannot drift from it.
//
// Why by running each command with -h and reading the flag package's
// PrintDefaults text, rather than exposing each command's FlagSet: the
// flag sets are built inside the command functions, next to the
// variables they fill, and several people change those commands; pulling
// every constructor out would touch each of them. -h parses before a
// command does anything (parseFlags, parseInterleaved), PrintDefaults'
// layout is fixed by the flag package, and the commands come from the
// same usage text that `tpm-u2f help` prints. TestManPageHasEveryFlag
// checks the result against the flags the source defines.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
)

// cliFlag is one flag as PrintDefaults shows it.
type cliFlag struct {
	Name  string // without dashes
	Arg   string // "string", "duration"... ("" for booleans)
	Usage string // with " (default ...)" when the flag has one
}

// cliCommand is one command of the usage text (for credentials and pin,
// one entry per subcommand).
type cliCommand struct {
	Name  string // "run", "pin set"
	Desc  string
	Flags []cliFlag
	Subs  []string // of a command that takes a subcommand
}

// cliCommands lists the commands of the usage text, each with its flags.
func cliCommands(ctx context.Context) ([]cliCommand, error) {
	var cmds []cliCommand
	for _, c := range usageCommands() {
		flags, subs, err := commandHelp(ctx, c.Name)
		if err != nil {
			return nil, err
		}
		c.Subs = subs
		if subs == nil {
			c.Flags = flags
			cmds = append(cmds, c)
			continue
		}
		cmds = append(cmds, c)
		for _, s := range subs {
			flags, _, err := commandHelp(ctx, c.Name+" "+s)
			if err != nil {
				return nil, err
			}
			cmds = append(cmds, cliCommand{Name: c.Name + " " + s, Flags: flags})
		}
	}
	return cmds, nil
}

// usageCommands parses the "commands:" block of the usage text: a name
// at two spaces' indent, its description after it and on the deeper
// indented lines that follow.
func usageCommands() []cliCommand {
	var cmds []cliCommand
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case line == "commands:":
			in = true
		case !in:
		case strings.TrimSpace(line) == "":
			return cmds
		case strings.HasPrefix(line, "  ") && line[2] != ' ':
			name, desc, _ := strings.Cut(strings.TrimSpace(line), " ")
			cmds = append(cmds, cliCommand{Name: name, Desc: strings.TrimSpace(desc)})
		case len(cmds) > 0:
			d := &cmds[len(cmds)-1].Desc
			*d = strings.TrimSpace(*d + " " + strings.TrimSpace(line))
		}
	}
	return cmds
}

// subUsage is subcommand()'s usage line: "usage: tpm-u2f pin set | change
// | status [--stdin] ...".
var subUsage = regexp.MustCompile(`usage: tpm-u2f \S+ (.*)`)

// bracketed is an optional part of a usage line: "[--always-uv on|off]".
var bracketed = regexp.MustCompile(`\[[^\]]*\]`)

// commandHelp runs "tpm-u2f NAME -h" and returns the flags it prints, or,
// when the command wants a subcommand first, the subcommands its usage
// line names.
func commandHelp(ctx context.Context, name string) ([]cliFlag, []string, error) {
	// -h with a context that is already done: should a command ever
	// act before parsing its flags, it stops at once.
	ctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Main(ctx, append(strings.Fields(name), "-h"), &out, &errOut)
	text := errOut.String()
	switch {
	case code == 0:
		return parseDefaults(text), nil, nil
	case code == 2 && !strings.Contains(name, " "):
		m := subUsage.FindStringSubmatch(text)
		if m == nil {
			break
		}
		var subs []string
		// Options in brackets may hold a "|" of their own (on|off).
		for _, alt := range strings.Split(bracketed.ReplaceAllString(m[1], ""), "|") {
			if f := strings.Fields(alt); len(f) > 0 && !strings.HasPrefix(f[0], "-") && !strings.HasPrefix(f[0], "[") {
				subs = append(subs, f[0])
			}
		}
		if len(subs) > 0 {
			return nil, subs, nil
		}
	}
	return nil, nil, fmt.Errorf("tpm-u2f %s -h: exit %d: %s", name, code, text)
}

// parseDefaults reads flag.PrintDefaults' layout: "  -name type" (the
// usage on the same line after a tab for one-letter names), then the
// usage on lines that start with four spaces and a tab.
func parseDefaults(text string) []cliFlag {
	var flags []cliFlag
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			head, use, _ := strings.Cut(line[3:], "\t")
			name, arg, _ := strings.Cut(strings.TrimSpace(head), " ")
			flags = append(flags, cliFlag{Name: name, Arg: arg, Usage: strings.TrimSpace(use)})
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			u := &flags[len(flags)-1].Usage
			*u = strings.TrimSpace(*u + " " + strings.TrimSpace(line))
		}
	}
	for i := range flags {
		flags[i].Usage = portableDefaults(flags[i].Usage)
	}
	return flags
}

// portableDefaults replaces the defaults that come from the environment
// of whoever runs the generator (their home, TPM_U2F_TPM) with what they
// stand for, so that a package built as root does not say /root.
func portableDefaults(use string) string {
	if d := defaultStateDir(); d != "" {
		use = strings.ReplaceAll(use, `(default "`+d+`")`, `(default "$XDG_STATE_HOME/tpm-u2f", else "~/.local/state/tpm-u2f")`)
	}
	if t := defaultTPM(); t != "" {
		use = strings.ReplaceAll(use, `(default "`+t+`")`, `(default "$TPM_U2F_TPM", else "/dev/tpmrm0")`)
	}
	return use
}

// roff escapes text for a man page: backslashes, hyphens that are minus
// signs in options, and a leading dot or quote that roff would take for
// a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// packagingCommand runs the hidden helpers: manpage, completion.
func packagingCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	if name == "manpage" {
		return manpageCommand(ctx, args, stdout, stderr)
	}
	return completionCommand(ctx, args, stdout, stderr)
}

func manpageCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: tpm-u2f manpage")
		return errUsage
	}
	cmds, err := cliCommands(ctx)
	if err != nil {
		return err
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w(`.\" tpm-u2f(1), generated by "tpm-u2f manpage" from the flags the commands define.`)
	w(`.TH TPM\-U2F 1 "" "tpm\-u2f %s" "User Commands"`, roff(version))
	w(".SH NAME")
	w(`tpm\-u2f \- a FIDO2/U2F security key backed by the TPM`)
	w(".SH SYNOPSIS")
	w(`.B tpm\-u2f`)
	w(`.I command`)
	w(`.RI [ flags ]`)
	w(".SH DESCRIPTION")
	w(`.B tpm\-u2f`)
	w(`is a daemon that shows the desktop a USB security key through`)
	w(`.I /dev/uhid`)
	w(`and signs with keys that never leave the TPM (through`)
	w(`.IR /dev/tpmrm0 ).`)
	w(`Browsers, OpenSSH and libfido2 use it as any FIDO key.`)
	w(`The other commands talk to the running daemon through its control socket.`)
	w(".PP")
	w(`Flags take one or two dashes, and a value as`)
	w(`.B \-\-flag value`)
	w(`or`)
	w(`.BR \-\-flag=value .`)
	w(".SH COMMANDS")
	for _, c := range cmds {
		w(".SS %s", roff(c.Name))
		if c.Subs != nil {
			w(`.B tpm\-u2f %s`, roff(c.Name))
			w(".RI { %s }", roff(strings.Join(c.Subs, " | ")))
			w(".PP")
		}
		if c.Desc != "" {
			w("%s", roff(c.Desc))
		}
		for _, f := range c.Flags {
			w(".TP")
			if f.Arg != "" {
				w(`.BI \-\-%s " %s"`, roff(f.Name), roff(f.Arg))
			} else {
				w(`.B \-\-%s`, roff(f.Name))
			}
			w("%s", roff(f.Usage))
		}
	}
	w(".SH EXIT STATUS")
	w(`0 success, 1 failure, 2 usage error, 3 the daemon is not running.`)
	w(".SH ENVIRONMENT")
	w(".TP")
	w(".B TPM_U2F_TPM")
	w(`The TPM, as for`)
	w(`.BR "run \-\-tpm" .`)
	w(".TP")
	w(".B XDG_RUNTIME_DIR")
	w(`Where the control socket is:`)
	w(`.IR $XDG_RUNTIME_DIR/tpm\-u2f/control.sock .`)
	w(".TP")
	w(".B XDG_STATE_HOME")
	w(`Where the state (identity, replay store) is:`)
	w(`.IR $XDG_STATE_HOME/tpm\-u2f ,`)
	w(`by default`)
	w(`.IR \(ti/.local/state/tpm\-u2f .`)
	w(".SH FILES")
	w(".TP")
	w(`.I /usr/lib/systemd/user/tpm\-u2f.service`)
	w(`The user unit; start it with`)
	w(`.BR "systemctl \-\-user enable \-\-now tpm\-u2f" .`)
	w(".TP")
	w(`.I /usr/lib/udev/rules.d/70\-tpm\-u2f.rules`)
	w(`Gives the tpm\-u2f group /dev/uhid, and the seat's user the key's hidraw node.`)
	w(".TP")
	w(`.I /usr/lib/modules\-load.d/tpm\-u2f.conf`)
	w(`Loads uhid at boot.`)
	w(".SH NOTES")
	w(`The user needs to be in the groups`)
	w(`.B tpm\-u2f`)
	w(`(for /dev/uhid) and`)
	w(`.B tss`)
	w(`(for /dev/tpmrm0):`)
	w(`.BR "sudo usermod \-aG tpm\-u2f,tss $USER" ,`)
	w(`then log in again.`)
	w(`.B tpm\-u2f doctor`)
	w(`says what else is missing and how to fix it.`)
	w(".SH SEE ALSO")
	w(`.BR systemctl (1),`)
	w(`.BR fido2\-token (1),`)
	w(`.BR pinentry (1)`)
	_, err = io.WriteString(stdout, b.String())
	return err
}

func completionCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprintln(stderr, "usage: tpm-u2f completion bash|zsh")
		return errUsage
	}
	cmds, err := cliCommands(ctx)
	if err != nil {
		return err
	}
	var script string
	if args[0] == "bash" {
		script = bashCompletion(cmds)
	} else {
		script = zshCompletion(cmds)
	}
	_, err = io.WriteString(stdout, script)
	return err
}

// topLevel is the commands without their subcommand entries.
func topLevel(cmds []cliCommand) []cliCommand {
	return slices.DeleteFunc(slices.Clone(cmds), func(c cliCommand) bool { return strings.Contains(c.Name, " ") })
}

func flagWords(fs []cliFlag) string {
	var w []string
	for _, f := range fs {
		w = append(w, "--"+f.Name)
	}
	return strings.Join(w, " ")
}

// bashCompletion needs nothing from the bash-completion package: the
// command, its subcommand, then its flags; anything else falls back to
// file names (-o default), which suits --state, --control and --tpm.
func bashCompletion(cmds []cliCommand) string {
	var b strings.Builder
	var names []string
	for _, c := range topLevel(cmds) {
		names = append(names, c.Name)
	}
	fmt.Fprintf(&b, `# bash completion for tpm-u2f, generated by "tpm-u2f completion bash".
_tpm_u2f() {
    local cur=${COMP_WORDS[COMP_CWORD]} flags=
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W %q -- "$cur"))
        return
    fi
    case "${COMP_WORDS[1]}" in
`, strings.Join(names, " "))
	for _, c := range cmds {
		if c.Subs != nil {
			fmt.Fprintf(&b, "    %s)\n        if (( COMP_CWORD == 2 )); then\n            COMPREPLY=($(compgen -W %q -- \"$cur\"))\n            return\n        fi\n        case \"${COMP_WORDS[2]}\" in\n", c.Name, strings.Join(c.Subs, " "))
			for _, s := range cmds {
				if sub, ok := strings.CutPrefix(s.Name, c.Name+" "); ok {
					fmt.Fprintf(&b, "        %s) flags=%q ;;\n", sub, flagWords(s.Flags))
				}
			}
			b.WriteString("        esac ;;\n")
		} else if !strings.Contains(c.Name, " ") {
			fmt.Fprintf(&b, "    %s) flags=%q ;;\n", c.Name, flagWords(c.Flags))
		}
	}
	b.WriteString(`    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    fi
}
complete -o default -F _tpm_u2f tpm-u2f
`)
	return b.String()
}

// zshQuote makes "name:description" safe inside single quotes for
// _describe.
func zshQuote(name, desc string) string {
	if i := strings.Index(desc, "; "); i > 0 {
		desc = desc[:i]
	}
	desc = strings.ReplaceAll(desc, ":", `\:`)
	return "'" + strings.ReplaceAll(name+":"+desc, "'", `'\''`) + "'"
}

func zshCompletion(cmds []cliCommand) string {
	var b strings.Builder
	b.WriteString("#compdef tpm-u2f\n# zsh completion for tpm-u2f, generated by \"tpm-u2f completion zsh\".\n_tpm_u2f() {\n    local -a cmds subs flags\n    cmds=(\n")
	for _, c := range topLevel(cmds) {
		fmt.Fprintf(&b, "        %s\n", zshQuote(c.Name, c.Desc))
	}
	b.WriteString("    )\n    if (( CURRENT == 2 )); then\n        _describe 'command' cmds\n        return\n    fi\n    local cmd=$words[2]\n")
	b.WriteString("    case $cmd in\n")
	for _, c := range topLevel(cmds) {
		if c.Subs != nil {
			fmt.Fprintf(&b, "    %s)\n        if (( CURRENT == 3 )); then\n            subs=(%s)\n            _describe 'subcommand' subs\n            return\n        fi\n        cmd=\"$cmd $words[3]\" ;;\n", c.Name, strings.Join(c.Subs, " "))
		}
	}
	b.WriteString("    esac\n    case $cmd in\n")
	for _, c := range cmds {
		if c.Subs != nil {
			continue
		}
		fmt.Fprintf(&b, "    %q)\n        flags=(\n", c.Name)
		for _, f := range c.Flags {
			fmt.Fprintf(&b, "            %s\n", zshQuote("--"+f.Name, f.Usage))
		}
		b.WriteString("        ) ;;\n")
	}
	b.WriteString("    esac\n    if [[ $PREFIX == -* ]]; then\n        _describe 'flag' flags\n    else\n        _files\n    fi\n}\n_tpm_u2f \"$@\"\n")
	return b.String()
}
