package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/driver"
)

// A guest's state directory, <state-dir>/guests/<id>/, holds:
const (
	recordFile   = "guest.json"  // record: what was started, and its process
	exitFile     = "exit.json"   // the exit, once known
	qmpSocket    = "qmp.sock"    // QMP, relative to QEMU's working directory
	serialSocket = "serial.sock" // the serial console
	consoleLog   = "console.log" // what the guest printed on its console this run
	qemuLog      = "qemu.log"    // QEMU's own stdout and stderr
	seedFile     = "seed.iso"    // the cloud-init NoCloud seed
)

// record is what the driver keeps about a started guest, so that a later
// agent can take it back.
type record struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// PID and StartTime (the process's start in clock ticks since boot,
	// from /proc/PID/stat) identify the QEMU process even after its PID
	// is reused.
	PID        int                                         `json:"pid"`
	StartTime  uint64                                      `json:"startTime"`
	Paused     bool                                        `json:"paused,omitempty"`
	Accel      string                                      `json:"accelerator"`
	Args       []string                                    `json:"args"`
	Interfaces []v1.VirtualMachineInstanceNetworkInterface `json:"interfaces,omitempty"`
	Ports      []v1.PortForward                            `json:"ports,omitempty"`
	Started    time.Time                                   `json:"started"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func readRecord(dir string) (record, error) {
	var r record
	err := readJSON(filepath.Join(dir, recordFile), &r)
	return r, err
}

// readExit returns the recorded exit of a guest, or nil.
func readExit(dir string) (*driver.Exit, error) {
	var e driver.Exit
	err := readJSON(filepath.Join(dir, exitFile), &e)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// procStart returns the start time of process pid (field 22 of
// /proc/PID/stat) and whether it is a zombie.
func procStart(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, false, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return start, f[0] == "Z" || f[0] == "X", nil
}
