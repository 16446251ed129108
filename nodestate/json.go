package nodestate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Save writes s as indented JSON with Version set to SchemaVersion. s itself
// is not modified.
func Save(w io.Writer, s *Snapshot) error {
	if s == nil {
		return errors.New("save snapshot: nil snapshot")
	}
	c := *s
	c.Version = SchemaVersion
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	return nil
}

// DefaultMaxSnapshotSize bounds the snapshot Load reads (64 MiB): a node
// with 10,000 Services snapshots to a few MiB, and decoding takes several
// times the file's size in memory, so a huge or endless input (/dev/zero)
// is refused with a clear error instead of exhausting memory.
const DefaultMaxSnapshotSize = 64 << 20

// LoadFile reads a snapshot file written by Save (`twill snapshot -o FILE`),
// up to DefaultMaxSnapshotSize bytes. Errors name the file and, where it
// helps, the line, column and field.
func LoadFile(path string) (*Snapshot, error) {
	return LoadFileMax(path, DefaultMaxSnapshotSize)
}

// LoadFileMax is LoadFile with another size limit (bytes, > 0).
func LoadFileMax(path string, max int64) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %w", err)
	}
	defer f.Close()
	return LoadMax(f, path, max)
}

// ErrTooLarge is wrapped by Load's error for an input above its limit.
var ErrTooLarge = errors.New("input too large")

// Load reads a snapshot written by Save. source names the input in errors
// (a file name, or "stdin").
//
// Every error starts with source and says what is wrong and where:
//   - a JSON syntax error or a truncated file: "FILE: line L, column C: ...";
//   - a value of the wrong type: "FILE: line L, column C: field "routes[3].dst": ...";
//   - an empty file, an array or an object without "version": not a snapshot;
//   - a version newer than SchemaVersion: written by a newer twill, upgrade.
func Load(r io.Reader, source string) (*Snapshot, error) {
	return LoadMax(r, source, DefaultMaxSnapshotSize)
}

// LoadMax is Load reading at most max bytes (> 0); a longer input is an
// error wrapping ErrTooLarge that says how to raise the limit.
func LoadMax(r io.Reader, source string, max int64) (*Snapshot, error) {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", source, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d MiB, not a snapshot twill wrote? (a real one is a few MiB; raise the limit with --max-snapshot-size MiB)", source, ErrTooLarge, max>>20)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty file, not a twill snapshot (write one with 'twill snapshot -o FILE')", source)
	}
	// Pass 1: syntax, shape and version, with absolute error offsets.
	var probe any
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, syntaxError(source, data, err)
	}
	top, ok := probe.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a twill snapshot: the top level is %s, want an object with a \"version\" field", source, jsonKind(probe))
	}
	if err := checkVersion(source, top); err != nil {
		return nil, err
	}
	// Pass 2: typed decode that knows the path and position of every value.
	var s Snapshot
	d := &locatedDecoder{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	if err := d.value(reflectValueOf(&s), ""); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return &s, nil
}

// checkVersion accepts 1..SchemaVersion.
func checkVersion(source string, top map[string]any) error {
	raw, ok := top["version"]
	if !ok {
		return fmt.Errorf("%s: not a twill snapshot: no \"version\" field (a snapshot starts with {\"version\": %d, ...}; write one with 'twill snapshot -o FILE')", source, SchemaVersion)
	}
	f, ok := raw.(float64)
	if !ok || f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return fmt.Errorf("%s: field \"version\": want a whole number, got %s", source, jsonKind(raw))
	}
	v := int(f)
	switch {
	case v > SchemaVersion:
		return fmt.Errorf("%s: snapshot version %d was written by a newer twill; this build reads version %d: upgrade twill", source, v, SchemaVersion)
	case v < 1:
		return fmt.Errorf("%s: snapshot version %d is not valid; this build reads version %d", source, v, SchemaVersion)
	}
	return nil
}

// syntaxError turns an error of json.Unmarshal over the whole input into a
// located one.
func syntaxError(source string, data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Offset counts the bytes read including the offending one.
		line, col := lineCol(data, se.Offset-1)
		msg := se.Error()
		if strings.Contains(msg, "unexpected end") {
			return fmt.Errorf("%s: line %d, column %d: truncated: the JSON ends before the snapshot is complete (was the file cut off? capture it again)", source, line, col)
		}
		return fmt.Errorf("%s: line %d, column %d: invalid JSON: %s", source, line, col, strings.TrimPrefix(msg, "json: "))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: truncated: the JSON ends before the snapshot is complete (was the file cut off? capture it again)", source)
	}
	return fmt.Errorf("%s: invalid JSON: %w", source, err)
}

// lineCol converts a byte offset into a 1-based line and column (in bytes).
func lineCol(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// jsonKind names the JSON kind of a value decoded into any.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}
