package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"

	"github.com/vigil-vm/vigil/client"
)

// LastAppliedAnnotation holds the manifest `vigil apply` last applied, so the
// next apply can tell fields the user removed from fields others set.
const LastAppliedAnnotation = "vigil.dev/last-applied-configuration"

// ApplyOptions holds the flags of `vigil apply` and `vigil create`.
type ApplyOptions struct {
	f       *Factory
	streams Streams

	Files  []string
	DryRun bool
	Output string

	createOnly bool
	format     outputFormat
}

// NewApplyCmd returns `vigil apply`.
func NewApplyCmd(f *Factory, streams Streams) *cobra.Command {
	return newApplyLike(f, streams, false)
}

// NewCreateCmd returns `vigil create`.
func NewCreateCmd(f *Factory, streams Streams) *cobra.Command {
	return newApplyLike(f, streams, true)
}

func newApplyLike(f *Factory, streams Streams, createOnly bool) *cobra.Command {
	o := &ApplyOptions{f: f, streams: streams, createOnly: createOnly}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Example: `  vigil apply -f examples/
  cat vm.yaml | vigil apply -f -`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	if createOnly {
		cmd.Use = "create -f FILE|DIR|-"
		cmd.Short = "Create objects from manifests; existing objects are an error"
		cmd.Example = "  vigil create -f vm.yaml"
	}
	cmd.Flags().StringSliceVarP(&o.Files, "filename", "f", nil, "manifest files or directories, or - for standard input")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "validate on the server without persisting")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "print the resulting objects: yaml, json or name")
	return cmd
}

// Complete checks the arguments.
func (o *ApplyOptions) Complete(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %v: manifests are given with -f", args)
	}
	if len(o.Files) == 0 {
		return usagef("you must give manifests with -f FILE, -f DIR or -f -")
	}
	var err error
	if o.format, err = parseOutput(o.Output); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// Run applies every manifest in order; it stops at the first failure.
func (o *ApplyOptions) Run(ctx context.Context) error {
	ms, err := readManifests(o.Files, o.streams.In, o.f.Namespace)
	if err != nil {
		return err
	}
	c, err := o.f.Client()
	if err != nil {
		return err
	}
	for _, m := range ms {
		obj, verb, err := o.applyOne(ctx, c, m)
		if err != nil {
			return fmt.Errorf("%s: %s", m.source, message(err))
		}
		dry := ""
		if o.DryRun {
			dry = " (server dry run)"
		}
		if o.format != outputTable && obj != nil {
			if err := newPrinter(o.streams.Out, o.format, m.kind, o.f.now(), false).printOne(obj); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(o.streams.Out, "%s/%s %s%s\n", m.kind.display, m.name, verb, dry)
	}
	return nil
}

func (o *ApplyOptions) applyOne(ctx context.Context, c *client.Client, m manifest) (client.Object, string, error) {
	if m.name == "" {
		return nil, "", fmt.Errorf("metadata.name is required")
	}
	body := m.json
	if !o.createOnly {
		var err error
		if body, err = withLastApplied(m.json); err != nil {
			return nil, "", err
		}
	}
	cur, err := m.kind.get(ctx, c, m.ns, m.name)
	switch {
	case apierrors.IsNotFound(err):
		obj, err := m.kind.create(ctx, c, m.ns, body, o.DryRun)
		return obj, "created", err
	case err != nil:
		return nil, "", err
	case o.createOnly:
		return nil, "", fmt.Errorf("%s %q already exists", m.kind.display, m.name)
	}
	// A three-way merge: fields the previous apply set and this manifest no
	// longer has are removed; fields set by others are kept.
	current, err := json.Marshal(cur)
	if err != nil {
		return nil, "", err
	}
	original := []byte(cur.GetAnnotations()[LastAppliedAnnotation])
	if len(original) == 0 {
		original = []byte("{}")
	}
	patch, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, body, current)
	if err != nil {
		return nil, "", fmt.Errorf("computing the changes: %w", err)
	}
	if string(patch) == "{}" {
		return cur, "unchanged", nil
	}
	if o.DryRun {
		return cur, "configured", nil
	}
	obj, err := m.kind.patch(ctx, c, m.ns, m.name, patch)
	return obj, "configured", err
}

// withLastApplied returns the manifest with its own JSON recorded in the
// last-applied annotation.
func withLastApplied(j []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["metadata"] = meta
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	delete(ann, LastAppliedAnnotation)
	if len(ann) == 0 {
		delete(meta, "annotations")
	}
	clean, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	ann[LastAppliedAnnotation] = string(clean)
	meta["annotations"] = ann
	return json.Marshal(doc)
}
