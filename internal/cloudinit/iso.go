package cloudinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf16"
)

// Label is the volume label cloud-init's NoCloud source looks for.
const Label = "cidata"

// WriteISO writes an ISO 9660 image labelled "cidata" holding user-data,
// meta-data and (if set) network-config to w.
func WriteISO(w io.Writer, s Seed) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	if _, err := w.Write(buildISO(Label, s.files())); err != nil {
		return fmt.Errorf("writing the cloud-init seed image: %w", err)
	}
	return nil
}

// WriteISOFile writes the seed image to path atomically: a temporary file
// in the same directory, synced, then renamed over path. The file has mode
// 0600 (user-data may hold secrets). On error nothing is left behind.
func WriteISOFile(path string, s Seed) (err error) {
	var buf bytes.Buffer
	if err := WriteISO(&buf, s); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing the cloud-init seed: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("writing the cloud-init seed: %w", err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing the cloud-init seed %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("writing the cloud-init seed %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the cloud-init seed %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the cloud-init seed: %w", err)
	}
	return nil
}

// file is one file of the image's root directory.
type file struct {
	name string // as the guest shows it: "user-data"
	data []byte
}

// The image layout, in 2048-byte sectors: 0-15 the (empty) system area,
// then the primary (ISO 9660) and supplementary (Joliet) volume
// descriptors, the terminator, each tree's little- and big-endian path
// tables and root directory, the files' data, which both trees share, and
// padding.
const (
	sector       = 2048
	pvdSector    = 16
	svdSector    = 17
	termSector   = 18
	isoLPath     = 19
	isoMPath     = 20
	jolietLPath  = 21
	jolietMPath  = 22
	isoRoot      = 23
	jolietRoot   = 24
	firstData    = 25
	pathTableLen = 10 // one entry: the root

	// padSectors of zeros end the image, as genisoimage's -pad adds them:
	// Linux's CD-ROM read-ahead can fail on a volume's last sectors, and
	// busybox's findfs/blkid (the test guest's) ignore a device smaller
	// than 64 KiB, so an unpadded seed of 28 sectors is not found by label.
	padSectors = 150
)

// recordingDate is every directory record's date (ECMA-119 9.1.5):
// 2000-01-01 00:00:00 UTC, so the image depends on its contents only.
var recordingDate = [7]byte{100, 1, 1, 0, 0, 0, 0}

// volumeDate is the descriptors' date format (ECMA-119 8.4.26.1) of the
// same instant; noDate means "not specified".
const (
	volumeDate = "2000010100000000\x00"
	noDate     = "0000000000000000\x00"
)

// tree is one of the image's two views of the same files.
type tree struct {
	root         uint32
	lPath, mPath uint32
	id           func(name string) []byte // file identifier of a name
	text         func(s string, n int) []byte
}

var (
	isoTree = tree{root: isoRoot, lPath: isoLPath, mPath: isoMPath, id: isoID, text: isoText}
	// jolietTree: UCS-2 big-endian names and descriptor strings.
	jolietTree = tree{root: jolietRoot, lPath: jolietLPath, mPath: jolietMPath, id: jolietID, text: jolietText}
)

// isoID is the ISO 9660 identifier of a name: upper case, an empty
// extension and version 1 (ECMA-119 7.5.1). The '-' is outside the
// d-characters, as `genisoimage -relaxed-filenames` writes it. Linux's
// isofs, when it does not use Joliet, shows "USER-DATA.;1" as "user-data".
func isoID(name string) []byte { return []byte(strings.ToUpper(name) + ".;1") }

// jolietID is the Joliet identifier: the name in UCS-2BE, without a
// version, as genisoimage writes it.
func jolietID(name string) []byte { return ucs2(name) }

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// isoText is s padded with spaces to n bytes.
func isoText(s string, n int) []byte {
	b := bytes.Repeat([]byte{' '}, n)
	copy(b, s)
	return b
}

// jolietText is s in UCS-2BE padded with UCS-2 spaces to n bytes (an odd
// n ends with a zero byte).
func jolietText(s string, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+1 < n; i += 2 {
		b[i+1] = ' '
	}
	copy(b, ucs2(s))
	return b
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:], v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// dirRecord renders a directory record (ECMA-119 9.1).
func dirRecord(id []byte, extent, size uint32, dir bool) []byte {
	n := 33 + len(id)
	n += n % 2
	r := make([]byte, n)
	r[0] = byte(n)
	both32(r[2:], extent)
	both32(r[10:], size)
	copy(r[18:25], recordingDate[:])
	if dir {
		r[25] = 2
	}
	both16(r[28:], 1) // volume sequence number
	r[32] = byte(len(id))
	copy(r[33:], id)
	return r
}

func sectors(n int) uint32 { return uint32((n + sector - 1) / sector) }

// buildISO lays out the image. The files are small and few: each root
// directory fits in one sector (at most three records of under 64 bytes).
func buildISO(label string, files []file) []byte {
	extents := make([]uint32, len(files))
	next := uint32(firstData)
	for i, f := range files {
		extents[i] = next
		next += sectors(len(f.data))
	}
	total := next + padSectors
	img := make([]byte, int(total)*sector)
	for i, f := range files {
		copy(img[int(extents[i])*sector:], f.data)
	}
	for _, t := range []tree{isoTree, jolietTree} {
		writeRoot(img[t.root*sector:(t.root+1)*sector], t, files, extents)
		writePathTables(img, t)
	}
	writeDescriptor(img[pvdSector*sector:(pvdSector+1)*sector], 1, isoTree, label, total)
	svd := img[svdSector*sector : (svdSector+1)*sector]
	writeDescriptor(svd, 2, jolietTree, label, total)
	copy(svd[88:], "%/E") // UCS-2 level 3

	term := img[termSector*sector:]
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1
	return img
}

// writeRoot renders a tree's root directory: ".", ".." and the files,
// sorted by identifier (ECMA-119 9.3).
func writeRoot(dir []byte, t tree, files []file, extents []uint32) {
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		return bytes.Compare(t.id(files[order[a]].name), t.id(files[order[b]].name)) < 0
	})
	off := copy(dir, dirRecord([]byte{0}, t.root, sector, true))
	off += copy(dir[off:], dirRecord([]byte{1}, t.root, sector, true))
	for _, i := range order {
		off += copy(dir[off:], dirRecord(t.id(files[i].name), extents[i], uint32(len(files[i].data)), false))
	}
}

// writePathTables writes a tree's path tables (ECMA-119 9.4): one entry,
// the root, whose parent is itself.
func writePathTables(img []byte, t tree) {
	l := img[t.lPath*sector:]
	l[0] = 1 // identifier length
	binary.LittleEndian.PutUint32(l[2:], t.root)
	binary.LittleEndian.PutUint16(l[6:], 1)
	m := img[t.mPath*sector:]
	m[0] = 1
	binary.BigEndian.PutUint32(m[2:], t.root)
	binary.BigEndian.PutUint16(m[6:], 1)
}

// writeDescriptor renders a primary (typ 1) or supplementary (typ 2)
// volume descriptor (ECMA-119 8.4, 8.5).
func writeDescriptor(d []byte, typ byte, t tree, label string, total uint32) {
	d[0] = typ
	copy(d[1:6], "CD001")
	d[6] = 1
	copy(d[8:40], t.text("LINUX", 32))
	copy(d[40:72], t.text(label, 32))
	both32(d[80:], total)
	both16(d[120:], 1)      // volume set size
	both16(d[124:], 1)      // volume sequence number
	both16(d[128:], sector) // logical block size
	both32(d[132:], pathTableLen)
	binary.LittleEndian.PutUint32(d[140:], t.lPath)
	binary.BigEndian.PutUint32(d[148:], t.mPath)
	copy(d[156:190], dirRecord([]byte{0}, t.root, sector, true))
	copy(d[190:318], t.text("", 128))      // volume set
	copy(d[318:446], t.text("", 128))      // publisher
	copy(d[446:574], t.text("", 128))      // data preparer
	copy(d[574:702], t.text("VIGIL", 128)) // application
	copy(d[702:739], t.text("", 37))       // copyright file
	copy(d[739:776], t.text("", 37))       // abstract file
	copy(d[776:813], t.text("", 37))       // bibliographic file
	copy(d[813:830], volumeDate)           // creation
	copy(d[830:847], volumeDate)           // modification
	copy(d[847:864], noDate)               // expiration
	copy(d[864:881], volumeDate)           // effective
	d[881] = 1                             // file structure version
}
