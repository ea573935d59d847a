package fprintd

import (
	"errors"
	"testing"
)

// FuzzJudge: only fprintd's exact "verify-match" is a match, and only a
// verdict or ErrUnavailable ends a verification.
func FuzzJudge(f *testing.F) {
	for _, s := range []string{"verify-match", "verify-no-match", "verify-retry-scan", "verify-disconnected", "verify-unknown-error", "verify-match ", "VERIFY-MATCH", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, status string) {
		r, final, err := judge(status)
		if r == Match && (status != "verify-match" || err != nil || !final) {
			t.Fatalf("%q judged a match", status)
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%q: error %v is not ErrUnavailable", status, err)
		}
		if !final && err != nil {
			t.Fatalf("%q: a retry with an error", status)
		}
	})
}
