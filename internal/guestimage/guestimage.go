// Package guestimage finds the test guest that scripts/build-guest-image.sh
// builds from Debian packages (a kernel, a busybox initramfs and a root
// disk), and lays it out as an image for the QEMU runtime's image
// directory. Tests, make run and vigil server's defaults use it.
package guestimage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Name is the image name the test guest has in an image directory: VMIs
// refer to it as containerDisk or kernelBoot image "vigil-guest".
const Name = "vigil-guest"

// CacheDir is where the build script puts the guest: $VIGIL_GUEST_DIR, or
// ${VIGIL_CACHE:-$HOME/.cache/vigil}/guest, as in scripts/README.md.
func CacheDir() string {
	if d := os.Getenv("VIGIL_GUEST_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("VIGIL_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "vigil")
	}
	return filepath.Join(cache, "guest")
}

// Find returns the directory of a complete guest image: one whose
// manifest, written last by the build, is there.
func Find() (string, error) {
	dir := CacheDir()
	if _, err := os.Stat(filepath.Join(dir, "manifest")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("no test guest image in %s: run make guest-image", dir)
		}
		return "", err
	}
	return dir, nil
}

// ImageDir makes parent an image directory holding the test guest as Name
// (a symbolic link to the cache) and returns it.
func ImageDir(parent string) (string, error) {
	dir, err := Find()
	if err != nil {
		return "", err
	}
	link := filepath.Join(parent, Name)
	if target, err := os.Readlink(link); err == nil && target == dir {
		return parent, nil
	}
	_ = os.Remove(link)
	if err := os.Symlink(dir, link); err != nil {
		return "", fmt.Errorf("linking the test guest into %s: %w", parent, err)
	}
	return parent, nil
}
