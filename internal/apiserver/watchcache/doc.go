// Package watchcache keeps an in-memory copy of every object the API server
// stores, fed by one etcd watch, and serves lists and watches from it, so
// that N watchers (node agents, controllers, CLIs) cost one etcd watch and
// one decode per change instead of N.
//
// Each object is decoded once per change into an Entry: its JSON (with the
// resourceVersion set), its labels, its selectable fields and its owners.
// Watchers receive Entries filtered by their selectors; an object that stops
// matching a watcher's selector is delivered to it as DELETED, one that
// starts matching as ADDED, as Kubernetes does.
//
// A bounded history of recent events per resource lets a watcher resume
// from a resourceVersion; a version older than the history answers ErrGone
// (HTTP 410), and the client relists. Lists wait until the cache has caught
// up with etcd's current revision (WaitFresh), so they are as consistent as
// a read from etcd.
//
// Writes read the object they change from the cache too (Fresh), and make
// it current with a compare-and-swap on its revision. A writer tells the
// cache of its own writes (Wrote), so that it does not read back a copy it
// knows to be older: a compare-and-swap that fails costs etcd a consensus
// round, where a read does not.
package watchcache
