package runstrategy

import (
	"errors"
	"fmt"
)

// ErrRunningAndRunStrategy is returned when a VM sets both spec.running and
// spec.runStrategy.
var ErrRunningAndRunStrategy = errors.New("running and runstrategy are mutually exclusive")

// Effective returns the strategy a VM's spec asks for (section 1.2):
// spec.running true is Always and false is Halted, spec.runStrategy is
// itself, neither is Halted, and both is an error. A strategy Vigil does not
// run (WaitAsReceiver, or any unknown word) is an error too.
func Effective(vm VM) (Strategy, error) {
	switch {
	case vm.Running != nil && vm.RunStrategy != nil:
		return Unknown, ErrRunningAndRunStrategy
	case vm.Running != nil:
		if *vm.Running {
			return Always, nil
		}
		return Halted, nil
	case vm.RunStrategy != nil:
		switch s := *vm.RunStrategy; s {
		case Always, RerunOnFailure, Manual, Halted, Once:
			return s, nil
		default:
			return Unknown, fmt.Errorf("Invalid RunStrategy (%s)", s)
		}
	default:
		return Halted, nil
	}
}

// StrategyWrite is a change of the desired strategy, written to the field the
// VM already uses: spec.runStrategy if it is set, else spec.running (section 3).
type StrategyWrite struct {
	// Strategy is Always or Halted.
	Strategy Strategy
	// UseRunning is true when the VM uses the deprecated spec.running field;
	// then Always is written as running: true and Halted as running: false.
	UseRunning bool
}

func writeStrategy(vm VM, s Strategy) *StrategyWrite {
	return &StrategyWrite{Strategy: s, UseRunning: vm.RunStrategy == nil && vm.Running != nil}
}
