// Package layout checks the shape of the code as a reviewer would: the
// import graph runs api → internal → controllers → cmd with no arrow back
// up, and no function of controllers/ or internal/ (tests and generated code
// aside) is longer than maxFuncLines. It reads the source; it needs no
// cluster.
package layout_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/loadshed/loadshed"

// layers orders the top-level directories of non-test code: a package may
// import its own layer and those before it, never one after.
var layers = map[string]int{"api": 0, "internal": 1, "controllers": 2, "cmd": 3}

// maxFuncLines is the longest a function may be, from its func line to its
// closing brace.
const maxFuncLines = 60

func TestImportsRunOneWay(t *testing.T) {
	for _, f := range sourceFiles(t, "api", "internal", "controllers", "cmd") {
		parsed, err := parser.ParseFile(token.NewFileSet(), f.path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range parsed.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			rest, ok := strings.CutPrefix(path, module+"/")
			if !ok {
				continue
			}
			top, _, _ := strings.Cut(rest, "/")
			to, known := layers[top]
			switch {
			case !known:
				t.Errorf("%s imports %s: only api, internal, controllers and cmd are for code that ships", f.rel, path)
			case to > layers[f.top]:
				t.Errorf("%s imports %s: an arrow back up the graph api → internal → controllers → cmd", f.rel, path)
			}
		}
	}
}

func TestNoFunctionIsLong(t *testing.T) {
	for _, f := range sourceFiles(t, "internal", "controllers") {
		fset := token.NewFileSet()
		parsed, err := parser.ParseFile(fset, f.path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range parsed.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if lines > maxFuncLines {
				t.Errorf("%s: %s is %d lines long; split it (at most %d)", f.rel, fn.Name.Name, lines, maxFuncLines)
			}
		}
	}
}

// sourceFile is a Go file of code that ships.
type sourceFile struct {
	path, rel, top string
}

// sourceFiles returns the Go files under the given top-level directories,
// leaving out tests and generated code.
func sourceFiles(t *testing.T, tops ...string) []sourceFile {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(here), "..", "..")
	var out []sourceFile
	for _, top := range tops {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") ||
				strings.HasSuffix(path, "_test.go") || strings.HasPrefix(d.Name(), "zz_generated") {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			out = append(out, sourceFile{path: path, rel: rel, top: top})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("found no source files: is the test run from the repository?")
	}
	return out
}
