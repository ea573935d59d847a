package ctaphid_test

import (
	"encoding/hex"
	"testing"

	"github.com/tpm-u2f/tpm-u2f/token/ctaphid"
)

// TestReportDescriptorMatchesHardwareKeys pins the descriptor to the 34
// bytes shipping FIDO keys report (a YubiKey 5's, as recorded in Fuchsia's
// FIDO HID code): browsers and udev's FIDO detection look for exactly this
// shape.
func TestReportDescriptorMatchesHardwareKeys(t *testing.T) {
	const yubikey5 = "06d0f1090" + "1a10109201500" + "26ff007508954081020921150026ff00750895409102c0"
	if got := hex.EncodeToString(ctaphid.ReportDescriptor); got != yubikey5 {
		t.Fatalf("report descriptor\n got %s\nwant %s", got, yubikey5)
	}
}
