package pinentry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The test binary plays a pinentry program when PINENTRY_TEST_MODE is
// set, answering GETPIN as the mode says and logging what it was told.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PINENTRY_TEST_MODE"); mode != "" {
		fakePinentry(mode, os.Getenv("PINENTRY_TEST_LOG"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fakePinentry(mode, logPath string) {
	log, _ := os.Create(logPath)
	defer log.Close()
	fmt.Println("OK Pleased to meet you")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		switch {
		case line == "BYE":
			fmt.Println("OK closing connection")
			return
		case line == "GETPIN":
			switch mode {
			case "pin":
				fmt.Println("S PASSWORD_FROMCACHE")
				fmt.Println("D ä1%252%0A4") // "ä1%2\n4"
				fmt.Println("OK")
			case "cancel":
				fmt.Println("ERR 83886179 Operation cancelled <Pinentry>")
			case "garbage":
				fmt.Println("HELLO")
			case "die":
				os.Exit(1)
			}
		default:
			fmt.Println("OK")
		}
	}
}

func ask(t *testing.T, mode string, p Prompt) ([]byte, string, error) {
	t.Helper()
	logPath := t.TempDir() + "/log"
	t.Setenv("PINENTRY_TEST_MODE", mode)
	t.Setenv("PINENTRY_TEST_LOG", logPath)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := Ask(context.Background(), exe, p)
	log, _ := os.ReadFile(logPath)
	return pin, string(log), err
}

func TestAsk(t *testing.T) {
	pin, log, err := ask(t, "pin", Prompt{Title: "tpm-u2f", Description: "Unlock the key\n100% yours", Prompt: "PIN:", Error: "Wrong PIN"})
	if err != nil || string(pin) != "ä1%2\n4" {
		t.Fatalf("Ask = %q, %v", pin, err)
	}
	for _, want := range []string{"SETTITLE tpm-u2f", "SETDESC Unlock the key%0A100%25 yours", "SETPROMPT PIN:", "SETERROR Wrong PIN", "GETPIN", "BYE"} {
		if !strings.Contains(log, want+"\n") {
			t.Errorf("pinentry was not told %q; log:\n%s", want, log)
		}
	}
}

func TestAskFailures(t *testing.T) {
	if _, _, err := ask(t, "cancel", Prompt{}); !errors.Is(err, ErrCancelled) {
		t.Errorf("cancel: %v", err)
	}
	if _, _, err := ask(t, "garbage", Prompt{}); !errors.Is(err, ErrProtocol) {
		t.Errorf("garbage: %v", err)
	}
	if _, _, err := ask(t, "die", Prompt{}); err == nil {
		t.Error("a pinentry that dies gave no error")
	}
	if _, err := Ask(context.Background(), "/nonexistent/pinentry", Prompt{}); err == nil {
		t.Error("a missing program gave no error")
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"OK", "OK Pleased", "D 12%2534", "D %", "D %zz", "ERR 83886179 Operation cancelled", "S x", "# c", "", "X"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		d, done, err := parseLine(line)
		if err != nil && d != nil {
			t.Fatal("data with an error")
		}
		if bytes.HasPrefix(line, []byte("D ")) && err == nil && len(d) > len(line) {
			t.Fatal("unescaping grew the data")
		}
		_ = done
	})
}
