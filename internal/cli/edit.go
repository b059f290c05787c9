package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// NewEditCmd returns `vigil edit`.
func NewEditCmd(f *Factory, streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "edit TYPE NAME",
		Short: "Edit an object in $VIGIL_EDITOR, $EDITOR or vi, then save it",
		Example: `  vigil edit vm myvm
  EDITOR=nano vigil edit vm myvm`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("usage: vigil edit TYPE NAME")
			}
			k, err := kindByName(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			return runEdit(cmd.Context(), f, streams, k, args[1])
		},
	}
}

func editor(env func(string) string) []string {
	for _, v := range []string{"VIGIL_EDITOR", "EDITOR", "VISUAL"} {
		if e := env(v); e != "" {
			return strings.Fields(e)
		}
	}
	return []string{"vi"}
}

func runEdit(ctx context.Context, f *Factory, streams Streams, k *kind, name string) error {
	env := f.getenv()
	c, err := f.Client()
	if err != nil {
		return err
	}
	ns := f.Namespace
	if !k.namespaced {
		ns = ""
	}
	obj, err := k.get(ctx, c, ns, name)
	if err != nil {
		return notFoundMessage(err, k, name)
	}
	var orig bytes.Buffer
	if err := newPrinter(&orig, outputYAML, k, f.now(), false).printDoc(obj); err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "vigil-edit-*.yaml")
	if err != nil {
		return err
	}
	header := "# Edit the object below and save to apply; an unchanged file cancels.\n# status is ignored: it is written by Vigil.\n"
	if _, err := tmp.WriteString(header + orig.String()); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	ed := editor(env)
	run := exec.CommandContext(ctx, ed[0], append(ed[1:], tmp.Name())...)
	run.Stdin, run.Stdout, run.Stderr = os.Stdin, streams.Out, streams.ErrOut
	if err := run.Run(); err != nil {
		return fmt.Errorf("the editor %q failed: %w (your edit is in %s)", strings.Join(ed, " "), err, tmp.Name())
	}
	edited, err := os.ReadFile(tmp.Name())
	if err != nil {
		return err
	}
	edited = stripComments(edited)
	if bytes.Equal(bytes.TrimSpace(edited), bytes.TrimSpace(orig.Bytes())) {
		os.Remove(tmp.Name())
		fmt.Fprintln(streams.Out, "Edit cancelled, no changes made.")
		return nil
	}
	j, err := yaml.YAMLToJSON(edited)
	if err != nil {
		return fmt.Errorf("the edited object is not valid YAML: %w (your edit is in %s)", err, tmp.Name())
	}
	if _, err := k.update(ctx, c, ns, name, j); err != nil {
		return fmt.Errorf("%s (your edit is in %s)", message(err), tmp.Name())
	}
	os.Remove(tmp.Name())
	fmt.Fprintf(streams.Out, "%s/%s edited\n", k.display, name)
	return nil
}
