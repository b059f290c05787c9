package v1

import "testing"

func TestCompareResourceVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		cmp  int
		ok   bool
	}{
		{"5", "7", -1, true},
		{"7", "5", 1, true},
		{"7", "7", 0, true},
		{"10", "9", 1, true}, // numeric, not lexical
		{"", "7", 0, false},
		{"7", "abc", 0, false},
		{"-1", "7", 0, false},
	} {
		cmp, ok := CompareResourceVersions(tc.a, tc.b)
		if cmp != tc.cmp || ok != tc.ok {
			t.Errorf("CompareResourceVersions(%q, %q) = %d, %v; want %d, %v", tc.a, tc.b, cmp, ok, tc.cmp, tc.ok)
		}
	}
}
