package runstrategy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The core must stay pure (STYLE.md 5.2, 5.14, 5.15): no I/O in its import
// graph, and no clock, randomness, logging or goroutines in its source.

const vigilModule = "github.com/vigil-vm/vigil"

// forbiddenDep reports why the core may not depend on pkg, or "".
func forbiddenDep(self, pkg string) string {
	switch {
	case pkg == "net" || strings.HasPrefix(pkg, "net/"):
		return "networking"
	case pkg == "os/exec":
		return "starting processes"
	case strings.HasPrefix(pkg, "go.etcd.io/"):
		return "etcd"
	case strings.HasPrefix(pkg, "k8s.io/"), strings.HasPrefix(pkg, "sigs.k8s.io/"):
		return "Kubernetes machinery"
	case pkg != self && (pkg == vigilModule || strings.HasPrefix(pkg, vigilModule+"/")):
		return "another Vigil package (the core imports none)"
	}
	return ""
}

// TestDeps fails if the import graph of the core (without its tests)
// reaches a forbidden package, and names the package that imports it.
func TestDeps(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not available")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// go list -deps prints the package itself last.
	self := strings.Fields(lines[len(lines)-1])[0]
	if self != vigilModule+"/internal/runstrategy" {
		t.Fatalf("go list -deps ended with %q, want the core itself", self)
	}
	importers := map[string][]string{}
	var all []string
	for _, l := range lines {
		f := strings.Fields(l)
		all = append(all, f[0])
		for _, imp := range f[1:] {
			importers[imp] = append(importers[imp], f[0])
		}
	}
	if len(all) < 5 {
		t.Fatalf("go list -deps listed only %v; the test is not looking at the real graph", all)
	}
	sort.Strings(all)
	for _, pkg := range all {
		if why := forbiddenDep(self, pkg); why != "" {
			t.Errorf("the core depends on %s (%s), imported by %v", pkg, why, importers[pkg])
		}
	}
}

// TestForbiddenDepRule checks the rule itself, so that a typo in it cannot
// silently let everything through.
func TestForbiddenDepRule(t *testing.T) {
	self := vigilModule + "/internal/runstrategy"
	for pkg, forbidden := range map[string]bool{
		"net": true, "net/http": true, "net/netip": true, "os/exec": true,
		"go.etcd.io/etcd/client/v3": true, "go.etcd.io/bbolt": true,
		"k8s.io/apimachinery/pkg/apis/meta/v1": true, "sigs.k8s.io/yaml": true,
		vigilModule + "/api/v1": true, vigilModule + "/internal/vmstate": true, vigilModule: true,
		self: false, "time": false, "fmt": false, "os": false, "slices": false, "network": false, "k8s.io": false,
	} {
		if got := forbiddenDep(self, pkg) != ""; got != forbidden {
			t.Errorf("forbiddenDep(%q) = %v, want %v", pkg, got, forbidden)
		}
	}
}

// Imports the core's own source may not use: randomness, logging, and the
// operating system.
var forbiddenImports = map[string]string{
	"math/rand":    "randomness (the jitter is an input)",
	"math/rand/v2": "randomness (the jitter is an input)",
	"crypto/rand":  "randomness (the jitter is an input)",
	"log":          "logging (decisions carry a Why instead)",
	"log/slog":     "logging (decisions carry a Why instead)",
	"os":           "the operating system",
	"testing":      "test code",
}

// Functions of package time that read the clock or wait.
var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "Tick": true, "NewTicker": true, "NewTimer": true,
}

// TestSourceIsPure checks every non-test .go file of the package: no
// forbidden import, no clock read (time.Now( and friends), no goroutine.
func TestSourceIsPure(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		checked++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		timeName := ""
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if why, bad := forbiddenImports[p]; bad {
				t.Errorf("%s imports %s: the core may not use %s", fset.Position(imp.Pos()), p, why)
			}
			if p == "time" {
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: the core may not start goroutines", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && clockFuncs[n.Sel.Name] {
					t.Errorf("%s: %s.%s reads the clock; the time of a pass is Pass.Now", fset.Position(n.Pos()), timeName, n.Sel.Name)
				}
			}
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("checked only %d source files; is the test running in the package directory?", checked)
	}
}
