// Package bench is Vigil's scale harness, behind `vigil bench`: it starts
// a control plane (`vigil server` with embedded etcd, fsync on, as a child
// process so its CPU and memory are its own) and N simulated nodes (agents
// in this process, each with its own client, lease and watch, talking HTTP
// to the server like real agents), drives the scenarios of issue 7, and
// writes a report in JSON, in markdown and as a PNG plot.
//
// Scenarios, in order: paced start (VMs created at a fixed offered rate,
// for latency), bulk start (the rest as fast as the API takes them, for
// throughput), steady state (server CPU and RSS with nothing changing),
// writes per start (every stored write counted by watching every
// resource), lifecycle churn (restarts, stops, starts and guest crashes at
// a fixed rate) and node loss (one node, then five, killed at once, with
// the default HA timings).
//
// Numbers are measured, never asserted here: the report says which
// targets were met.
package bench
