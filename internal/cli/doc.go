// Package cli implements the vigil command line: the client verbs in the
// style of kubectl and virtctl (apply, create, get, describe, delete, edit,
// start, stop, restart, pause, unpause, soft-reboot) and the root command
// that the daemon commands (server, agent) plug into.
//
// Each command is a New*Cmd function with an Options struct holding its
// flags, and Complete / Validate / Run methods, as kubectl's commands are.
// Input and output streams and the API client are injected (Streams,
// Factory), never read from globals, so tests run commands in-process.
package cli
