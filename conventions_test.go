// Package m2mauth_test holds tests of the project's conventions.
package m2mauth_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Every package has a doc comment.
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{if .GoFiles}}{{.ImportPath}}\t{{.Doc}}{{end}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, doc, found := strings.Cut(line, "\t")
		if !found {
			continue // a directory with only tests
		}
		if strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no doc comment", pkg)
		}
	}
}

// The public packages depend only on the standard library and a few small,
// well-kept modules, so importing them costs users little. They may use
// this module's own packages (internal/jws, say): the list is of every
// package reached, so what those import is checked too.
func TestPublicPackageDependencies(t *testing.T) {
	allowed := []string{
		"github.com/go-jose/go-jose/v4", "golang.org/x/oauth2", "golang.org/x/sync", "golang.org/x/time",
		"github.com/m2mauth/m2mauth",
	}
	for _, pkg := range []string{"./verify", "./tokensource"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, dep := range strings.Fields(string(out)) {
			ok := false
			for _, a := range allowed {
				if dep == a || strings.HasPrefix(dep, a+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}
