// Package client is the Go client of Vigil's HTTP API: a typed client for
// every resource and lifecycle subresource, streaming watches, and (in
// package client/informer) a list+watch cache that relists after a 410.
//
// Errors from the server are *k8s.io/apimachinery/pkg/api/errors.StatusError
// values, so callers test them with apierrors.IsNotFound, IsConflict and
// the other predicates, exactly as with Kubernetes clients.
//
// The controllers, the node agent, the CLI and the tests all use this
// package; none of them reaches the store directly.
package client
