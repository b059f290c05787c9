package store

import (
	"errors"
	"fmt"
)

// Sentinel errors; compare with errors.Is. Every error the Store returns
// for one of these cases wraps the sentinel and names the key.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found the key already there.
	ErrExists = errors.New("already exists")
	// ErrConflict: the key's revision is not the one the write expected.
	ErrConflict = errors.New("conflict: the object has been modified")
	// ErrCompacted: a watch or read asked for a revision etcd has compacted away.
	ErrCompacted = errors.New("requested revision has been compacted")
	// ErrUnavailable: etcd could not be reached or timed out.
	ErrUnavailable = errors.New("storage unavailable")
)

func keyErr(sentinel error, key string) error {
	return fmt.Errorf("%w: %s", sentinel, key)
}

// IsNotFound reports whether err is or wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsConflict reports whether err is or wraps ErrConflict.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsExists reports whether err is or wraps ErrExists.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }
