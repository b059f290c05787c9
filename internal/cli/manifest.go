package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// manifest is one document of a -f input, as JSON.
type manifest struct {
	source string // file name and document number, for messages
	json   []byte
	kind   *kind
	name   string
	ns     string
}

// readManifests reads every document of the -f arguments: files,
// directories (their .yaml, .yml and .json files, in name order) or "-"
// for standard input. Documents are separated by "---" lines.
func readManifests(files []string, stdin io.Reader, defaultNS string) ([]manifest, error) {
	var out []manifest
	for _, f := range files {
		var paths []string
		switch {
		case f == "-":
			paths = []string{"-"}
		default:
			st, err := os.Stat(f)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", f, err)
			}
			if st.IsDir() {
				entries, err := os.ReadDir(f)
				if err != nil {
					return nil, err
				}
				for _, e := range entries {
					ext := strings.ToLower(filepath.Ext(e.Name()))
					if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
						paths = append(paths, filepath.Join(f, e.Name()))
					}
				}
				sort.Strings(paths)
				if len(paths) == 0 {
					return nil, fmt.Errorf("directory %s holds no .yaml, .yml or .json files", f)
				}
			} else {
				paths = []string{f}
			}
		}
		for _, p := range paths {
			var data []byte
			var err error
			if p == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(p)
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
			docs, err := parseDocuments(p, data, defaultNS)
			if err != nil {
				return nil, err
			}
			out = append(out, docs...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no objects found in %s", strings.Join(files, ", "))
	}
	return out, nil
}

func splitYAMLDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " \t") == "---" || strings.HasPrefix(line, "--- ") {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	docs = append(docs, cur.Bytes())
	return docs
}

func parseDocuments(source string, data []byte, defaultNS string) ([]manifest, error) {
	var out []manifest
	for i, doc := range splitYAMLDocuments(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		src := fmt.Sprintf("%s (document %d)", source, i+1)
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: malformed YAML: %w", src, err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := decodeInto(j, &head); err != nil {
			return nil, fmt.Errorf("%s: not an object: %w", src, err)
		}
		if head.Kind == "" || head.APIVersion == "" {
			return nil, fmt.Errorf("%s: apiVersion and kind are required", src)
		}
		k, err := kindOf(head.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if want := v1.TypeMetaFor(head.Kind).APIVersion; head.APIVersion != want {
			return nil, fmt.Errorf("%s: apiVersion %q is not served for %s: use %s", src, head.APIVersion, head.Kind, want)
		}
		ns := head.Metadata.Namespace
		if k.namespaced && ns == "" {
			ns = defaultNS
		}
		out = append(out, manifest{source: src, json: j, kind: k, name: head.Metadata.Name, ns: ns})
	}
	return out, nil
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
