// Package e2e holds Vigil's end-to-end tests: whole clusters (API server on
// embedded etcd, controllers, node agents with the sim runtime), driven
// through the real API and CLI, in-process and with separate `vigil agent`
// and `vigil server` processes. Every test ends by checking the sim journal:
// no two instances of one VM ever ran at the same time.
package e2e
