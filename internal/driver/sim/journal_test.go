package sim_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vigil-vm/vigil/internal/driver"
	"github.com/vigil-vm/vigil/internal/driver/sim"
)

func TestJournalStartStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "journal")
		j, err := sim.OpenJournal(path)
		must(t, "OpenJournal", err)
		d := newDriver(t, filepath.Join(dir, "state"), j)
		t0 := time.Now()
		g := start(t, d, "uid-1", map[string]string{sim.AnnotationBootDelay: "1s"}, false)
		sleep(time.Minute)
		must(t, "Shutdown", g.Shutdown(context.Background()))
		must(t, "Close journal", j.Close())
		entries, err := sim.ReadJournal(path)
		must(t, "ReadJournal", err)
		wantEntries := []sim.JournalEntry{
			{Time: t0, Event: "start", VM: "default/uid-1", UID: "uid-1", Node: "node-1"},
			{Time: t0.Add(time.Minute), Event: "stop", VM: "default/uid-1", UID: "uid-1", Node: "node-1", Reason: "Shutdown"},
		}
		if len(entries) != len(wantEntries) {
			t.Fatalf("journal = %+v, want %+v", entries, wantEntries)
		}
		for i := range entries {
			got, w := entries[i], wantEntries[i]
			if !got.Time.Equal(w.Time) || got.Event != w.Event || got.VM != w.VM || got.UID != w.UID || got.Node != w.Node || got.Reason != w.Reason {
				t.Errorf("journal line %d = %+v, want %+v", i+1, got, w)
			}
		}
		ivs := sim.Intervals(entries)
		if len(ivs) != 1 || ivs[0].VM != "default/uid-1" || ivs[0].Node != "node-1" || !ivs[0].Start.Equal(t0) || !ivs[0].Stop.Equal(t0.Add(time.Minute)) {
			t.Errorf("Intervals = %+v", ivs)
		}
	})
}

func TestIntervalsAndOverlaps(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	e := func(s int, event, vm, uid, node string) sim.JournalEntry {
		return sim.JournalEntry{Time: at(s), Event: event, VM: vm, UID: uid, Node: node}
	}
	entries := []sim.JournalEntry{
		// VM a: u1 then u2 back to back (no overlap), then u3 on another
		// node while u2 still runs (overlap), in no time order, and a second
		// stop recorded later for u1 (the earliest counts).
		e(0, "start", "ns/a", "u1", "n1"),
		e(20, "stop", "ns/a", "u2", "n1"),
		e(10, "stop", "ns/a", "u1", "n1"),
		e(10, "start", "ns/a", "u2", "n1"),
		e(15, "start", "ns/a", "u3", "n2"),
		e(12, "stop", "ns/a", "u1", "n1"),
		// VM b: one instance that never stopped, then another that starts
		// later: overlap.
		e(5, "start", "ns/b", "v1", "n1"),
		e(100, "start", "ns/b", "v2", "n2"),
		e(101, "stop", "ns/b", "v2", "n2"),
		// VM c: sequential, other nodes.
		e(0, "start", "ns/c", "w1", "n1"),
		e(1, "stop", "ns/c", "w1", "n1"),
		e(2, "start", "ns/c", "w2", "n2"),
	}
	ivs := sim.Intervals(entries)
	wantIvs := []sim.Interval{
		{VM: "ns/a", UID: "u1", Node: "n1", Start: at(0), Stop: at(10)},
		{VM: "ns/a", UID: "u2", Node: "n1", Start: at(10), Stop: at(20)},
		{VM: "ns/a", UID: "u3", Node: "n2", Start: at(15)},
		{VM: "ns/b", UID: "v1", Node: "n1", Start: at(5)},
		{VM: "ns/b", UID: "v2", Node: "n2", Start: at(100), Stop: at(101)},
		{VM: "ns/c", UID: "w1", Node: "n1", Start: at(0), Stop: at(1)},
		{VM: "ns/c", UID: "w2", Node: "n2", Start: at(2)},
	}
	if fmt.Sprint(ivs) != fmt.Sprint(wantIvs) {
		t.Errorf("Intervals =\n%v\nwant\n%v", ivs, wantIvs)
	}
	overlaps := sim.Overlaps(ivs)
	var got []string
	for _, o := range overlaps {
		got = append(got, o.A.UID+"/"+o.B.UID)
	}
	if strings.Join(got, " ") != "u2/u3 v1/v2" {
		t.Errorf("Overlaps = %v, want u2/u3 v1/v2", got)
	}
	if s := overlaps[1].String(); !strings.Contains(s, "ns/b") || !strings.Contains(s, "running") || !strings.Contains(s, "v2 on n2") {
		t.Errorf("Overlap.String() = %q", s)
	}
	if o := sim.Overlaps(sim.Intervals(entries[9:])); len(o) != 0 {
		t.Errorf("sequential instances overlap: %v", o)
	}
}

// TestJournalShared: several Drivers (agents in one process), on one
// Journal and on Journals of their own opened on the same file, write
// concurrently; every line is whole and every start and stop is there.
func TestJournalShared(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "journal")
	const journals, driversPer, guestsPer = 3, 3, 50
	var drivers []*sim.Driver
	var js []*sim.Journal
	for i := range journals {
		j, err := sim.OpenJournal(path)
		must(t, "OpenJournal", err)
		js = append(js, j)
		for k := range driversPer {
			node := fmt.Sprintf("node-%d-%d", i, k)
			d, err := sim.New(sim.Config{StateDir: filepath.Join(dir, node), Node: node, Journal: j, Persist: k%2 == 0})
			must(t, "New", err)
			drivers = append(drivers, d)
		}
	}
	var wg sync.WaitGroup
	for n, d := range drivers {
		wg.Go(func() {
			ctx := context.Background()
			vm := fmt.Sprintf("vm-%d", n)
			for i := range guestsPer {
				// One VM per Driver, its instances one after another.
				id := fmt.Sprintf("%s-%d", vm, i)
				g, err := d.Start(ctx, driver.Spec{ID: id, Namespace: "default", Name: vm, VMI: newVMI(nil)})
				if err != nil {
					t.Error(err)
					return
				}
				if err := g.Kill(ctx); err != nil {
					t.Error(err)
				}
				if err := g.Remove(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, j := range js {
		must(t, "Close journal", j.Close())
	}
	entries, err := sim.ReadJournal(path)
	must(t, "ReadJournal", err)
	if want := 2 * len(drivers) * guestsPer; len(entries) != want {
		t.Fatalf("journal has %d entries, want %d", len(entries), want)
	}
	ivs := sim.Intervals(entries)
	if len(ivs) != len(drivers)*guestsPer {
		t.Fatalf("%d intervals, want %d", len(ivs), len(drivers)*guestsPer)
	}
	for _, iv := range ivs {
		if iv.Start.IsZero() || iv.Stop.IsZero() || iv.Stop.Before(iv.Start) {
			t.Errorf("interval %+v", iv)
		}
	}
	if o := sim.Overlaps(ivs); len(o) != 0 {
		t.Errorf("sequential instances overlap: %v", o)
	}
}

func TestReadJournalErrors(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-11-28T14:20:01Z","event":"start","vm":"default/web","uid":"u","node":"n"}` + "\n"
	for name, content := range map[string]string{
		"garbage":   good + "not json\n" + good,
		"torn tail": good + good[:30],
		"empty":     good + "\n" + good,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		must(t, "writing", os.WriteFile(path, []byte(content), 0o600))
		if _, err := sim.ReadJournal(path); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: ReadJournal: %v, want an error naming line 2", name, err)
		}
	}
	if _, err := sim.ReadJournal(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("ReadJournal of a missing file: %v, want not-exist", err)
	}
	path := filepath.Join(dir, "ok")
	must(t, "writing", os.WriteFile(path, []byte(good+good), 0o600))
	if entries, err := sim.ReadJournal(path); err != nil || len(entries) != 2 {
		t.Errorf("ReadJournal = %v, %v", entries, err)
	}
}

// TestJournalRecord: Record appends an entry (the watchdog records the
// guests it kills), and a nil Journal records nothing.
func TestJournalRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, err := sim.OpenJournal(path)
	must(t, "OpenJournal", err)
	now := time.Now().UTC()
	j.Record(sim.JournalEntry{Time: now, Event: "stop", VM: "default/web", UID: "u", Node: "n", Reason: "Fenced"})
	must(t, "Close", j.Close())
	entries, err := sim.ReadJournal(path)
	if err != nil || len(entries) != 1 || entries[0].Reason != "Fenced" || !entries[0].Time.Equal(now) {
		t.Errorf("ReadJournal = %+v, %v", entries, err)
	}
	var nj *sim.Journal
	nj.Record(sim.JournalEntry{Event: "stop"})
	must(t, "Close of a nil Journal", nj.Close())
}
