// Package pinentry asks the user for a PIN through a pinentry program
// (GnuPG's pinentry-gnome3, -qt, -gtk2, -curses, ...), speaking its Assuan
// protocol: the desktop's own trusted prompt, which never echoes the PIN
// and keeps it out of our process until it is entered. It owns the
// protocol and nothing else; what the PIN unlocks is the caller's.
package pinentry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Prompt is what the dialog says.
type Prompt struct {
	Title       string
	Description string
	Prompt      string // the label before the field, e.g. "PIN:"
	Error       string // shown above the field (a previous wrong PIN)
}

var (
	// ErrCancelled: the user closed the dialog or pressed Cancel.
	ErrCancelled = errors.New("pinentry: cancelled")
	// ErrProtocol: the program did not speak Assuan as pinentry does.
	ErrProtocol = errors.New("pinentry: unexpected answer")
)

// Ask runs program (a path or a name on $PATH) and returns the PIN the
// user typed. The caller zeroes it. The program's environment is ours
// (DISPLAY, WAYLAND_DISPLAY, DBUS_SESSION_BUS_ADDRESS).
func Ask(ctx context.Context, program string, p Prompt) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, program)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pinentry: start %s: %w", program, err)
	}
	defer func() {
		in.Close()
		cmd.Wait()
	}()
	s := &session{w: in, r: bufio.NewReaderSize(out, 4096)}
	if _, err := s.reply(); err != nil {
		return nil, err
	}
	for _, c := range []struct{ cmd, arg string }{
		{"SETTITLE", p.Title}, {"SETDESC", p.Description}, {"SETPROMPT", p.Prompt}, {"SETERROR", p.Error},
	} {
		if c.arg == "" {
			continue
		}
		if err := s.command(c.cmd + " " + escape(c.arg)); err != nil {
			return nil, err
		}
		if _, err := s.reply(); err != nil {
			return nil, err
		}
	}
	if err := s.command("GETPIN"); err != nil {
		return nil, err
	}
	pin, err := s.reply()
	if err != nil {
		return nil, err
	}
	s.command("BYE")
	return pin, nil
}

type session struct {
	w io.Writer
	r *bufio.Reader
}

func (s *session) command(line string) error {
	_, err := io.WriteString(s.w, line+"\n")
	return err
}

// maxLine is Assuan's line limit (1000 bytes with the newline).
const maxLine = 1000

// reply reads lines up to OK or ERR; the data of D lines is returned
// unescaped. Comments (#) and status lines (S) are skipped.
func (s *session) reply() ([]byte, error) {
	var data []byte
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			clear(data)
			if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
				return nil, ErrProtocol
			}
			return nil, fmt.Errorf("pinentry: %w", err)
		}
		d, done, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
		clear(line)
		if err != nil {
			clear(data)
			return nil, err
		}
		data = append(data, d...)
		clear(d)
		if done {
			return data, nil
		}
	}
}

// parseLine reads one Assuan response line: data (D), the end of the
// reply (OK, or ERR as an error), or something to skip.
func parseLine(line []byte) (data []byte, done bool, err error) {
	switch {
	case bytes.Equal(line, []byte("OK")) || bytes.HasPrefix(line, []byte("OK ")):
		return nil, true, nil
	case bytes.HasPrefix(line, []byte("ERR ")):
		// "ERR 83886179 Operation cancelled <Pinentry>": GPG_ERR_CANCELED
		// (99) in the low 16 bits; GPG_ERR_NO_PIN_ENTRY etc. otherwise.
		fields := strings.Fields(string(line[4:]))
		var code uint32
		if len(fields) > 0 {
			fmt.Sscanf(fields[0], "%d", &code)
		}
		if code&0xffff == 99 {
			return nil, true, ErrCancelled
		}
		if len(fields) < 2 {
			return nil, true, fmt.Errorf("pinentry: error %d", code)
		}
		return nil, true, fmt.Errorf("pinentry: %s", strings.Join(fields[1:], " "))
	case bytes.HasPrefix(line, []byte("D ")):
		d, err := unescape(line[2:])
		return d, false, err
	case len(line) == 0, line[0] == '#', line[0] == 'S' && (len(line) == 1 || line[1] == ' '):
		return nil, false, nil
	}
	return nil, false, ErrProtocol
}

// escape percent-encodes what Assuan cannot carry in a line.
func escape(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func unescape(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '%' {
			out = append(out, b[i])
			continue
		}
		if i+2 >= len(b) {
			clear(out)
			return nil, ErrProtocol
		}
		var v byte
		for _, c := range b[i+1 : i+3] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'A' && c <= 'F':
				v |= c - 'A' + 10
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			default:
				clear(out)
				return nil, ErrProtocol
			}
		}
		out = append(out, v)
		i += 2
	}
	return out, nil
}
