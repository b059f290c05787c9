package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vigil-vm/vigil/client"
)

// outputFormat is the -o flag.
type outputFormat string

const (
	outputTable outputFormat = ""
	outputWide  outputFormat = "wide"
	outputYAML  outputFormat = "yaml"
	outputJSON  outputFormat = "json"
	outputName  outputFormat = "name"
)

func parseOutput(s string) (outputFormat, error) {
	switch o := outputFormat(s); o {
	case outputTable, outputWide, outputYAML, outputJSON, outputName:
		return o, nil
	}
	return "", fmt.Errorf("unsupported output format %q: use yaml, json, wide or name", s)
}

// printer writes objects in one output format.
type printer struct {
	out     io.Writer
	format  outputFormat
	k       *kind
	now     time.Time
	withNS  bool
	tw      *tabwriter.Writer
	started bool
	// leaseRenewed, when set, tells node rows when each lease was renewed.
	leaseRenewed func(node string) (time.Time, bool)
}

func newPrinter(out io.Writer, format outputFormat, k *kind, now time.Time, withNS bool) *printer {
	return &printer{out: out, format: format, k: k, now: now, withNS: withNS}
}

// printList prints objects as one table, or as one List document.
func (p *printer) printList(objs []client.Object) error {
	switch p.format {
	case outputYAML, outputJSON:
		if len(objs) == 1 {
			return p.printDoc(objs[0])
		}
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = o
		}
		return p.printDoc(map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{}})
	}
	for _, o := range objs {
		if err := p.printOne(o); err != nil {
			return err
		}
	}
	return p.flush()
}

// printOne prints one object (a table row, a name, or a document).
func (p *printer) printOne(o client.Object) error {
	switch p.format {
	case outputYAML, outputJSON:
		return p.printDoc(o)
	case outputName:
		_, err := fmt.Fprintf(p.out, "%s/%s\n", p.k.display, o.GetName())
		return err
	}
	if p.tw == nil {
		p.tw = tabwriter.NewWriter(p.out, 0, 8, 3, ' ', 0)
	}
	wide := p.format == outputWide
	if !p.started {
		h := p.k.headers
		if wide {
			h = append(append([]string{}, h...), p.k.wideHeaders...)
		}
		if p.withNS && p.k.namespaced {
			h = append([]string{"NAMESPACE"}, h...)
		}
		fmt.Fprintln(p.tw, strings.Join(h, "\t"))
		p.started = true
	}
	row := p.k.row(o, rowContext{now: p.now, leaseRenewed: p.leaseRenewed}, wide)
	if p.withNS && p.k.namespaced {
		row = append([]string{o.GetNamespace()}, row...)
	}
	_, err := fmt.Fprintln(p.tw, strings.Join(row, "\t"))
	return err
}

func (p *printer) flush() error {
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}

func (p *printer) printDoc(v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if p.format == outputYAML {
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		if p.started {
			fmt.Fprintln(p.out, "---")
		}
		p.started = true
		_, err = p.out.Write(y)
		return err
	}
	_, err = fmt.Fprintf(p.out, "%s\n", b)
	return err
}

// decodeInto decodes a JSON document into a typed object.
func decodeInto(body []byte, into any) error {
	return json.Unmarshal(body, into)
}
