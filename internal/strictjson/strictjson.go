// Package strictjson decodes the small JSON bodies of followpush's own HTTP
// API (the device and preference APIs) strictly where leniency would lose
// or change data, and leniently where clients add things.
//
// It is encoding/json v2's decoding (github.com/go-json-experiment/json:
// duplicate member names, invalid UTF-8, a value of the wrong type and data
// after the value are errors; names match case-sensitively; unknown members
// are ignored; null leaves a field as it is) with two checks of its own: at
// most [MaxDepth] levels of nesting, and no member whose name is one of
// the target's field names in another case ("PLATFORM" for "platform"),
// which a client meaning that field would otherwise see silently ignored.
//
// Tencent's callbacks are not decoded here: package tencent has its own
// parser, with Tencent's rules.
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxDepth is the deepest nesting of objects and arrays a body may have.
const MaxDepth = 32

// ErrInvalid is wrapped by every error of [Decode].
var ErrInvalid = errors.New("invalid JSON body")

// Decode decodes body into v, a pointer to a struct whose fields carry
// json tags. A body of nothing but JSON whitespace leaves v as it is;
// anything else must be one JSON object. The error wraps [ErrInvalid] and
// says what is wrong, naming the member where it can.
func Decode(body []byte, v any) error {
	if len(bytes.Trim(body, " \t\r\n")) == 0 {
		return nil
	}
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("%w: decode into %T: want a pointer to a struct", ErrInvalid, v)
	}
	if err := checkShape(body, t.Elem()); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, describe(err))
	}
	return nil
}

// describe says what err, an error of json.Unmarshal, found wrong. A value
// of the wrong type is described in our own words ("member "/mode": want a
// string, got a JSON number"): the library words its messages differently
// from one process to the next, on purpose, and an API's answers must not
// change between runs.
func describe(err error) string {
	var serr *json.SemanticError
	if !errors.As(err, &serr) || serr.GoType == nil || serr.JSONKind == 0 {
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	where := "the body"
	if serr.JSONPointer != "" {
		where = fmt.Sprintf("member %q", string(serr.JSONPointer))
	}
	if serr.Err != nil {
		return fmt.Sprintf("%s: %v", where, serr.Err)
	}
	return fmt.Sprintf("%s: want %s, got %s", where, want(serr.GoType), got(serr.JSONKind))
}

// got names a JSON value of kind k.
func got(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return k.String() // null, true, false
}

// want names what JSON value decodes into a Go value of type t.
func want(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "a " + t.String()
}

// checkShape reads body's tokens: it must be one object, nested at most
// MaxDepth deep, and no member of an object that decodes into a struct may
// name one of the struct's fields in another case. Syntax, duplicate names
// and UTF-8 are checked by the same tokenizer json.Unmarshal uses.
func checkShape(body []byte, top reflect.Type) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	if k := dec.PeekKind(); k != '{' {
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		return errors.New("body is not a JSON object")
	}
	// frame is one open object or array. In an object, names and values
	// alternate; fields are the struct the object decodes into (nil: not
	// a struct, nothing to check), member the type of the next value.
	type frame struct {
		object, wantName bool
		fields           map[string]reflect.Type
		member           reflect.Type
	}
	var stack []*frame
	next := top // the type the next value decodes into
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		k := tok.Kind()
		var f *frame
		if len(stack) > 0 {
			f = stack[len(stack)-1]
		}
		if f != nil && f.object && f.wantName && k != '}' {
			name := tok.String()
			if err := checkName(name, f.fields); err != nil {
				return err
			}
			f.member, f.wantName = f.fields[name], false
			continue
		}
		if f != nil && f.object {
			next, f.wantName = f.member, true
		} else if f != nil {
			next = nil // array elements are not checked
		}
		switch k {
		case '{', '[':
			if len(stack) == MaxDepth {
				return fmt.Errorf("nested deeper than %d levels", MaxDepth)
			}
			stack = append(stack, &frame{object: k == '{', wantName: k == '{', fields: structFields(next)})
		case '}', ']':
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				if _, err := dec.ReadToken(); err != io.EOF {
					return errors.New("data after the JSON object")
				}
				return nil
			}
		}
	}
}

// checkName refuses name when it is not one of fields but one of them in
// another case.
func checkName(name string, fields map[string]reflect.Type) error {
	if _, ok := fields[name]; ok {
		return nil
	}
	for known := range fields {
		if strings.EqualFold(name, known) {
			return fmt.Errorf("member %q: names are case-sensitive, want %q", name, known)
		}
	}
	return nil
}

// structFields maps the JSON names of t's fields (t a struct or a pointer
// to one) to their types; nil for any other type.
func structFields(t reflect.Type) map[string]reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = sf.Name
		}
		out[name] = sf.Type
	}
	return out
}
