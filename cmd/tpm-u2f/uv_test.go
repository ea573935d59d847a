package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/presence/notifytest"
	"github.com/tpm-u2f/tpm-u2f/tpm"
	"github.com/tpm-u2f/tpm-u2f/tpm/tpmtest"
	"github.com/tpm-u2f/tpm-u2f/uv/fprintd/fprintdtest"
)

// --uv: auto turns built-in UV on only when, at start, a reader with an
// enrolled finger is on the system bus (DBUS_SYSTEM_BUS_ADDRESS);
// fprintd turns it on regardless and needs the bus; none turns it off.
func TestUVFlag(t *testing.T) {
	e := tpmtest.Engine(t, tpmtest.Simulator(t), tpm.Options{})
	log := slog.New(slog.DiscardHandler)
	bus := func(enrolled ...string) {
		addr := notifytest.SessionBus(t)
		(&fprintdtest.Server{Enrolled: enrolled}).Serve(t, addr)
		t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	}
	on := func(mode string) bool {
		t.Helper()
		uv, retries, closeUV, err := newUV(context.Background(), mode, e, log)
		if err != nil {
			t.Fatalf("--uv %s: %v", mode, err)
		}
		defer closeUV()
		if (uv == nil) != (retries == nil) {
			t.Fatalf("--uv %s: verifier %v, retries %v", mode, uv, retries)
		}
		return uv != nil
	}
	bus("right-index-finger")
	if !on("auto") || !on("fprintd") || on("none") {
		t.Fatal("with an enrolled finger: want auto and fprintd on, none off")
	}
	bus()
	if on("auto") || !on("fprintd") {
		t.Fatal("with nothing enrolled: want auto off, fprintd on")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "none"))
	if on("auto") {
		t.Fatal("without a system bus: want auto off")
	}
	if _, _, _, err := newUV(context.Background(), "fprintd", e, log); err == nil {
		t.Fatal("--uv fprintd without a system bus started")
	}
	if _, _, _, err := newUV(context.Background(), "polkit", e, log); err == nil {
		t.Fatal("--uv polkit accepted")
	}
}
