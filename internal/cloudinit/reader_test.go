package cloudinit_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
)

// This file is an ISO 9660 reader written for the tests, independently of
// the writer: it walks the volume descriptors, checks every both-endian
// field, the path tables, the dates and the extents, and returns what a
// reader of each directory tree sees.

const sector = 2048

// volume is one directory tree of an image: the primary (ISO 9660) one or
// the Joliet one.
type volume struct {
	label string
	files map[string]string // identifier as recorded (Joliet: decoded) -> contents
}

// image is what readISO finds.
type image struct {
	primary, joliet *volume
	sectors         int
}

// readISO parses img, returning an error for anything a strict reader
// would refuse.
func readISO(img []byte) (*image, error) {
	if len(img) == 0 || len(img)%sector != 0 {
		return nil, fmt.Errorf("image of %d bytes is not whole sectors", len(img))
	}
	im := &image{sectors: len(img) / sector}
	for s := 16; ; s++ {
		if (s+1)*sector > len(img) {
			return nil, fmt.Errorf("no volume descriptor set terminator")
		}
		d := img[s*sector : (s+1)*sector]
		if string(d[1:6]) != "CD001" || d[6] != 1 {
			return nil, fmt.Errorf("sector %d: not a volume descriptor", s)
		}
		switch d[0] {
		case 255:
			if im.primary == nil {
				return nil, fmt.Errorf("no primary volume descriptor")
			}
			return im, nil
		case 1:
			v, err := readVolume(img, d, false)
			if err != nil {
				return nil, fmt.Errorf("primary volume descriptor: %w", err)
			}
			im.primary = v
		case 2:
			if esc := string(d[88:91]); esc != "%/E" && esc != "%/C" && esc != "%/@" {
				return nil, fmt.Errorf("supplementary volume descriptor without Joliet escape (%q)", esc)
			}
			v, err := readVolume(img, d, true)
			if err != nil {
				return nil, fmt.Errorf("joliet volume descriptor: %w", err)
			}
			im.joliet = v
		default:
			return nil, fmt.Errorf("sector %d: unexpected volume descriptor type %d", s, d[0])
		}
	}
}

func both32(b []byte) (uint32, error) {
	le, be := binary.LittleEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if le != be {
		return 0, fmt.Errorf("both-endian field: little %d, big %d", le, be)
	}
	return le, nil
}

func both16(b []byte) (uint16, error) {
	le, be := binary.LittleEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	if le != be {
		return 0, fmt.Errorf("both-endian field: little %d, big %d", le, be)
	}
	return le, nil
}

func decodeUCS2(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("odd UCS-2 length %d", len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// The fixed dates the writer must use.
var (
	wantVolumeDate = []byte("2000010100000000\x00")
	wantRecordDate = []byte{100, 1, 1, 0, 0, 0, 0}
)

func readVolume(img, d []byte, joliet bool) (*volume, error) {
	size, err := both32(d[80:])
	if err != nil {
		return nil, fmt.Errorf("volume space size: %w", err)
	}
	if int(size)*sector != len(img) {
		return nil, fmt.Errorf("volume space size %d sectors, image has %d", size, len(img)/sector)
	}
	for _, f := range []struct {
		name string
		off  int
		want uint16
	}{{"volume set size", 120, 1}, {"volume sequence number", 124, 1}, {"logical block size", 128, sector}} {
		v, err := both16(d[f.off:])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if v != f.want {
			return nil, fmt.Errorf("%s %d, want %d", f.name, v, f.want)
		}
	}
	for name, off := range map[string]int{"creation": 813, "modification": 830, "effective": 864} {
		if !bytes.Equal(d[off:off+17], wantVolumeDate) {
			return nil, fmt.Errorf("%s date %q, want the fixed one", name, d[off:off+17])
		}
	}
	if d[881] != 1 {
		return nil, fmt.Errorf("file structure version %d", d[881])
	}

	var label string
	if joliet {
		if label, err = decodeUCS2(d[40:72]); err != nil {
			return nil, fmt.Errorf("volume id: %w", err)
		}
	} else {
		label = string(d[40:72])
	}
	label = strings.TrimRight(label, " ")

	root := d[156:190]
	if root[0] != 34 || root[32] != 1 || root[33] != 0 || root[25]&2 == 0 {
		return nil, fmt.Errorf("bad root directory record % x", root)
	}
	rootExtent, err := both32(root[2:])
	if err != nil {
		return nil, fmt.Errorf("root extent: %w", err)
	}
	rootLen, err := both32(root[10:])
	if err != nil {
		return nil, fmt.Errorf("root length: %w", err)
	}
	if rootLen == 0 || rootLen%sector != 0 || int(rootExtent)*sector+int(rootLen) > len(img) {
		return nil, fmt.Errorf("root directory at sector %d, %d bytes, outside the image", rootExtent, rootLen)
	}

	// Path tables: type L little-endian, type M big-endian; both hold the
	// root alone, pointing at the root's extent.
	ptLen, err := both32(d[132:])
	if err != nil {
		return nil, fmt.Errorf("path table size: %w", err)
	}
	if ptLen != 10 {
		return nil, fmt.Errorf("path table size %d, want 10 (the root alone)", ptLen)
	}
	for _, pt := range []struct {
		name  string
		loc   uint32
		order binary.ByteOrder
	}{
		{"L path table", binary.LittleEndian.Uint32(d[140:]), binary.LittleEndian},
		{"M path table", binary.BigEndian.Uint32(d[148:]), binary.BigEndian},
	} {
		if int(pt.loc+1)*sector > len(img) {
			return nil, fmt.Errorf("%s at sector %d, outside the image", pt.name, pt.loc)
		}
		e := img[int(pt.loc)*sector:]
		if e[0] != 1 || e[8] != 0 || pt.order.Uint32(e[2:]) != rootExtent || pt.order.Uint16(e[6:]) != 1 {
			return nil, fmt.Errorf("%s entry % x does not name the root at %d", pt.name, e[:10], rootExtent)
		}
	}

	files, err := readDir(img, img[int(rootExtent)*sector:int(rootExtent)*sector+int(rootLen)], rootExtent, joliet)
	if err != nil {
		return nil, err
	}
	return &volume{label: label, files: files}, nil
}

// readDir reads a root directory: ".", "..", then files in ascending
// identifier order.
func readDir(img, dir []byte, self uint32, joliet bool) (map[string]string, error) {
	files := map[string]string{}
	var prev []byte
	n := 0
	for off := 0; off < len(dir) && dir[off] != 0; n++ {
		rl := int(dir[off])
		if rl < 34 || off+rl > len(dir) || rl%2 != 0 {
			return nil, fmt.Errorf("directory record at %d: bad length %d", off, rl)
		}
		r := dir[off : off+rl]
		off += rl
		idLen := int(r[32])
		if 33+idLen > rl {
			return nil, fmt.Errorf("directory record at %d: identifier overruns the record", off)
		}
		id := r[33 : 33+idLen]
		extent, err := both32(r[2:])
		if err != nil {
			return nil, fmt.Errorf("extent of %q: %w", id, err)
		}
		length, err := both32(r[10:])
		if err != nil {
			return nil, fmt.Errorf("length of %q: %w", id, err)
		}
		if seq, err := both16(r[28:]); err != nil || seq != 1 {
			return nil, fmt.Errorf("volume sequence number of %q: %d %v", id, seq, err)
		}
		if !bytes.Equal(r[18:25], wantRecordDate) {
			return nil, fmt.Errorf("%q recorded at %v, want the fixed date", id, r[18:25])
		}
		if n < 2 {
			if idLen != 1 || id[0] != byte(n) || r[25]&2 == 0 || extent != self {
				return nil, fmt.Errorf("record %d is not the root's %q entry", n, []string{".", ".."}[n])
			}
			continue
		}
		if r[25] != 0 {
			return nil, fmt.Errorf("%q has flags %#x, want a plain file", id, r[25])
		}
		if prev != nil && bytes.Compare(prev, id) >= 0 {
			return nil, fmt.Errorf("%q after %q: records out of order", id, prev)
		}
		prev = id
		if int(extent)*sector+int(length) > len(img) || extent < 16 {
			return nil, fmt.Errorf("%q at sector %d, %d bytes, outside the image", id, extent, length)
		}
		name := string(id)
		if joliet {
			if name, err = decodeUCS2(id); err != nil {
				return nil, fmt.Errorf("name % x: %w", id, err)
			}
		}
		files[name] = string(img[int(extent)*sector : int(extent)*sector+int(length)])
	}
	return files, nil
}
