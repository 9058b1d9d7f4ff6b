package declarative

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The file's entries are the admin API's input types (admin.APIInput,
// admin.ClientInput) under their JSON names, so a field added to the admin
// API is in the file, the export, the diff and the patch without a change
// here. One rule renames: an integer field named "…_seconds" is written as a
// duration under the name without the suffix (token_lifetime: 15m).

// field is one key of a file entry.
type field struct {
	index    []int  // reflect index path in the entry's Go type
	json     string // name in the admin API (and in a merge patch)
	key      string // name in the file
	duration bool   // seconds in the admin API, a duration in the file
}

// fieldsOf lists the keys of a struct type in declaration order, embedded
// structs' fields included.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fd := field{index: f.Index, json: name, key: name}
		if key, ok := strings.CutSuffix(name, "_seconds"); ok && f.Type.Kind() == reflect.Int64 {
			fd.key, fd.duration = key, true
		}
		out = append(out, fd)
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// decodeStruct decodes a YAML mapping into the struct v strictly: unknown,
// repeated and forbidden keys are errors. It returns one message per error,
// each with its line.
func decodeStruct(n *yaml.Node, v reflect.Value, forbidden map[string]string) []string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("line %d: want a mapping of fields", n.Line)}
	}
	fields := fieldsOf(v.Type())
	var errs []string
	// Merge keys (<<: *defaults) first, so that the entry's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, val := n.Content[i], resolve(n.Content[i+1]); k.ShortTag() == "!!merge" {
			merged := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				merged = val.Content
			}
			for _, m := range merged {
				errs = append(errs, decodeStruct(m, v, forbidden)...)
			}
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			continue
		}
		if line, ok := seen[k.Value]; ok {
			errs = append(errs, fmt.Sprintf("line %d: field %s is already set at line %d", k.Line, k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		if why, ok := forbidden[k.Value]; ok {
			errs = append(errs, fmt.Sprintf("line %d: field %s: %s", k.Line, k.Value, why))
			continue
		}
		i := -1
		for j, f := range fields {
			if f.key == k.Value {
				i = j
			}
		}
		if i < 0 {
			var known []string
			for _, f := range fields {
				if _, ok := forbidden[f.key]; !ok {
					known = append(known, f.key)
				}
			}
			errs = append(errs, fmt.Sprintf("line %d: unknown field %q (the fields are %s)", k.Line, k.Value, strings.Join(known, ", ")))
			continue
		}
		errs = append(errs, decodeValue(val, v.FieldByIndex(fields[i].index), fields[i].duration)...)
	}
	return errs
}

// decodeValue decodes a YAML value into v. Structs (and lists of them) are
// decoded by their JSON names; everything else the way yaml decodes it, so
// that metadata: {cost_center: 4711} is a string as one would expect.
func decodeValue(n *yaml.Node, v reflect.Value, duration bool) []string {
	n = resolve(n)
	if isNull(n) {
		v.SetZero()
		return nil
	}
	switch {
	case duration:
		d, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || d < 0 {
			return []string{fmt.Sprintf("line %d: %q is not a duration like 15m or 1h", n.Line, n.Value)}
		}
		v.SetInt(int64(d / time.Second))
		return nil
	case v.Type() == rawJSONType:
		// A JSON document in the file (a JWK Set) is written as YAML.
		var x any
		if err := n.Decode(&x); err != nil {
			return []string{fmt.Sprintf("line %d: %v", n.Line, err)}
		}
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return []string{fmt.Sprintf("line %d: not a JSON document: %v", n.Line, err)}
		}
		v.SetBytes(b)
		return nil
	case v.Kind() == reflect.Struct:
		return decodeStruct(n, v, nil)
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		p := reflect.New(v.Type().Elem())
		errs := decodeStruct(n, p.Elem(), nil)
		v.Set(p)
		return errs
	case v.Kind() == reflect.Slice && hasStruct(v.Type().Elem()):
		if n.Kind != yaml.SequenceNode {
			return []string{fmt.Sprintf("line %d: want a list", n.Line)}
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		var errs []string
		for i, item := range n.Content {
			errs = append(errs, decodeValue(item, s.Index(i), false)...)
		}
		v.Set(s)
		return errs
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml would cut 10.9 down to 10 (and take 1e3): a whole number
		// field takes a whole number, as the admin API does.
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return []string{fmt.Sprintf("line %d: %q is not a whole number", n.Line, n.Value)}
		}
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		if te, ok := err.(*yaml.TypeError); ok {
			return te.Errors
		}
		return []string{fmt.Sprintf("line %d: %v", n.Line, err)}
	}
	return nil
}

// rawJSONType is json.RawMessage: a JSON document held as is (jwks).
var rawJSONType = reflect.TypeOf(json.RawMessage(nil))

// jsonable turns what yaml decodes (maps with any keys) into what
// encoding/json encodes.
func jsonable(x any) any {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			t[k] = jsonable(v)
		}
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, v := range t {
			m[fmt.Sprint(k)] = jsonable(v)
		}
		return m
	case []any:
		for i, v := range t {
			t[i] = jsonable(v)
		}
	}
	return x
}

func hasStruct(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// typeError is how an UnmarshalYAML method reports errors so that yaml
// goes on and reports the other entries' errors too.
func typeError(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return &yaml.TypeError{Errors: errs}
}

// encodeStruct writes a struct as a YAML mapping in declaration order,
// leaving out empty fields and the keys in skip.
func encodeStruct(v reflect.Value, skip map[string]string) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range fieldsOf(v.Type()) {
		fv := v.FieldByIndex(f.index)
		if _, ok := skip[f.key]; ok || isEmpty(fv) {
			continue
		}
		val, err := encodeValue(fv, f.duration)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.key, err)
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, val)
	}
	return m, nil
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

func encodeValue(v reflect.Value, duration bool) (*yaml.Node, error) {
	switch {
	case duration:
		return &yaml.Node{Kind: yaml.ScalarNode, Value: shortDuration(time.Duration(v.Int()) * time.Second)}, nil
	case v.Kind() == reflect.Pointer:
		return encodeValue(v.Elem(), false)
	case v.Type() == rawJSONType:
		var x any
		if err := json.Unmarshal(v.Bytes(), &x); err != nil {
			return nil, err
		}
		n := &yaml.Node{}
		return n, n.Encode(x)
	case v.Kind() == reflect.Struct:
		return encodeStruct(v, nil)
	case v.Kind() == reflect.Slice && hasStruct(v.Type().Elem()):
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			item, err := encodeValue(v.Index(i), false)
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, item)
		}
		return s, nil
	}
	n := &yaml.Node{}
	if err := n.Encode(v.Interface()); err != nil {
		return nil, err
	}
	if n.Kind == yaml.SequenceNode && !hasStruct(v.Type()) {
		n.Style = yaml.FlowStyle // scopes: [orders:read, orders:write]
	}
	return n, nil
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// inputOf converts an admin resource to the admin input type: the fields
// they share a JSON name with are copied, the server's own ones dropped.
func inputOf[T any](resource any) (T, error) {
	var in T
	b, err := json.Marshal(resource)
	if err == nil {
		err = json.Unmarshal(b, &in)
	}
	return in, err
}

// canonical renders a value of an admin input type for comparison: lists
// are sets (order, repeats and nil-versus-empty do not matter), maps and
// free-form values compare as JSON (a YAML 2 equals a JSON 2.0).
func canonical(v reflect.Value) string {
	b, _ := json.Marshal(canonicalValue(v))
	return string(b)
}

func canonicalValue(v reflect.Value) any {
	if v.Type() == rawJSONType {
		var out any
		if v.Len() == 0 || json.Unmarshal(v.Bytes(), &out) != nil {
			return nil
		}
		return out
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Pointer {
			return canonicalValue(v.Elem())
		}
	case reflect.Struct:
		m := map[string]any{}
		for _, f := range fieldsOf(v.Type()) {
			m[f.json] = canonicalValue(v.FieldByIndex(f.index))
		}
		return m
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		items := map[string]any{}
		for i := range v.Len() {
			item := canonicalValue(v.Index(i))
			b, _ := json.Marshal(item)
			items[string(b)] = item
		}
		keys := make([]string, 0, len(items))
		for k := range items {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]any, len(keys))
		for i, k := range keys {
			out[i] = items[k]
		}
		return out
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
	default:
		return v.Interface()
	}
	// Maps and free-form values: as JSON sees them.
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprintf("%v", v.Interface())
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// display renders a field's value in a diff line.
func display(v reflect.Value, duration bool) string {
	switch {
	case duration:
		return shortDuration(time.Duration(v.Int()) * time.Second)
	case v.Kind() == reflect.String && v.String() != "":
		return v.String()
	case v.Kind() == reflect.Bool:
		return fmt.Sprint(v.Bool())
	}
	switch s := canonical(v); s {
	case "null", `""`:
		if v.Kind() == reflect.Slice {
			return "[]"
		}
		if v.Kind() == reflect.Map {
			return "{}"
		}
		return `""`
	default:
		return s
	}
}

// patchValue is a field's value in a merge patch: empty, never null.
func patchValue(v reflect.Value) any {
	switch {
	case v.Type() == rawJSONType && v.Len() == 0:
		return nil // null: none
	case v.Type() == rawJSONType:
		return v.Interface()
	case v.Kind() == reflect.Slice && v.IsNil():
		return reflect.MakeSlice(v.Type(), 0, 0).Interface()
	case v.Kind() == reflect.Map && v.IsNil():
		return reflect.MakeMap(v.Type()).Interface()
	}
	return v.Interface()
}
