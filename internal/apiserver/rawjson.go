package apiserver

import "errors"

// errNotCompact is the raw scanner's one failure: the text is not
// syntactically valid, compact JSON (no whitespace between tokens, nesting
// at most maxDepth deep). Callers then fall back to encoding/json, which
// accepts what is valid and words the error for what is not.
var errNotCompact = errors.New("not compact JSON")

const maxDepth = 10000 // encoding/json's own nesting limit

// rawScanner walks compact JSON without decoding it, checking its syntax on
// the way: the watch cache reads a few members of each stored object and
// copies the rest as it is.
type rawScanner struct {
	b     []byte
	i     int
	depth int
}

// object scans the object at s.i. For each member it calls member with the
// key as written between the quotes (escaped reports a backslash in it),
// with s.i at the first byte of the value; member must scan the value
// (s.value, or s.object for one it reads) and leave s.i just after it.
func (s *rawScanner) object(member func(key []byte, escaped bool) error) error {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return errNotCompact
	}
	if s.depth++; s.depth > maxDepth {
		return errNotCompact
	}
	s.i++
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		start := s.i + 1
		escaped, err := s.str()
		if err != nil {
			return err
		}
		key := s.b[start : s.i-1]
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errNotCompact
		}
		s.i++
		if err := member(key, escaped); err != nil {
			return err
		}
		if s.i >= len(s.b) {
			return errNotCompact
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return errNotCompact
		}
	}
}

// value scans any value at s.i.
func (s *rawScanner) value() error {
	if s.i >= len(s.b) {
		return errNotCompact
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{':
		return s.object(func([]byte, bool) error { return s.value() })
	case c == '[':
		return s.array()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return errNotCompact
}

func (s *rawScanner) array() error {
	if s.depth++; s.depth > maxDepth {
		return errNotCompact
	}
	s.i++ // '['
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := s.value(); err != nil {
			return err
		}
		if s.i >= len(s.b) {
			return errNotCompact
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return errNotCompact
		}
	}
}

// str scans the string at s.i; escaped reports whether it has escapes.
func (s *rawScanner) str() (escaped bool, err error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false, errNotCompact
	}
	for i := s.i + 1; i < len(s.b); i++ {
		for i < len(s.b) && plain[s.b[i]] {
			i++
		}
		if i == len(s.b) {
			break
		}
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return escaped, nil
		case c < 0x20:
			return false, errNotCompact
		case c == '\\':
			escaped = true
			if i+1 >= len(s.b) {
				return false, errNotCompact
			}
			i++
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return false, errNotCompact
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return false, errNotCompact
					}
				}
				i += 4
			default:
				return false, errNotCompact
			}
		}
	}
	return false, errNotCompact
}

// plain marks the bytes a string has as they are: all but the quote, the
// backslash and control characters.
var plain = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *rawScanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return errNotCompact
	}
	s.i += len(lit)
	return nil
}

// number scans a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *rawScanner) number() error {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return errNotCompact
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return errNotCompact
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			return errNotCompact
		}
	}
	s.i = i
	return nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
