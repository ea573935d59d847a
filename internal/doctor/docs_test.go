package doctor

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/install.md's troubleshooting section is the checks in prose: one
// item per check, in the order Run runs them, named as Print names them,
// marked FIX where the check blocks and WARN where it does not.
func TestInstallDocFollowsTheChecks(t *testing.T) {
	b, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	_, section, ok := strings.Cut(doc, "\n### What each doctor line means\n")
	if !ok {
		t.Fatal("docs/install.md has no \"What each doctor line means\" section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	item := regexp.MustCompile(`(?m)^- \*\*(.+?)\*\* \((FIX|WARN)\):`)
	var got, want []string
	for _, m := range item.FindAllStringSubmatch(section, -1) {
		got = append(got, m[1]+" "+m[2])
	}
	for _, c := range checks {
		tag := "WARN"
		if c.blocking {
			tag = "FIX"
		}
		want = append(want, c.name+" "+tag)
	}
	if !slices.Equal(got, want) {
		t.Errorf("docs/install.md lists\n  %s\nthe checks are\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
