// Package strictjson checks JSON documents for what encoding/json lets
// through silently: a member given twice in one object (encoding/json keeps
// the last, so two parsers of one body can disagree), names that differ
// only in case (encoding/json matches struct fields case-insensitively),
// and anything after the first value. The check is one pass, linear in the
// document.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
)

// Errors of Check.
var (
	ErrSyntax    = errors.New("the body is not valid JSON")
	ErrDuplicate = errors.New("a JSON member is given more than once (names are compared ignoring case)")
	ErrTrailing  = errors.New("the body must hold exactly one JSON value")
)

// fold maps a member name to the key encoding/json matches struct fields
// by: it compares names under Unicode case folding, so "ſ" (U+017F) and
// "s", "K" (U+212A) and "k" name the same field.
func fold(name string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, name)
}

// frame is an open object or array.
type frame struct {
	object    bool
	expectKey bool                // objects: the next token is a member name
	seen      map[string]struct{} // objects: the names so far, lower-cased
}

// Check reports whether data is one JSON value whose objects, at every
// depth, name each member once, ignoring case.
func Check(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []*frame
	done := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return ErrSyntax
			}
			return nil
		}
		if err != nil {
			return ErrSyntax
		}
		if done {
			return ErrTrailing
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true // after this value, the next name
				}
				f := &frame{object: t == '{', expectKey: t == '{'}
				if f.object {
					f.seen = map[string]struct{}{}
				}
				stack = append(stack, f)
			default:
				stack = stack[:len(stack)-1]
				done = len(stack) == 0
			}
		default:
			switch {
			case top == nil:
				done = true
			case top.object && top.expectKey:
				name, _ := t.(string)
				key := fold(name)
				if _, dup := top.seen[key]; dup {
					return ErrDuplicate
				}
				top.seen[key] = struct{}{}
				top.expectKey = false
			case top.object:
				top.expectKey = true
			}
		}
	}
}
