// Package store keeps Vigil's objects in etcd.
//
// A Store is a thin, typed-error layer over an etcd client: objects are opaque
// byte values under string keys, and an object's version is its etcd
// ModRevision. Writes are compare-and-swap on that revision (Update, Delete
// with a precondition, GuaranteedUpdate); Watch streams changes from a
// revision and reports ErrCompacted when that revision is gone, so callers
// relist. A Compactor removes old revisions on a schedule so that history
// never fills etcd's quota, and StartEmbedded runs a single-member etcd in the
// server process.
//
// The store knows nothing about the objects it holds; the API server encodes,
// validates and decodes them. Only the API server (and the wiring in cmd/)
// imports this package.
package store
