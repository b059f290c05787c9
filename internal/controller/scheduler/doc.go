// Package scheduler binds pending VMIs to nodes: a Ready, schedulable node
// whose labels match the VMI's nodeSelector and whose free CPU and memory
// (allocatable minus the reservations of the live VMIs bound to it) fit the
// VMI's requests. Among those it picks the least allocated, which spreads
// load. A VMI that fits nowhere gets PodScheduled=False, reason
// Unschedulable, with the count of nodes per reason in the message, and is
// bound as soon as room appears.
//
// A VMI deleted before it was bound never reaches a node: the scheduler
// marks it Failed and releases it.
package scheduler
