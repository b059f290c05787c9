// Package vm is the VM controller: for each VirtualMachine it asks the pure
// runstrategy core what one pass should do (create or delete the VMI,
// release a deleted VM, wait out a crash-loop delay), applies that through
// the API, records an Event for every action and failure, and writes the
// status the core computes when it changed.
package vm
