package qemu

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// An image is a name inside the node's image directory (--image-dir): a
// disk image file, or a directory holding a kernel, an initrd and disk
// images. Nothing is pulled from a registry.

func (im fsImages) File(image, path string) (string, error) {
	root, err := im.root(image)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, notFound(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("image %q is the file %s, not a directory holding %s", image, root, path)
	}
	rel := strings.TrimPrefix(path, "/")
	if rel == "" {
		return "", fmt.Errorf("image %q: %s is not a regular file", image, root)
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("%q is not a path inside image %q", path, image)
	}
	file := filepath.Join(root, rel)
	if err := regular(file); err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	return file, nil
}

// diskExts are the names a disk image in an image directory may have.
var diskExts = []string{".img", ".qcow2", ".raw", ".iso"}

func (im fsImages) Disk(image, path string) (string, string, error) {
	root, err := im.root(image)
	if err != nil {
		return "", "", err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return "", "", fmt.Errorf("image %q: %w", image, notFound(err))
	}
	file := root
	switch {
	case !fi.IsDir() && path != "":
		return "", "", fmt.Errorf("image %q is a file: it has no path %q inside", image, path)
	case fi.IsDir() && path != "":
		rel := strings.TrimPrefix(path, "/")
		if !filepath.IsLocal(rel) {
			return "", "", fmt.Errorf("%q is not a path inside image %q", path, image)
		}
		file = filepath.Join(root, rel)
	case fi.IsDir():
		entries, err := os.ReadDir(root)
		if err != nil {
			return "", "", fmt.Errorf("image %q: %w", image, err)
		}
		var disks []string
		for _, e := range entries {
			if slices.Contains(diskExts, filepath.Ext(e.Name())) && !e.IsDir() {
				disks = append(disks, e.Name())
			}
		}
		if len(disks) != 1 {
			return "", "", fmt.Errorf("image %q holds %d disk images (%s): name one with containerDisk.path",
				image, len(disks), strings.Join(disks, ", "))
		}
		file = filepath.Join(root, disks[0])
	}
	if err := regular(file); err != nil {
		return "", "", fmt.Errorf("image %q: %w", image, err)
	}
	format, err := diskFormat(file)
	if err != nil {
		return "", "", fmt.Errorf("image %q: %w", image, err)
	}
	return file, format, nil
}

// diskFormat tells qcow2 from raw by the qcow2 magic.
func diskFormat(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	if bytes.Equal(magic, []byte("QFI\xfb")) {
		return "qcow2", nil
	}
	return "raw", nil
}

func regular(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return notFound(err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", file)
	}
	return nil
}

func notFound(err error) error {
	if pe, ok := err.(*os.PathError); ok && os.IsNotExist(err) {
		return fmt.Errorf("%s does not exist", pe.Path)
	}
	return err
}
