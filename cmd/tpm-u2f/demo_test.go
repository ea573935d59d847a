package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	for _, transport := range []string{"memory", "udp:127.0.0.1:0"} {
		t.Run(transport, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := Main(context.Background(), []string{"demo", "--transport", transport}, &out, &errs); code != 0 {
				t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
			}
			for _, want := range []string{
				"its state lives in memory",
				"approved automatically in this demo",
				"CTAPHID INIT: channel",
				`1. Registration verified by go-webauthn: attestation "fido-u2f"`,
				"TPM: Sign×2 FlushContext×1 CreateLoaded×1",
				"2. Login verified by go-webauthn",
				"3. Login verified by go-webauthn",
				"TPM: Load×1 Sign×1 FlushContext×1",
				"rejected by go-webauthn",
				"gets 0x6A80",
				`makeCredential verified by go-webauthn: attestation "packed"`,
				"7. getAssertion verified by go-webauthn",
				"demo: OK",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("demo output lacks %q:\n%s", want, out.String())
				}
			}
			if n := strings.Count(out.String(), "\n"); n > 25 {
				t.Errorf("demo output is %d lines; keep it short", n)
			}
			// Warnings only by default: a clean run over the pipe logs
			// nothing. (UDP rightly warns that any local user can reach it.)
			if transport == "memory" && errs.Len() != 0 {
				t.Errorf("demo wrote to stderr:\n%s", errs.String())
			}
		})
	}
}

func TestDemoRefusesNonLoopbackUDP(t *testing.T) {
	var out, errs bytes.Buffer
	code := Main(context.Background(), []string{"demo", "--transport", "udp:0.0.0.0:0"}, &out, &errs)
	if code != 1 || !strings.Contains(errs.String(), "loopback") || strings.Contains(out.String(), "demo: OK") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
}
