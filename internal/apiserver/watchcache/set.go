package watchcache

import (
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// Set is a small immutable string map, as an Entry keeps its labels and
// selectable fields: keys and values alternate, sorted by key. It takes a
// third of the memory of a Go map of a few entries, and selectors match
// it as they match a map (it implements labels.Labels and fields.Fields).
type Set []string

var (
	_ labels.Labels = Set(nil)
	_ fields.Fields = Set(nil)
)

// NewSet returns the Set of m (nil when m is empty).
func NewSet(m map[string]string) Set {
	if len(m) == 0 {
		return nil
	}
	s := make(Set, 0, 2*len(m))
	for k, v := range m {
		s = append(s, k, v)
	}
	// An insertion sort of the pairs: there are few, and it allocates nothing.
	for i := 2; i < len(s); i += 2 {
		for j := i; j > 0 && s[j] < s[j-2]; j -= 2 {
			s[j], s[j+1], s[j-2], s[j-1] = s[j-2], s[j-1], s[j], s[j+1]
		}
	}
	return s
}

// Lookup returns the value of key and whether s has it.
func (s Set) Lookup(key string) (string, bool) {
	lo, hi := 0, len(s)/2
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		switch c := strings.Compare(s[2*mid], key); {
		case c == 0:
			return s[2*mid+1], true
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return "", false
}

// Has reports whether s has key.
func (s Set) Has(key string) bool {
	_, ok := s.Lookup(key)
	return ok
}

// Get returns the value of key ("" when s does not have it).
func (s Set) Get(key string) string {
	v, _ := s.Lookup(key)
	return v
}

// Len returns the number of keys.
func (s Set) Len() int { return len(s) / 2 }

// Map returns s as a map.
func (s Set) Map() map[string]string {
	m := make(map[string]string, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		m[s[i]] = s[i+1]
	}
	return m
}

// String returns s as labels.Set and fields.Set print themselves:
// key=value pairs, sorted, comma-separated.
func (s Set) String() string {
	var b strings.Builder
	for i := 0; i+1 < len(s); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i])
		b.WriteByte('=')
		b.WriteString(s[i+1])
	}
	return b.String()
}
