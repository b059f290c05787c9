package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// Journal appends one JSON line per guest start and stop to a file. It is
// safe for concurrent use, and several Journals (other agents in this
// process, or other processes) may append to one file: each line is one
// write to a file opened with O_APPEND, so lines never interleave.
type Journal struct {
	mu sync.Mutex // serialises this Journal's writes and Close; a leaf lock
	f  *os.File
}

// JournalEntry is one line of a journal.
type JournalEntry struct {
	Time time.Time `json:"time"`
	// Event is "start" or "stop".
	Event string `json:"event"`
	// VM is namespace/name of the VMI (the VM it belongs to).
	VM     string `json:"vm"`
	UID    string `json:"uid"`
	Node   string `json:"node"`
	Reason string `json:"reason,omitempty"`
}

// OpenJournal opens (creating) a journal file for appending.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("sim journal: %w", err)
	}
	return &Journal{f: f}, nil
}

// Close closes the journal.
func (j *Journal) Close() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

func (j *Journal) record(t time.Time, event, vm, uid, node, reason string) {
	if j == nil {
		return
	}
	b, _ := json.Marshal(JournalEntry{Time: t, Event: event, VM: vm, UID: uid, Node: node, Reason: reason})
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	_, _ = j.f.Write(b)
}

// Record appends an entry; the watchdog uses it to record the guests it kills.
func (j *Journal) Record(e JournalEntry) { j.record(e.Time, e.Event, e.VM, e.UID, e.Node, e.Reason) }

// ReadJournal reads every entry of a journal file. A line that is not an
// entry (a torn or foreign write) is an error naming the line.
func ReadJournal(path string) ([]JournalEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []JournalEntry
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var e JournalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("sim journal %s: line %d: %w", path, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sim journal %s: %w", path, err)
	}
	return out, nil
}

// Interval is one guest's life: from its start to its stop (zero if it has
// not stopped).
type Interval struct {
	VM, UID, Node string
	Start, Stop   time.Time
}

// Intervals pairs the starts and stops of a journal by UID, in the order
// the UIDs first appear. Entries need not be in time order (several
// writers append to one journal). Should a UID have several starts or
// stops, the earliest of each counts.
func Intervals(entries []JournalEntry) []Interval {
	byUID := map[string]*Interval{}
	var order []string
	for _, e := range entries {
		iv := byUID[e.UID]
		if iv == nil {
			iv = &Interval{VM: e.VM, UID: e.UID, Node: e.Node}
			byUID[e.UID] = iv
			order = append(order, e.UID)
		}
		switch e.Event {
		case "start":
			if iv.Start.IsZero() || e.Time.Before(iv.Start) {
				iv.Start = e.Time
			}
		case "stop":
			if iv.Stop.IsZero() || e.Time.Before(iv.Stop) {
				iv.Stop = e.Time
			}
		}
	}
	out := make([]Interval, 0, len(order))
	for _, uid := range order {
		out = append(out, *byUID[uid])
	}
	return out
}

// Overlap is two instances of one VM that ran at the same time.
type Overlap struct{ A, B Interval }

func (o Overlap) String() string {
	return fmt.Sprintf("VM %s: instance %s on %s [%s, %s] overlaps instance %s on %s [%s, %s]",
		o.A.VM, o.A.UID, o.A.Node, o.A.Start.Format(time.RFC3339Nano), fmtStop(o.A.Stop),
		o.B.UID, o.B.Node, o.B.Start.Format(time.RFC3339Nano), fmtStop(o.B.Stop))
}

func fmtStop(t time.Time) string {
	if t.IsZero() {
		return "running"
	}
	return t.Format(time.RFC3339Nano)
}

// Overlaps returns every pair of instances of one VM whose lives overlap,
// ordered by VM and start. An instance that has not stopped runs until the
// end of time; one that stops exactly when another starts does not overlap
// it.
func Overlaps(ivs []Interval) []Overlap {
	byVM := map[string][]Interval{}
	for _, iv := range ivs {
		byVM[iv.VM] = append(byVM[iv.VM], iv)
	}
	var out []Overlap
	for _, vm := range slices.Sorted(maps.Keys(byVM)) {
		list := byVM[vm]
		slices.SortStableFunc(list, func(a, b Interval) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(list); i++ {
			for k := 0; k < i; k++ {
				prev := list[k]
				if prev.Stop.IsZero() || prev.Stop.After(list[i].Start) {
					out = append(out, Overlap{A: prev, B: list[i]})
				}
			}
		}
	}
	return out
}
