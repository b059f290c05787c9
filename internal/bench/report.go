package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Report is what a run measured.
type Report struct {
	Date     string           `json:"date"`
	Machine  Machine          `json:"machine"`
	Config   ReportConfig     `json:"config"`
	Paced    *PhaseResult     `json:"pacedStart,omitempty"`
	Bulk     *PhaseResult     `json:"bulkStart,omitempty"`
	Steady   *SteadyResult    `json:"steadyState,omitempty"`
	Writes   *WritesResult    `json:"writesPerStart,omitempty"`
	Churn    *ChurnResult     `json:"churn,omitempty"`
	NodeLoss []NodeLossResult `json:"nodeLoss,omitempty"`
	Targets  []Target         `json:"targets"`

	samples []series // latency over time, for the plot
}

// Machine describes where the run ran.
type Machine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	MemoryGiB float64 `json:"memoryGiB"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
}

// ReportConfig is the run's size.
type ReportConfig struct {
	Nodes          int     `json:"nodes"`
	VMs            int     `json:"vms"`
	PacedVMs       int     `json:"pacedVMs"`
	PacedRate      float64 `json:"pacedRate"`
	Concurrency    int     `json:"concurrency"`
	WriteStarts    int     `json:"writeStarts"`
	ChurnPerMinute int     `json:"churnPerMinute"`
	ChurnDuration  string  `json:"churnDuration"`
}

// LatencyStats are percentiles in milliseconds.
type LatencyStats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50ms"`
	P95 float64 `json:"p95ms"`
	P99 float64 `json:"p99ms"`
	Max float64 `json:"maxms"`
}

// PhaseResult is a start phase.
type PhaseResult struct {
	VMs         int     `json:"vms"`
	OfferedRate float64 `json:"offeredRate,omitempty"`
	// Throughput is VMs per second from the first create to the last
	// VM Running.
	Throughput float64      `json:"throughputPerSecond"`
	Latency    LatencyStats `json:"createToRunning"`
	// APIWrite is the create request's latency as the client saw it.
	APIWrite LatencyStats `json:"apiCreate"`
	// ServerCPUMsPerStart and HarnessCPUMsPerStart are the CPU time the
	// server and this process (the simulated agents and the clients) spent
	// in the phase, per VM started: what a start costs, rather than how
	// fast it went on a machine shared with other work. Zero when not
	// measured.
	ServerCPUMsPerStart  float64 `json:"serverCPUMsPerStart,omitempty"`
	HarnessCPUMsPerStart float64 `json:"harnessCPUMsPerStart,omitempty"`
}

// SteadyResult is the server at rest.
type SteadyResult struct {
	VMs               int     `json:"vms"`
	Window            string  `json:"window"`
	ServerCPUPercent  float64 `json:"serverCPUPercentOfOneCore"`
	ServerRSSMiB      float64 `json:"serverRSSMiB"`
	ServerRSSKiBPerVM float64 `json:"serverRSSKiBPerVM"`
	AgentsCPUPercent  float64 `json:"simulatedAgentsCPUPercentOfOneCore"`
	// Settle is the rest before the window, and SettleCPUPercent the
	// server's CPU in it (the compaction of the bulk start's history).
	Settle           string  `json:"settle"`
	SettleCPUPercent float64 `json:"settleServerCPUPercentOfOneCore"`
}

// WritesResult counts stored writes per VM start.
type WritesResult struct {
	Starts int `json:"starts"`
	// PerStart is the keys written per start, by kind.
	PerStart map[string]float64 `json:"keysPerStartByKind"`
	// BeyondCreatePerStart is the etcd writes (transactions: revisions) a
	// start costs beyond the user's create. KeysBeyondCreatePerStart counts
	// keys instead (several Events share one transaction);
	// BeyondCreatePerStartNoEvents leaves the Events out, and
	// EventTransactionsPerStart is what the Events cost.
	BeyondCreatePerStart         float64 `json:"beyondCreatePerStart"`
	KeysBeyondCreatePerStart     float64 `json:"keysBeyondCreatePerStart"`
	BeyondCreatePerStartNoEvents float64 `json:"beyondCreatePerStartWithoutEvents"`
	EventTransactionsPerStart    float64 `json:"eventTransactionsPerStart"`
	// LeaseWritesPerSecond and DigestWritesPerSecond are the heartbeats'
	// writes: Lease updates and commits of the servers' heartbeat digests.
	LeaseWritesPerSecond  float64 `json:"leaseWritesPerSecond"`
	DigestWritesPerSecond float64 `json:"digestWritesPerSecond"`
	NodeWrites            int     `json:"nodeWrites"`
	// CeilingStartsPerSecond is etcd's write ceiling on this machine
	// divided by the writes one start costs (its create included).
	CeilingStartsPerSecond float64 `json:"ceilingStartsPerSecond"`
}

// ChurnResult is the lifecycle churn.
type ChurnResult struct {
	Operations int                     `json:"operations"`
	PerMinute  int                     `json:"perMinute"`
	Duration   string                  `json:"duration"`
	ByKind     map[string]LatencyStats `json:"requestToStateByKind"`
	All        LatencyStats            `json:"requestToState"`
	Failed     map[string]int          `json:"failed,omitempty"`
}

// NodeLossResult is one node-loss scenario.
type NodeLossResult struct {
	Nodes    int          `json:"nodes"`
	VMs      int          `json:"vms"`
	Recovery LatencyStats `json:"failureToRunningElsewhere"`
}

// Target is one goal of issue 7 and whether the run met it.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// sample is one VM's latency, stamped with when its create was sent.
type sample struct {
	at time.Time
	d  time.Duration
}

// series is a named list of samples, for the plot.
type series struct {
	name string
	s    sample
}

func seriesOf(name string, ss []sample) []series {
	out := make([]series, len(ss))
	for i, s := range ss {
		out[i] = series{name: name, s: s}
	}
	return out
}

func durations(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.d
	}
	return out
}

func tookOf(cs []created) []time.Duration {
	out := make([]time.Duration, len(cs))
	for i, c := range cs {
		out[i] = c.took
	}
	return out
}

// throughput is VMs per second from the first create to the last Running.
func throughput(cs []created, ss []sample) float64 {
	if len(cs) == 0 {
		return 0
	}
	first := cs[0].at
	var last time.Time
	for i, s := range ss {
		if cs[i].at.Before(first) {
			first = cs[i].at
		}
		if end := s.at.Add(s.d); end.After(last) {
			last = end
		}
	}
	return float64(len(cs)) / last.Sub(first).Seconds()
}

func stats(ds []time.Duration) LatencyStats {
	if len(ds) == 0 {
		return LatencyStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) float64 {
		i := min(len(s)-1, int(float64(len(s))*p))
		return ms(s[i])
	}
	return LatencyStats{N: len(s), P50: pct(0.50), P95: pct(0.95), P99: pct(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newReport(cfg Config) *Report {
	return &Report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Config: ReportConfig{Nodes: cfg.Nodes, VMs: cfg.VMs, PacedVMs: cfg.PacedVMs, PacedRate: cfg.PacedRate,
			Concurrency: cfg.Concurrency, WriteStarts: cfg.WriteStarts, ChurnPerMinute: cfg.ChurnPerMinute, ChurnDuration: cfg.ChurnDuration.String()},
	}
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemoryGiB = kb / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// evaluate compares the run with issue 7's targets.
func (r *Report) evaluate() {
	add := func(name, goal, measured string, met bool) {
		r.Targets = append(r.Targets, Target{Name: name, Goal: goal, Measured: measured, Met: met})
	}
	if b := r.Bulk; b != nil {
		add("bulk start throughput", "≥ 1000 VMs/s", fmt.Sprintf("%.0f VMs/s", b.Throughput), b.Throughput >= 1000)
	}
	if p := r.Paced; p != nil {
		add(fmt.Sprintf("create-to-Running p50 at %.0f VMs/s", p.OfferedRate), "< 100 ms", fmt.Sprintf("%.0f ms", p.Latency.P50), p.Latency.P50 < 100)
		add(fmt.Sprintf("create-to-Running p99 at %.0f VMs/s", p.OfferedRate), "< 300 ms", fmt.Sprintf("%.0f ms", p.Latency.P99), p.Latency.P99 < 300)
		add(fmt.Sprintf("API write p99 at %.0f VMs/s", p.OfferedRate), "< 10 ms", fmt.Sprintf("%.1f ms", p.APIWrite.P99), p.APIWrite.P99 < 10)
	}
	if s := r.Steady; s != nil {
		add("idle server CPU", "< 2% of one core", fmt.Sprintf("%.2f%%", s.ServerCPUPercent), s.ServerCPUPercent < 2)
		add(fmt.Sprintf("server RSS at %d VMs", s.VMs), "< 300 MiB", fmt.Sprintf("%.0f MiB (%.1f KiB/VM)", s.ServerRSSMiB, s.ServerRSSKiBPerVM), s.ServerRSSMiB < 300)
	}
	if w := r.Writes; w != nil {
		add("etcd writes (transactions) per start beyond the create", "≤ 3",
			fmt.Sprintf("%.3f (keys: %.2f, %.2f without events)", w.BeyondCreatePerStart, w.KeysBeyondCreatePerStart, w.BeyondCreatePerStartNoEvents), w.BeyondCreatePerStart <= 3)
	}
	if b := r.Bulk; b != nil {
		add(fmt.Sprintf("API write p99 at saturation (%d clients)", r.Config.Concurrency), "< 10 ms", fmt.Sprintf("%.1f ms", b.APIWrite.P99), b.APIWrite.P99 < 10)
	}
	for _, n := range r.NodeLoss {
		add(fmt.Sprintf("%d node(s) lost (%d VMs): all back", n.Nodes, n.VMs), "≤ 12 s", fmt.Sprintf("max %.1f s", n.Recovery.Max/1000), n.Recovery.Max <= 12000)
	}
}

// Write saves the report as report.json, report.md and latency.png in dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.Markdown("latency.png")), 0o644); err != nil {
		return err
	}
	if len(r.samples) == 0 {
		return nil
	}
	return r.plot(filepath.Join(dir, "latency.png"))
}

// Markdown renders the report; plotPath is the plot's path from the page.
func (r *Report) Markdown(plotPath string) string {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("Run %s on %s (%d cores, %.0f GiB, Linux %s, %s): %d VMs on %d simulated nodes, `vigil server` with embedded etcd, fsync on.",
		r.Date, r.Machine.CPU, r.Machine.Cores, r.Machine.MemoryGiB, r.Machine.Kernel, r.Machine.Go, r.Config.VMs, r.Config.Nodes)
	p("")
	p("| target | goal | measured | met |")
	p("|---|---|---|---|")
	for _, t := range r.Targets {
		met := "no"
		if t.Met {
			met = "yes"
		}
		p("| %s | %s | %s | %s |", t.Name, t.Goal, t.Measured, met)
	}
	p("")
	lat := func(l LatencyStats) string {
		return fmt.Sprintf("p50 %.0f ms, p95 %.0f ms, p99 %.0f ms, max %.0f ms (n=%d)", l.P50, l.P95, l.P99, l.Max, l.N)
	}
	if x := r.Paced; x != nil {
		p("**Paced start** (%d VMs offered at %.0f/s): create-to-Running %s; create request %s; %.0f VMs/s.", x.VMs, x.OfferedRate, lat(x.Latency), lat(x.APIWrite), x.Throughput)
		p("")
	}
	if x := r.Bulk; x != nil {
		p("**Bulk start** (%d VMs, %d clients): %.0f VMs/s; create-to-Running %s; create request %s; CPU per start: server %.2f ms, harness %.2f ms.", x.VMs, r.Config.Concurrency, x.Throughput, lat(x.Latency), lat(x.APIWrite), x.ServerCPUMsPerStart, x.HarnessCPUMsPerStart)
		p("")
	}
	if x := r.Steady; x != nil {
		p("**Steady state** (%d VMs Running, sampled %s after a rest of %s): server CPU %.2f%% of one core, RSS %.0f MiB (%.1f KiB per VM, embedded etcd included); the %d simulated agents, in the harness process, %.1f%%. During the rest, which compacts the bulk start's etcd history, the server used %.2f%%.",
			x.VMs, x.Window, x.Settle, x.ServerCPUPercent, x.ServerRSSMiB, x.ServerRSSKiBPerVM, r.Config.Nodes, x.AgentsCPUPercent, x.SettleCPUPercent)
		p("")
	}
	if x := r.Writes; x != nil {
		kinds := make([]string, 0, len(x.PerStart))
		for k := range x.PerStart {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%s %.2f", k, x.PerStart[k])
		}
		p("**Writes per start** (%d starts, counted by watching every resource): %.3f etcd writes (transactions, i.e. revisions) beyond the user's create, of which the Events' own %.3f; %.2f keys written (%s; VirtualMachine excludes the create), %.2f without events. Heartbeats: %.1f Lease writes/s and %.1f digest commits/s. etcd's ceiling here (%d small writes/s) allows %.0f starts/s at this cost.",
			x.Starts, x.BeyondCreatePerStart, x.EventTransactionsPerStart, x.KeysBeyondCreatePerStart, strings.Join(parts, ", "), x.BeyondCreatePerStartNoEvents, x.LeaseWritesPerSecond, x.DigestWritesPerSecond, etcdCeiling, x.CeilingStartsPerSecond)
		p("")
	}
	if x := r.Churn; x != nil {
		kinds := make([]string, 0, len(x.ByKind))
		for k := range x.ByKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		p("**Churn** (%d operations at %d a minute for %s), request to new state:", x.Operations, x.PerMinute, x.Duration)
		p("")
		for _, k := range kinds {
			p("- %s: %s", k, lat(x.ByKind[k]))
		}
		p("- all: %s", lat(x.All))
		if len(x.Failed) > 0 {
			p("- failed: %v", x.Failed)
		}
		p("")
	}
	for _, n := range r.NodeLoss {
		p("**Node loss** (%d node(s), %d VMs, default HA timings): failure to Running elsewhere %s.", n.Nodes, n.VMs, lat(n.Recovery))
		p("")
	}
	if len(r.samples) > 0 {
		p("![create-to-Running latency over time](%s)", plotPath)
	}
	return b.String()
}

// plot draws create-to-Running latency against the time each create was
// sent, one colour per phase.
func (r *Report) plot(path string) error {
	pl := plot.New()
	pl.Title.Text = "create-to-Running latency"
	pl.X.Label.Text = "seconds since the first create"
	pl.Y.Label.Text = "ms"
	t0 := r.samples[0].s.at
	for _, s := range r.samples {
		if s.s.at.Before(t0) {
			t0 = s.s.at
		}
	}
	byName := map[string]plotter.XYs{}
	var names []string
	for _, s := range r.samples {
		if _, ok := byName[s.name]; !ok {
			names = append(names, s.name)
		}
		byName[s.name] = append(byName[s.name], plotter.XY{X: s.s.at.Sub(t0).Seconds(), Y: ms(s.s.d)})
	}
	colours := []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	for i, n := range names {
		sc, err := plotter.NewScatter(byName[n])
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = colours[i%len(colours)]
		sc.GlyphStyle.Radius = vg.Points(1)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		pl.Add(sc)
		pl.Legend.Add(n+" start", sc)
	}
	pl.Legend.Top = true
	return pl.Save(8*vg.Inch, 4*vg.Inch, path)
}
