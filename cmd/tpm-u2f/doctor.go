package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/tpm-u2f/tpm-u2f/control"
	"github.com/tpm-u2f/tpm-u2f/internal/doctor"
	"github.com/tpm-u2f/tpm-u2f/tpm"
)

// errBlocked: a doctor check found something that blocks use (exit 1).
var errBlocked = errors.New("something above blocks the key; fix the FIX lines in order")

// doctorCommand: tpm-u2f doctor [--json].
func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpm-u2f doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	tpmSpec := fs.String("tpm", tpm.DefaultDevice, "the TPM the daemon uses (as tpm-u2f run --tpm)")
	pinentry := fs.String("pinentry", "pinentry", "the pinentry program the daemon uses (as tpm-u2f run --pinentry)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, _ := socket()
	e := doctor.Default(*tpmSpec, path, *pinentry)
	e.OpenTPM = func(spec string) (transport.TPMCloser, error) { t, _, err := tpm.Open(spec); return t, err }
	e.Status = func(p string) error { _, err := control.Call(p, control.Request{Command: "status"}); return err }
	results := doctor.Run(ctx, e)
	if *asJSON {
		if err := doctor.PrintJSON(stdout, results); err != nil {
			return err
		}
	} else {
		doctor.Print(stdout, results)
	}
	if doctor.Blocked(results) {
		return errBlocked
	}
	return nil
}
