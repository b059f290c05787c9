// Repository-wide rules that a reviewer would otherwise have to remember:
// every package has exactly one package doc comment, only the API server
// touches the store, and production code never imports "testing".
package vigil_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

const module = "github.com/vigil-vm/vigil"

// TestPackageDocs checks that every package has exactly one package doc
// comment, in doc.go when the package has several files.
func TestPackageDocs(t *testing.T) {
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, files := range dirs {
		var docs []string
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				docs = append(docs, filepath.Base(f))
			}
		}
		switch {
		case len(docs) == 0:
			t.Errorf("package %s has no package doc comment", dir)
		case len(docs) > 1:
			t.Errorf("package %s has %d package doc comments (%v); keep exactly one", dir, len(docs), docs)
		case len(files) > 1 && docs[0] != "doc.go" && docs[0] != "main.go":
			t.Errorf("package %s has %d files: put its package doc in doc.go, not %s", dir, len(files), docs[0])
		}
	}
}

// TestImportRules enforces the layering of STYLE.md: only the API server
// imports the store, and no production package imports "testing".
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg, imports := fields[0], fields[1:]
		rel := strings.TrimPrefix(pkg, module+"/")
		for _, imp := range imports {
			if strings.HasPrefix(imp, module+"/internal/store") && !strings.HasPrefix(rel, "internal/apiserver") &&
				!strings.HasPrefix(rel, "internal/store") && !strings.HasPrefix(rel, "internal/server") && !strings.HasPrefix(rel, "cmd/") {
				t.Errorf("%s imports %s: only the API server may use the store; go through client/", rel, imp)
			}
			if imp == "testing" && !strings.HasSuffix(rel, "test") {
				t.Errorf("%s imports testing: production code must not (test helpers live in *test packages)", rel)
			}
		}
	}
}

func TestMain(m *testing.M) {
	// The rules read the source tree; run from the repository root.
	if _, err := os.Stat("go.mod"); err != nil {
		panic("run from the repository root")
	}
	os.Exit(m.Run())
}

// TestExamples: every manifest in examples/ decodes strictly and passes the
// API server's validation, so that make run and the README never show a
// manifest the server would refuse.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var vm v1.VirtualMachine
		if err := v1.DecodeYAML(b, &vm); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if errs, _ := v1.ValidateVirtualMachine(&vm); len(errs) > 0 {
			t.Errorf("%s: %v", f, errs.ToAggregate())
		}
	}
}
