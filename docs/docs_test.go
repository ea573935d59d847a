// Package docs holds the user guide, the threat model and the
// architecture notes; its test keeps their references to tests true.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	// An optional package (its directory's name or path) before the
	// test's name: `tpm.TestResetKilledAtEveryStep` must be in package tpm,
	// `cmd/tpm-u2f.TestResetKilledBetweenStoreSteps` in cmd/tpm-u2f.
	namedInDocs = regexp.MustCompile(`\b(?:([a-z][a-z0-9_/-]*)\.)?((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*)`)
	declared    = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)\(`)
)

// TestNamedTestsExist fails when a document names a test, fuzz target or
// benchmark that no _test.go file declares (in the package it names, if
// it names one): the docs claim only what a
// test shows, and a renamed or deleted test must take its claim with it.
func TestNamedTestsExist(t *testing.T) {
	root := ".."
	have := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "build" || d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range declared.FindAllSubmatch(b, -1) {
			have[string(m[1])] = true
			dir := filepath.Dir(path)
			rel, _ := filepath.Rel(root, dir)
			have[filepath.Base(dir)+"."+string(m[1])] = true
			have[filepath.ToSlash(rel)+"."+string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !have["TestNamedTestsExist"] {
		t.Fatal("the walk found no tests: wrong root")
	}
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(root, "README.md"))
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, m := range namedInDocs.FindAllStringSubmatch(string(b), -1) {
			name := m[2]
			if m[1] != "" {
				name = m[1] + "." + name
			}
			if !have[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			t.Errorf("%s names tests that do not exist: %s", doc, strings.Join(slices.Compact(missing), ", "))
		}
	}
}
