package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vigil-vm/vigil/internal/driver"
)

// store keeps the records of a node's guests. Its methods are safe for
// concurrent use; a store's lock, if any, is a leaf.
type store interface {
	// save writes a guest's record, replacing the one saved before.
	save(rec *record) error
	// load reads a guest's record; a guest with none gives driver.ErrNotFound.
	load(id string) (record, error)
	// remove deletes a guest's record; one that is already gone is no error.
	remove(id string) error
	// list returns the ids of the saved records, in no particular order.
	list() ([]string, error)
}

// fileStore keeps each record in <dir>/<id>.json, replaced atomically, so
// that guests outlive the process.
type fileStore struct{ dir string }

func newFileStore(dir string) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &fileStore{dir: dir}, nil
}

func (s *fileStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

func (s *fileStore) save(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// A temporary file of its own (not <id>.json.tmp): two Drivers that
	// save one guest at once must not write into each other's file.
	f, err := os.CreateTemp(s.dir, rec.ID+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path(rec.ID))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

func (s *fileStore) load(id string) (record, error) {
	var rec record
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return rec, fmt.Errorf("sim runtime: guest %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("sim runtime: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("sim runtime: corrupt state of guest %s: %w", id, err)
	}
	if rec.ID != id {
		return rec, fmt.Errorf("sim runtime: corrupt state of guest %s: it names guest %q", id, rec.ID)
	}
	return rec, nil
}

func (s *fileStore) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *fileStore) list() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// memStore keeps records in memory, encoded as in a file, so that a
// record never shares memory with a live guest.
type memStore struct {
	mu   sync.Mutex // guards recs; a leaf lock
	recs map[string][]byte
}

func newMemStore() *memStore { return &memStore{recs: map[string][]byte{}} }

func (s *memStore) save(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[rec.ID] = b
	return nil
}

func (s *memStore) load(id string) (record, error) {
	s.mu.Lock()
	b, ok := s.recs[id]
	s.mu.Unlock()
	var rec record
	if !ok {
		return rec, fmt.Errorf("sim runtime: guest %s: %w", id, driver.ErrNotFound)
	}
	err := json.Unmarshal(b, &rec)
	return rec, err
}

func (s *memStore) remove(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, id)
	return nil
}

func (s *memStore) list() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.recs))
	for id := range s.recs {
		ids = append(ids, id)
	}
	return ids, nil
}
