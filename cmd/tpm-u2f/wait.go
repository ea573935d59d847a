package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"
	"time"

	"github.com/tpm-u2f/tpm-u2f/internal/sdnotify"
)

// waitBackoff bounds the pause between tries of a device that is not
// there yet (tests shorten it).
var waitBackoff = [2]time.Duration{250 * time.Millisecond, 10 * time.Second}

// notYet reports whether err means "try again later": the device node
// does not exist yet (the uhid module or the TPM driver still loading,
// swtpm not started), or the user may not open it yet (udev still
// applying its rule, or a group membership not effective until the next
// login). Anything else is an error of its own.
func notYet(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ECONNREFUSED)
}

// openWhenReady calls open until it succeeds, fails for a reason other
// than notYet, or ctx ends. While it waits, the log and systemd's status
// line say what for and how to fix it, rather than the service failing at
// login for good.
func openWhenReady(ctx context.Context, what, hint string, log *slog.Logger, open func() error) error {
	pause := waitBackoff[0]
	for attempt := 1; ; attempt++ {
		err := open()
		if err == nil || !notYet(err) {
			return err
		}
		line := fmt.Sprintf("waiting for %s: %v", what, err)
		if errors.Is(err, fs.ErrPermission) && hint != "" {
			line += " (" + hint + ")"
		}
		if attempt == 1 || attempt%10 == 0 {
			log.Warn(line)
		}
		sdnotify.Status(line)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %v)", what, err, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, waitBackoff[1])
	}
}
