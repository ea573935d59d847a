package main

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts run tpm-u2f in-process, as filippo.io/age's
// CLI tests do.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"tpm-u2f": func() { os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
