package nodestate

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"
)

// locatedDecoder decodes a syntactically valid JSON document into a Go value
// one leaf at a time, so that a value of the wrong type is reported with its
// position and its full path ("routes[3].dst"), which encoding/json alone does
// not give (it has no array indices and no position for text values).
type locatedDecoder struct {
	data []byte
	dec  *json.Decoder
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func reflectValueOf(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// next returns the offset where the next value starts: the decoder consumes
// separators (":" and ",") lazily, so skip them and white space.
func (d *locatedDecoder) next() int64 {
	off := d.dec.InputOffset()
	for off < int64(len(d.data)) && strings.IndexByte(" \t\r\n:,", d.data[off]) >= 0 {
		off++
	}
	return off
}

func (d *locatedDecoder) errorf(start int64, path, format string, args ...any) error {
	line, col := lineCol(d.data, start)
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return fmt.Errorf("line %d, column %d: %s", line, col, msg)
	}
	return fmt.Errorf("line %d, column %d: field %q: %s", line, col, path, msg)
}

// value decodes the next JSON value into v (addressable).
func (d *locatedDecoder) value(v reflect.Value, path string) error {
	t := v.Type()
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshalerType) || pt.Implements(textUnmarshalerType) {
		return d.leaf(v, path)
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map:
	case reflect.Pointer:
		if t.Elem().Kind() != reflect.Struct {
			return d.leaf(v, path)
		}
	default:
		return d.leaf(v, path)
	}
	start := d.next()
	tok, err := d.dec.Token()
	if err != nil {
		return d.errorf(start, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if tok == nil {
		v.SetZero()
		return nil
	}
	want := json.Delim('{')
	if t.Kind() == reflect.Slice {
		want = json.Delim('[')
	}
	if tok != want {
		return d.errorf(start, path, "want %s, got %s", describeType(t), describeToken(tok))
	}
	switch t.Kind() {
	case reflect.Pointer:
		nv := reflect.New(t.Elem())
		if err := d.structBody(nv.Elem(), path); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	case reflect.Struct:
		return d.structBody(v, path)
	case reflect.Slice:
		s := reflect.MakeSlice(t, 0, 0)
		for i := 0; d.dec.More(); i++ {
			e := reflect.New(t.Elem()).Elem()
			if err := d.value(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			s = reflect.Append(s, e)
		}
		if _, err := d.dec.Token(); err != nil {
			return d.errorf(d.next(), path, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		v.Set(s)
		return nil
	default: // map
		if t.Key().Kind() != reflect.String {
			return d.errorf(start, path, "cannot decode a map keyed by %s", t.Key())
		}
		m := reflect.MakeMap(t)
		for d.dec.More() {
			kstart := d.next()
			kt, err := d.dec.Token()
			if err != nil {
				return d.errorf(kstart, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
			}
			key, _ := kt.(string)
			e := reflect.New(t.Elem()).Elem()
			if err := d.value(e, fmt.Sprintf("%s[%q]", path, key)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(key).Convert(t.Key()), e)
		}
		if _, err := d.dec.Token(); err != nil {
			return d.errorf(d.next(), path, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		v.Set(m)
		return nil
	}
}

// structBody decodes the members of an object whose "{" was consumed.
// Unknown members are skipped, as encoding/json does.
func (d *locatedDecoder) structBody(v reflect.Value, path string) error {
	t := v.Type()
	for d.dec.More() {
		kstart := d.next()
		kt, err := d.dec.Token()
		if err != nil {
			return d.errorf(kstart, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		key, _ := kt.(string)
		i := fieldIndex(t, key)
		if i < 0 {
			var skip json.RawMessage
			if err := d.dec.Decode(&skip); err != nil {
				return d.errorf(kstart, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
			}
			continue
		}
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		if err := d.value(v.Field(i), sub); err != nil {
			return err
		}
	}
	if _, err := d.dec.Token(); err != nil {
		return d.errorf(d.next(), path, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// leaf decodes a scalar (or a type with its own JSON/text decoding).
func (d *locatedDecoder) leaf(v reflect.Value, path string) error {
	start := d.next()
	err := d.dec.Decode(v.Addr().Interface())
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return d.errorf(start, path, "want %s, got %s", describeType(v.Type()), describeValue(te.Value))
	}
	return d.errorf(start, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
}

// fieldIndex finds the struct field for a JSON member name: the tag name,
// exactly, else case-insensitively (as encoding/json matches).
func fieldIndex(t reflect.Type, key string) int {
	fold := -1
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return i
		}
		if fold < 0 && strings.EqualFold(name, key) {
			fold = i
		}
	}
	return fold
}

// describeType says in words what JSON a Go type wants.
func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[netip.Prefix]():
		return "an IP prefix such as \"10.244.1.0/24\""
	case reflect.TypeFor[netip.Addr]():
		return "an IP address such as \"10.244.1.1\""
	case reflect.TypeFor[netip.AddrPort]():
		return "an address and port such as \"10.96.0.1:443\""
	case reflect.TypeFor[time.Time]():
		return "an RFC 3339 time such as \"2024-05-01T12:00:00Z\""
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	}
	return t.String()
}

// describeValue rewords encoding/json's UnmarshalTypeError.Value.
func describeValue(v string) string {
	switch {
	case v == "string":
		return "a string"
	case v == "bool":
		return "a boolean"
	case v == "array":
		return "an array"
	case v == "object":
		return "an object"
	case v == "number":
		return "a number"
	case strings.HasPrefix(v, "number "):
		return "the number " + strings.TrimPrefix(v, "number ")
	}
	return v
}

func describeToken(tok json.Token) string {
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return fmt.Sprintf("the string %q", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("%t", x)
	}
	return fmt.Sprintf("%v", tok)
}
