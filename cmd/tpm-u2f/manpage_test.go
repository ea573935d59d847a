package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func runHelper(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("tpm-u2f %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

// sourceFlags lists the flag names that the package's source defines on
// a FlagSet (fs.String("name", ...), fs.StringVar(&v, "name", ...)...),
// read from the source rather than from the CLI, so that a flag of a
// command the man page generator does not reach is still counted.
func sourceFlags(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	define := map[string]int{} // method -> index of the name argument
	for _, m := range []string{"Bool", "Duration", "Float64", "Int", "Int64", "String", "Uint", "Uint64", "Func", "BoolFunc"} {
		define[m] = 0
		define[m+"Var"] = 1
	}
	define["Var"], define["TextVar"] = 1, 1
	var names []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			// Only methods on a flag set: the package-level flag.String
			// and friends are not used, and their receiver is "flag".
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name == "flag" {
				return true
			}
			i, ok := define[sel.Sel.Name]
			if !ok || len(call.Args) < i+2 {
				return true
			}
			if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					names = append(names, s)
				}
			}
			return true
		})
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestManPageHasEveryFlag: every flag the source defines and every
// command of the usage text is in tpm-u2f(1), in roff.
func TestManPageHasEveryFlag(t *testing.T) {
	page := runHelper(t, "manpage")
	flags := sourceFlags(t)
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in the source: %v", len(flags), flags)
	}
	for _, f := range flags {
		if !strings.Contains(page, `\-\-`+strings.ReplaceAll(f, "-", `\-`)) {
			t.Errorf("flag --%s is missing from the man page", f)
		}
	}
	for _, c := range usageCommands() {
		if !strings.Contains(page, "\n.SS "+c.Name+"\n") {
			t.Errorf("command %s has no section in the man page", c.Name)
		}
	}
	// Each subcommand with its own flags: pin set, credentials delete.
	for _, sub := range []string{"pin set", "pin change", "pin status", "credentials list", "credentials delete"} {
		if !strings.Contains(page, "\n.SS "+sub+"\n") {
			t.Errorf("subcommand %s has no section in the man page", sub)
		}
	}
	// The builder's home must not end up in a package.
	if home, err := os.UserHomeDir(); err == nil && strings.Contains(page, home+"/") {
		t.Errorf("the man page names this machine's home %s", home)
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff -ww: %v\n%s", err, out)
		}
	}
}

// TestParseDefaults reads PrintDefaults' layout, including a one-letter
// flag whose usage shares its line.
func TestParseDefaults(t *testing.T) {
	got := parseDefaults("Usage of x:\n  -a\tone letter\n  -state string\n    \tstate directory\n    \tsecond line (default \"/x\")\n  -yes\n    \tno question\n")
	want := []cliFlag{{"a", "", "one letter"}, {"state", "string", `state directory second line (default "/x")`}, {"yes", "", "no question"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestCompletion: the bash script offers every command, the subcommands
// and each command's flags; in a real bash, once sourced, `complete -p
// tpm-u2f` shows it registered.
func TestCompletion(t *testing.T) {
	bash := runHelper(t, "completion", "bash")
	zsh := runHelper(t, "completion", "zsh")
	if !strings.HasPrefix(zsh, "#compdef tpm-u2f\n") {
		t.Errorf("zsh completion does not start with #compdef:\n%s", zsh)
	}
	for _, c := range usageCommands() {
		if !strings.Contains(bash, " "+c.Name+" ") && !strings.Contains(bash, `"`+c.Name+" ") && !strings.Contains(bash, " "+c.Name+`"`) {
			t.Errorf("bash completion lacks command %s", c.Name)
		}
		if !strings.Contains(zsh, "'"+c.Name+":") {
			t.Errorf("zsh completion lacks command %s", c.Name)
		}
	}
	for _, f := range sourceFlags(t) {
		if !strings.Contains(bash, "--"+f) || !strings.Contains(zsh, "'--"+f+":") {
			t.Errorf("a completion lacks flag --%s", f)
		}
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		testZshCompletion(t, zsh)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "tpm-u2f")
	if err := os.WriteFile(script, []byte(bash), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _tpm_u2f; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", append([]string{"-c", prog, "bash", script}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	out, err := exec.Command("bash", "-c", `source "$1" && complete -p tpm-u2f`, "bash", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-F _tpm_u2f tpm-u2f") {
		t.Errorf("complete -p tpm-u2f: %v: %s", err, out)
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"tpm-u2f", "p"}, "pin"},
		{[]string{"tpm-u2f", "d"}, "doctor demo"},
		{[]string{"tpm-u2f", "pin", ""}, "set change status"},
		{[]string{"tpm-u2f", "pin", "change", "--st"}, "--state --stdin"},
		{[]string{"tpm-u2f", "credentials", "delete", "--j"}, "--json"},
		{[]string{"tpm-u2f", "run", "--replay"}, "--replay-window"},
		{[]string{"tpm-u2f", "doctor", "--"}, "--control --json --pinentry --tpm"},
	} {
		if got := complete(tc.words...); got != tc.want {
			t.Errorf("completing %q: got %q, want %q", tc.words, got, tc.want)
		}
	}
}

// testZshCompletion runs the zsh function with compsys's _describe and
// _files stood in for by printing what they would offer.
func testZshCompletion(t *testing.T, script string) {
	body, ok := strings.CutSuffix(script, "_tpm_u2f \"$@\"\n")
	if !ok {
		t.Fatalf("zsh completion does not end by calling _tpm_u2f:\n%s", script)
	}
	file := filepath.Join(t.TempDir(), "_tpm-u2f")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", file).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	prog := `source "$1"; shift
_describe() { print -rl -- ${(P)2} }
_files() { print files }
words=("$@"); CURRENT=$#; PREFIX=$words[CURRENT]
_tpm_u2f`
	for _, tc := range []struct {
		words []string
		want  string // a line of the output
	}{
		{[]string{"tpm-u2f", ""}, "doctor:"},
		{[]string{"tpm-u2f", "pin", ""}, "change"},
		{[]string{"tpm-u2f", "pin", "set", "--s"}, "--stdin:"},
		{[]string{"tpm-u2f", "run", "--"}, "--replay-window:"},
		{[]string{"tpm-u2f", "credentials", "delete", "--"}, "--json:"},
		{[]string{"tpm-u2f", "run", "--state", ""}, "files"},
	} {
		out, err := exec.Command("zsh", append([]string{"-c", prog, "zsh", file}, tc.words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("zsh %q: %v\n%s", tc.words, err, out)
		}
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			found = found || strings.HasPrefix(line, tc.want)
		}
		if !found {
			t.Errorf("zsh completing %q: %q offered no %q", tc.words, out, tc.want)
		}
	}
}
