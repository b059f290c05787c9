package runstrategy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/*.txt from the current behaviour")

// TestScenarios runs the data-driven scenario files of testdata/. A file is
// a sequence of blocks:
//
//	# comments
//	command args
//	----
//	expected output, up to the next blank line
//
// Each command acts on a simulated world (world_test.go) and prints what it
// did, then the world's state. The commands:
//
//	vm [strategy=S] [running=true|false]   a new VM (first command of a file)
//	backoff base=D max=D                    crash-loop parameters
//	jitter max|none                         largest jitter, or none
//	pass [stale] [fail]                     one controller pass: stale skips observing
//	                                        the latest changes; fail makes its create
//	                                        or delete fail
//	vmi-phase P                             the node agent reports phase P
//	vmi-delete                              a user deletes the VMI directly
//	vmi-gone                                the VMI's deletion completes
//	start [paused] | stop [grace=N] | restart [grace=N]
//	pause | unpause | soft-reboot           lifecycle requests through the admission functions
//	set-strategy S|none | set-running true|false|none
//	                                        a user edits the spec
//	advance D                               the clock moves on
//	vm-delete                               a user deletes the VM
//
// Run with -rewrite to regenerate the expected outputs, then review the diff.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario files in testdata/")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenarioFile(t, f) })
	}
}

type scenarioBlock struct {
	comments []string
	cmd      string
	line     int // of the command, 1-based
	want     []string
}

func parseScenario(path, text string) ([]scenarioBlock, []string, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var blocks []scenarioBlock
	var comments []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "#") {
				comments = append(comments, l)
			}
			i++
			continue
		}
		b := scenarioBlock{comments: comments, cmd: strings.TrimSpace(l), line: i + 1}
		comments = nil
		i++
		if i >= len(lines) || lines[i] != "----" {
			return nil, nil, fmt.Errorf("%s:%d: command %q is not followed by ----", path, b.line, b.cmd)
		}
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			b.want = append(b.want, lines[i])
		}
		blocks = append(blocks, b)
	}
	return blocks, comments, nil
}

func runScenarioFile(t *testing.T, path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, trailing, err := parseScenario(path, string(text))
	if err != nil {
		t.Fatal(err)
	}
	var sc scenario
	for i := range blocks {
		b := &blocks[i]
		got, err := sc.run(b.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, b.line, b.cmd, err)
		}
		if *rewrite {
			b.want = got
			continue
		}
		if diff := cmp.Diff(b.want, got); diff != "" {
			t.Fatalf("%s:%d: %s: output differs (-want +got):\n%s\n(run go test -run TestScenarios -rewrite to accept the new output)", path, b.line, b.cmd, diff)
		}
	}
	if !*rewrite {
		return
	}
	var out strings.Builder
	for _, b := range blocks {
		for _, c := range b.comments {
			out.WriteString(c + "\n")
		}
		out.WriteString(b.cmd + "\n----\n")
		for _, l := range b.want {
			out.WriteString(l + "\n")
		}
		out.WriteString("\n")
	}
	for _, c := range trailing {
		out.WriteString(c + "\n")
	}
	if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scenario interprets the commands of a scenario file.
type scenario struct{ w *world }

func (sc *scenario) run(line string) ([]string, error) {
	f := strings.Fields(line)
	cmd, args := f[0], f[1:]
	kv := map[string]string{}
	var words []string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			words = append(words, a)
		}
	}
	if cmd == "vm" {
		var spec VM
		if s, ok := kv["strategy"]; ok {
			spec.RunStrategy = ptr(Strategy(s))
		}
		if r, ok := kv["running"]; ok {
			b, err := strconv.ParseBool(r)
			if err != nil {
				return nil, err
			}
			spec.Running = ptr(b)
		}
		sc.w = newWorld(spec)
		return sc.w.dump(), nil
	}
	w := sc.w
	if w == nil {
		return nil, fmt.Errorf("the first command must be vm")
	}
	var out []string
	switch cmd {
	case "backoff":
		for k, v := range kv {
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, err
			}
			switch k {
			case "base":
				w.backoff.Base = d
			case "max":
				w.backoff.Max = d
			default:
				return nil, fmt.Errorf("unknown backoff parameter %q", k)
			}
		}
	case "jitter":
		switch strings.Join(words, " ") {
		case "max":
			w.backoff.Jitter = func(n int64) int64 { return n }
		case "none":
			w.backoff.Jitter = nil
		default:
			return nil, fmt.Errorf("jitter takes max or none")
		}
	case "pass":
		s, err := w.pass(hasWord(words, "stale"), hasWord(words, "fail"))
		if err != nil {
			return nil, err
		}
		out = s.describe()
	case "vmi-phase":
		if len(words) != 1 {
			return nil, fmt.Errorf("vmi-phase takes one phase")
		}
		ph := Phase(words[0])
		if ph == "Unset" {
			ph = PhaseUnset
		}
		if err := w.setPhase(ph); err != nil {
			return nil, err
		}
	case "vmi-delete":
		if err := w.deleteVMI(); err != nil {
			return nil, err
		}
	case "vmi-gone":
		if err := w.vmiGone(); err != nil {
			return nil, err
		}
	case "start", "stop", "restart", "pause", "unpause", "soft-reboot":
		var g *int64
		if v, ok := kv["grace"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, err
			}
			g = &n
		}
		c, r := w.lifecycle(cmd, g, hasWord(words, "paused"))
		ok := 202
		if cmd == "pause" || cmd == "unpause" || cmd == "soft-reboot" {
			ok = 200
		}
		out = []string{describeAnswer(ok, c, r)}
	case "set-strategy":
		if len(words) != 1 {
			return nil, fmt.Errorf("set-strategy takes one strategy or none")
		}
		w.setStrategy(Strategy(words[0]), words[0] != "none")
	case "set-running":
		switch strings.Join(words, " ") {
		case "none":
			w.setRunning(nil)
		case "true", "false":
			w.setRunning(ptr(words[0] == "true"))
		default:
			return nil, fmt.Errorf("set-running takes true, false or none")
		}
	case "advance":
		if len(words) != 1 {
			return nil, fmt.Errorf("advance takes one duration")
		}
		d, err := time.ParseDuration(words[0])
		if err != nil {
			return nil, err
		}
		w.now = w.now.Add(d)
	case "vm-delete":
		w.vm.Deleting = true
	default:
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	return append(out, w.dump()...), nil
}

func hasWord(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}
