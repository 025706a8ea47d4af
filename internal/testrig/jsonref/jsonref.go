// Package jsonref holds slow, obvious reference checks of JSON, built on
// encoding/json, for fuzz tests to compare the real parsers against.
package jsonref

import (
	"bytes"
	"encoding/json"
	"io"
)

// Structure reports whether body is one JSON object, nested at most
// maxDepth deep, without duplicate keys (in any object), using
// json.Decoder.Token.
func Structure(body []byte, maxDepth int) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	stack := []*frame{{keys: map[string]bool{}, wantKey: true}}
	for len(stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		top := stack[len(stack)-1]
		if top.keys != nil && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				continue
			}
			key, ok := tok.(string)
			if !ok || top.keys[key] {
				return false
			}
			top.keys[key] = true
			top.wantKey = false
			continue
		}
		if top.keys != nil {
			top.wantKey = true // after this value
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxDepth {
				return false
			}
			fr := &frame{}
			if tok == json.Delim('{') {
				fr.keys, fr.wantKey = map[string]bool{}, true
			}
			stack = append(stack, fr)
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
	_, err := dec.Token()
	return err == io.EOF
}
