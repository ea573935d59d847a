package pin

import (
	"bytes"
	"errors"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		pin  string
		want error
	}{
		{"1234", nil},
		{"123", ErrTooShort},
		{"ääää", nil},       // 4 code points, 8 bytes
		{"äa", ErrTooShort}, // 3 bytes but 2 characters
		{"ab\u0301c", nil},  // 4 code points (combining accent counts)
		{"🔑🔑🔑🔑", nil},       // 16 bytes
		{string(bytes.Repeat([]byte("a"), 63)), nil},
		{string(bytes.Repeat([]byte("a"), 64)), ErrTooLong},
		{string(bytes.Repeat([]byte("é"), 32)), ErrTooLong}, // 64 bytes
		{"\xff\xfe12", ErrInvalidUTF8},
		{"abc\xc3", ErrInvalidUTF8}, // truncated sequence
	}
	for _, c := range cases {
		if err := Validate([]byte(c.pin)); !errors.Is(err, c.want) {
			t.Errorf("Validate(%q) = %v, want %v", c.pin, err, c.want)
		}
	}
}

func pad(p string, n int) []byte {
	b := make([]byte, n)
	copy(b, p)
	return b
}

func TestUnpad(t *testing.T) {
	if p, err := Unpad(pad("1234", 64)); err != nil || string(p) != "1234" {
		t.Fatalf("Unpad = %q, %v", p, err)
	}
	bad := [][]byte{
		pad("1234", 63),
		pad("1234", 80),
		bytes.Repeat([]byte("a"), 64),
		append(pad("1234", 10), pad("x", 54)...), // bytes after the terminator
	}
	for i, b := range bad {
		if _, err := Unpad(b); !errors.Is(err, ErrBadPadding) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestThrottleCountsFromLastFailure(t *testing.T) {
	var th Throttle
	t0 := time.Unix(1_800_000_000, 0)
	if w, err := th.Admit(t0); w != 0 || err != nil {
		t.Fatalf("fresh: %v %v", w, err)
	}
	th.Failed(t0)
	if w, _ := th.Admit(t0.Add(300 * time.Millisecond)); w != 700*time.Millisecond {
		t.Fatalf("after one failure: wait %v, want 700ms (1s from the failure)", w)
	}
	// A user who takes longer than the delay to retype waits not at all.
	if w, _ := th.Admit(t0.Add(5 * time.Second)); w != 0 {
		t.Fatalf("a slow retry waits %v", w)
	}
	th.Failed(t0.Add(5 * time.Second))
	if w, _ := th.Admit(t0.Add(5 * time.Second)); w != 2*time.Second {
		t.Fatalf("after two failures: wait %v", w)
	}
	th.Failed(t0.Add(8 * time.Second))
	if _, err := th.Admit(t0.Add(time.Hour)); !errors.Is(err, ErrPowerCycle) {
		t.Fatalf("after three failures: %v", err)
	}
	// A new power cycle is a new Throttle; a success resets the run.
	var fresh Throttle
	fresh.Failed(t0)
	fresh.Succeeded()
	if w, err := fresh.Admit(t0); w != 0 || err != nil || fresh.Consecutive() != 0 {
		t.Fatalf("after success: %v %v", w, err)
	}
}

func FuzzValidateAndUnpad(f *testing.F) {
	f.Add(pad("1234", 64))
	f.Add([]byte("ääää"))
	f.Add([]byte{0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := Validate(b); err == nil {
			if !utf8.Valid(b) || len(b) > MaxBytes || utf8.RuneCount(b) < MinLength {
				t.Fatalf("accepted %q", b)
			}
		}
		p, err := Unpad(b)
		if err != nil {
			return
		}
		if len(b) != PaddedLength || !bytes.Equal(pad(string(p), PaddedLength), b) || bytes.IndexByte(p, 0) >= 0 {
			t.Fatalf("Unpad(%x) = %x", b, p)
		}
	})
}
