package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
)

// Annotations that script a simulated guest.
const (
	AnnotationBootDelay  = "sim.vigil.dev/boot-delay"
	AnnotationFailStart  = "sim.vigil.dev/fail-start"
	AnnotationRunFor     = "sim.vigil.dev/run-for"
	AnnotationThen       = "sim.vigil.dev/then"
	AnnotationAction     = driver.ActionAnnotation
	AnnotationIgnoreACPI = "sim.vigil.dev/ignore-acpi"
)

// Config configures the simulated runtime of one node.
type Config struct {
	// StateDir holds one state file per guest (required with Persist).
	StateDir string
	// Node is the node's name, recorded in the journal.
	Node string
	// Journal, when set, is appended one line per guest start and stop.
	Journal *Journal
	// Persist keeps guest state in StateDir, so that guests outlive the
	// process: a new Driver on the same StateDir recovers them. Without it
	// (the zero value) guest state lives in the Driver's memory: Close and
	// Recover work on the same Driver, but a new Driver starts empty. Scale
	// runs turn it off when guests need not outlive the process.
	Persist bool
}

// Driver is the simulated runtime.
//
// Lock order: Driver.mu, then a guest's mu, then the leaf locks (the
// memory store's, the journal's). Nothing that holds a guest's mu takes
// Driver.mu.
type Driver struct {
	cfg   Config
	store store

	mu sync.Mutex // guards guests
	// guests holds the guests this Driver hands out (started or recovered,
	// not closed or removed), so that Start and Recover return the same
	// one.
	guests map[string]*guest
}

// New returns a simulated runtime.
func New(cfg Config) (*Driver, error) {
	var st store = newMemStore()
	if cfg.Persist {
		if cfg.StateDir == "" {
			return nil, errors.New("sim runtime: Persist needs a StateDir")
		}
		fs, err := newFileStore(cfg.StateDir)
		if err != nil {
			return nil, fmt.Errorf("sim runtime: %w", err)
		}
		st = fs
	}
	return &Driver{cfg: cfg, store: st, guests: map[string]*guest{}}, nil
}

// Info describes the runtime.
func (d *Driver) Info() driver.Info {
	return driver.Info{Name: "sim", Version: "1", Accelerator: "sim"}
}

// script is a guest's scripted behaviour.
type script struct {
	BootDelay  time.Duration `json:"bootDelay,omitempty"`
	FailStart  bool          `json:"failStart,omitempty"`
	RunFor     time.Duration `json:"runFor,omitempty"`
	Then       string        `json:"then,omitempty"`
	IgnoreACPI bool          `json:"ignoreACPI,omitempty"`
}

func parseScript(ann map[string]string) (script, error) {
	var s script
	var err error
	if v := ann[AnnotationBootDelay]; v != "" {
		if s.BootDelay, err = time.ParseDuration(v); err != nil || s.BootDelay < 0 {
			return s, fmt.Errorf("annotation %s: %q is not a non-negative duration", AnnotationBootDelay, v)
		}
	}
	if v := ann[AnnotationFailStart]; v != "" {
		if s.FailStart, err = strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("annotation %s: %q is not a boolean", AnnotationFailStart, v)
		}
	}
	if v := ann[AnnotationRunFor]; v != "" {
		if s.RunFor, err = time.ParseDuration(v); err != nil || s.RunFor <= 0 {
			return s, fmt.Errorf("annotation %s: %q is not a positive duration", AnnotationRunFor, v)
		}
		switch s.Then = ann[AnnotationThen]; s.Then {
		case "shutdown", "crash", "panic", "reboot":
		default:
			return s, fmt.Errorf("annotation %s: %q is not shutdown, crash, panic or reboot (%s needs it)", AnnotationThen, s.Then, AnnotationRunFor)
		}
	} else if ann[AnnotationThen] != "" {
		return s, fmt.Errorf("annotation %s needs %s", AnnotationThen, AnnotationRunFor)
	}
	if v := ann[AnnotationIgnoreACPI]; v != "" {
		if s.IgnoreACPI, err = strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("annotation %s: %q is not a boolean", AnnotationIgnoreACPI, v)
		}
	}
	return s, nil
}

// record is a guest's persistent state. Times are absolute, so that a
// recovered guest replays what happened while nobody watched.
//
// A guest's life is stages, each with its own clock: the boot (Phase
// Booting, ends BootDelay after it began) and runs (Phase Running, each
// ends RunFor after it began when the script has a run-for). A stage's
// clock runs only while the guest is not paused.
type record struct {
	ID        string    `json:"id"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Script    script    `json:"script"`
	StartedAt time.Time `json:"startedAt"`
	// Phase is the guest's phase as of the last settle.
	Phase driver.Phase `json:"phase"`
	// StageSince is when the current unpaused stretch of the current stage
	// began; zero while paused and once exited.
	StageSince time.Time `json:"stageSince,omitzero"`
	// StageDone is the current stage's clock before StageSince.
	StageDone   time.Duration `json:"stageDone,omitempty"`
	Paused      bool          `json:"paused,omitempty"`
	Hung        bool          `json:"hung,omitempty"`
	Reboots     int           `json:"reboots,omitempty"`
	Exit        *driver.Exit  `json:"exit,omitempty"`
	ActionsDone []string      `json:"actionsDone,omitempty"`
}

// validID reports whether id can name a guest (and its state file).
func validID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\\\x00")
}

// Start starts a simulated guest, or returns the guest the node already
// has for spec.ID.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	if !validID(spec.ID) {
		return nil, &driver.StartError{Reason: v1.ReasonStartFailed, Message: fmt.Sprintf("sim runtime: %q cannot name a guest", spec.ID)}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.guests[spec.ID]; ok {
		return g, nil
	}
	// A guest closed earlier (by this Driver, or by an earlier agent on the
	// same state) is the same guest: adopt it rather than start another
	// instance of it.
	switch rec, err := d.store.load(spec.ID); {
	case err == nil:
		return d.adoptLocked(rec), nil
	case !errors.Is(err, driver.ErrNotFound):
		return nil, &driver.StartError{Reason: v1.ReasonStartFailed, Message: "sim runtime: reading the guest's earlier state: " + err.Error()}
	}
	var ann map[string]string
	if spec.VMI != nil {
		ann = spec.VMI.Annotations
	}
	sc, err := parseScript(ann)
	if err != nil {
		return nil, &driver.StartError{Reason: v1.ReasonStartFailed, Message: err.Error()}
	}
	now := time.Now()
	rec := record{ID: spec.ID, Namespace: spec.Namespace, Name: spec.Name, Script: sc, StartedAt: now,
		Phase: driver.Booting, StageSince: now}
	if spec.Paused && !sc.FailStart {
		// Paused from the start: Running at once with its vCPUs stopped; its
		// run begins when it is resumed. (A guest scripted to fail its start
		// fails it paused or not.)
		rec.Phase, rec.Paused, rec.StageSince = driver.Running, true, time.Time{}
	}
	if err := d.store.save(&rec); err != nil {
		return nil, &driver.StartError{Reason: v1.ReasonStartFailed, Message: "sim runtime: writing the guest's state: " + err.Error()}
	}
	d.cfg.Journal.record(now, "start", spec.Namespace+"/"+spec.Name, spec.ID, d.cfg.Node, "")
	return d.adoptLocked(rec), nil
}

// Recover re-adopts a guest from its saved state, replaying whatever its
// script did since.
func (d *Driver) Recover(ctx context.Context, id string) (driver.Guest, error) {
	if !validID(id) {
		return nil, driver.ErrNotFound
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.guests[id]; ok {
		return g, nil
	}
	rec, err := d.store.load(id)
	if err != nil {
		return nil, err
	}
	return d.adoptLocked(rec), nil
}

// adoptLocked makes a held guest of rec and settles it. d.mu is held.
func (d *Driver) adoptLocked(rec record) *guest {
	g := &guest{d: d, id: rec.ID, rec: rec, changed: make(chan struct{}, 1)}
	d.guests[rec.ID] = g
	g.mu.Lock()
	g.settleLocked(time.Now())
	g.mu.Unlock()
	return g
}

// Guests lists the guests this node has, held or saved, sorted.
func (d *Driver) Guests(ctx context.Context) ([]string, error) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.guests))
	for id := range d.guests {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	saved, err := d.store.list()
	if err != nil {
		return nil, fmt.Errorf("sim runtime: %w", err)
	}
	ids = append(ids, saved...)
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// release forgets a guest that is closed or removed. d.mu is held.
func (d *Driver) releaseLocked(g *guest) {
	if d.guests[g.id] == g {
		delete(d.guests, g.id)
	}
}
