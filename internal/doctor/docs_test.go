package doctor

import (
	"io/fs"
	"os"
	"path/filepath"
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

// Every test docs/install.md names as `package.TestName` exists, so a
// claim cannot outlive the test behind it.
func TestInstallDocNamesTestsThatExist(t *testing.T) {
	b, err := os.ReadFile("../../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile("`([a-z0-9]+)\\.(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(b), -1)
	if len(refs) == 0 {
		t.Fatal("docs/install.md names no tests")
	}
	// The test functions of the repository, by package directory name.
	have := map[string]bool{}
	fn := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	err = filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && p != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range fn.FindAllStringSubmatch(string(src), -1) {
			have[filepath.Base(filepath.Dir(p))+"."+m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !have[r[1]+"."+r[2]] {
			t.Errorf("docs/install.md names %s.%s, which no package %s has", r[1], r[2], r[1])
		}
	}
}
