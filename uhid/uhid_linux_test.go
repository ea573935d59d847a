package uhid

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealDevice needs /dev/uhid (the QEMU guest suite runs it): it
// creates a device, finds its hidraw node, and passes a report each way.
func TestRealDevice(t *testing.T) {
	if _, err := os.Stat(Path); err != nil {
		t.Skipf("no %s (this kernel has no uhid; the QEMU guest suite runs this test): %v", Path, err)
	}
	// A vendor-defined 64-byte in/out descriptor: test data only.
	desc := []byte{0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01,
		0x09, 0x20, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02,
		0x09, 0x21, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02, 0xc0}
	uniq := fmt.Sprintf("UHIDTEST%06d", time.Now().UnixNano()%1000000)
	d, err := Open(Config{Name: "uhid test", Uniq: uniq, Vendor: 1, Product: 2, ReportDescriptor: desc}, nil)
	if err != nil {
		t.Skipf("cannot create a uhid device: %v", err)
	}
	defer d.Close()
	node := findHidraw(t, uniq)
	f, err := os.OpenFile(node, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := bytes.Repeat([]byte{0x42}, 64)
	if _, err := f.Write(append([]byte{0}, out...)); err != nil {
		t.Fatal(err)
	}
	got, err := d.ReadReport()
	if err != nil || !bytes.Equal(got, out) {
		t.Fatalf("ReadReport = %x, %v", got, err)
	}
	in := bytes.Repeat([]byte{0x24}, 64)
	if err := d.WriteReport(in); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := f.Read(buf); err != nil || !bytes.Equal(buf[:n], in) {
		t.Fatalf("hidraw read = %x, %v", buf[:n], err)
	}
	if err := d.Replug(); err != nil {
		t.Fatal(err)
	}
	findHidraw(t, uniq)
}

func findHidraw(t *testing.T, uniq string) string {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		nodes, _ := filepath.Glob("/sys/class/hidraw/hidraw*")
		for _, n := range nodes {
			ue, err := os.ReadFile(filepath.Join(n, "device", "uevent"))
			if err == nil && strings.Contains(string(ue), "HID_UNIQ="+uniq) {
				return "/dev/" + filepath.Base(n)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no hidraw node for uniq %s", uniq)
	return ""
}
