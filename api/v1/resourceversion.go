package v1

import "strconv"

// CompareResourceVersions orders two resourceVersions. Kubernetes clients
// must treat them as opaque; Vigil's are etcd revisions, and its own
// controllers and agents compare them to tell which of two copies of an
// object is newer. It returns -1, 0 or 1, and ok false when either is not
// a revision (then the order is unknown).
func CompareResourceVersions(a, b string) (cmp int, ok bool) {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}
