package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/llamago/llamago/llama"
	"github.com/llamago/llamago/llama/engine"
)

// GET /slots lists the slots as llama-server does: whether each serves a request, and
// the tokens of its KV cache (as the engine counts them and as llama.cpp holds them).
func (s *server) slots(w http.ResponseWriter, r *http.Request) error {
	st, err := s.primary.engine.SlotStatuses(r.Context())
	if err != nil {
		return err
	}
	type slotJSON struct {
		ID           int  `json:"id"`
		NCtx         int  `json:"n_ctx"`
		IsProcessing bool `json:"is_processing"`
		CachedTokens int  `json:"n_cached_tokens"`
		KVTokens     int  `json:"n_kv_tokens"`
	}
	out := make([]slotJSON, len(st))
	for i, x := range st {
		out[i] = slotJSON{ID: x.ID, NCtx: s.primary.engine.NCtx(), IsProcessing: x.Active, CachedTokens: x.CachedTokens, KVTokens: x.KVTokens}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// POST /slots/{id}?action=save|restore|erase, as llama-server has it: a slot's KV cache
// saved to, or restored from, a file named in the body ({"filename": "..."}) in the
// directory of -slot-save-path; erase empties the slot. Off without -slot-save-path.
func (s *server) slotAction(w http.ResponseWriter, r *http.Request) error {
	if s.slotDir == "" {
		return &apiError{status: http.StatusNotImplemented, Message: "slot save and restore are off: start the server with -slot-save-path", Type: "not_supported_error"}
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 || id >= s.primary.engine.Slots() {
		return badRequest("id_slot", fmt.Sprintf("slot %q: want 0 to %d", r.PathValue("id"), s.primary.engine.Slots()-1))
	}
	action := r.URL.Query().Get("action")
	if action == "erase" {
		n, err := s.primary.engine.EraseSlot(r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"id_slot": id, "n_erased": n})
		return nil
	}
	if action != "save" && action != "restore" {
		return badRequest("action", fmt.Sprintf("action %q: want save, restore or erase", action))
	}
	var body struct {
		Filename string `json:"filename"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	if err := checkSlotFilename(body.Filename); err != nil {
		return err
	}
	path := filepath.Join(s.slotDir, body.Filename)
	start := time.Now()
	if action == "save" {
		n, size, err := s.saveSlot(r, id, path)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"id_slot": id, "filename": body.Filename, "n_saved": n, "n_written": size,
			"timings": map[string]float64{"save_ms": ms(time.Since(start))}})
		return nil
	}
	// Only a regular file in the directory itself: not a link to somewhere else.
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return &apiError{status: http.StatusNotFound, Message: fmt.Sprintf("no slot file %q", body.Filename), Type: "invalid_request_error"}
	}
	n, err := s.primary.engine.RestoreSlot(r.Context(), id, path)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id_slot": id, "filename": body.Filename, "n_restored": n, "n_read": fi.Size(),
		"timings": map[string]float64{"restore_ms": ms(time.Since(start))}})
	return nil
}

// saveSlot writes the slot to a new file in the directory and renames it to path, so that
// a link already at path is replaced, never followed.
func (s *server) saveSlot(r *http.Request, id int, path string) (tokens int, size int64, err error) {
	tmp, err := os.CreateTemp(s.slotDir, ".slot-*.tmp")
	if err != nil {
		return 0, 0, err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if tokens, err = s.primary.engine.SaveSlot(r.Context(), id, tmp.Name()); err != nil {
		return 0, 0, err
	}
	fi, err := os.Stat(tmp.Name())
	if err != nil {
		return 0, 0, err
	}
	return tokens, fi.Size(), os.Rename(tmp.Name(), path)
}

// checkSlotFilename accepts a plain file name: no directories, no parent, not hidden.
func checkSlotFilename(name string) error {
	if name == "" || len(name) > 255 || name != filepath.Base(name) || !filepath.IsLocal(name) ||
		strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") {
		return badRequest("filename", fmt.Sprintf("invalid slot file name %q: a plain file name in the -slot-save-path directory", name))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func slotError(err error) *apiError {
	switch {
	case errors.Is(err, engine.ErrSlotBusy):
		return &apiError{status: http.StatusConflict, Message: err.Error(), Type: "invalid_request_error"}
	case errors.Is(err, llama.ErrInvalidState):
		return badRequest("filename", err.Error())
	}
	return nil
}
