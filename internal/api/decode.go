package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds JSON nesting: the deepest valid body ({"messages":[{...}]}) has depth 3.
const maxDepth = 8

// readJSON reads a request body of at most limit bytes, enforced while reading, after checking
// its content type. It returns an *apiError for every way the body can be wrong.
func readJSON(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return nil, &apiError{code: codeUnsupportedMediaType, detail: fmt.Sprintf("Content-Type must be application/json, got %q", ct)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &apiError{code: codeTooLarge, detail: fmt.Sprintf("body larger than %d bytes", limit)}
		}
		return nil, &apiError{code: codeInvalidJSON, detail: "reading body: " + err.Error()}
	}
	return body, nil
}

// decodeStrict decodes one JSON value into v. Beyond encoding/json it rejects what that package
// lets through silently: invalid UTF-8 (which it would replace), duplicate keys (where it keeps the
// last), unknown fields, trailing data and nesting deeper than maxDepth.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &apiError{code: codeInvalidJSON, detail: "empty body"}
	}
	if !utf8.Valid(body) {
		return &apiError{code: codeInvalidJSON, detail: "body is not valid UTF-8"}
	}
	valid := json.Valid(body)
	if err := checkStructure(body, valid); err != nil {
		return err
	}
	return decodeChecked(body, valid, v)
}

// decodeChecked decodes body, whose structure was checked (valid: json.Valid(body)), into v:
// by v's fast path when it has one and body is valid JSON, else by encoding/json, strictly.
func decodeChecked(body []byte, valid bool, v any) error {
	if f, ok := v.(fastDecoder); ok && valid && f.decodeFast(body) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns an encoding/json error into an apiError naming the field at fault.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return &apiError{code: codeInvalid, field: lastField(field), detail: fmt.Sprintf("%s: must be %s, got %s", lastField(field), jsonType(te.Type.Kind().String()), te.Value)}
	case errors.As(err, &se):
		return &apiError{code: codeInvalidJSON, detail: fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this one; its text is documented and stable.
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &apiError{code: codeUnknownField, field: f, detail: fmt.Sprintf("unknown field %q", f)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &apiError{code: codeInvalidJSON, detail: "truncated JSON"}
	}
	return &apiError{code: codeInvalidJSON, detail: err.Error()}
}

func lastField(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64", "int32":
		return "an integer"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return kind
}

// checkStructure checks what encoding/json lets through (valid is json.Valid(body)): one value,
// no trailing data, nesting within maxDepth, and no key twice in one object. Valid JSON (nearly every request) takes a
// byte scan that allocates nothing; anything else takes the token walk, whose errors name the
// problem. The profile of the batch endpoint showed the token walk alone at a fifth of ingest's
// CPU: it boxes every token in an interface.
func checkStructure(body []byte, valid bool) error {
	if valid {
		return scanStructure(body)
	}
	return tokenStructure(body)
}

// scanStructure is checkStructure for input json.Valid accepted: one value, no trailing data,
// every string terminated and every ':' and ',' where it belongs, so only depth and repeated
// keys are left to find. In an object, a string after '{' or ',' is a key.
func scanStructure(body []byte) error {
	type frame struct {
		object, wantsKey bool
		first            int                 // index in keys of this object's first key
		many             map[string]struct{} // the object's keys once there are too many to search
	}
	const searchLimit = 16
	var stack [maxDepth]frame
	depth := 0
	// Keys are slices of body (no copy) unless they hold escapes; the array keeps the usual
	// request's keys off the heap.
	var keyBuf [2 * searchLimit][]byte
	keys := keyBuf[:0]
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '{', '[':
			if depth == maxDepth {
				return &apiError{code: codeInvalidJSON, detail: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
			}
			stack[depth] = frame{object: c == '{', wantsKey: c == '{', first: len(keys)}
			depth++
		case '}', ']':
			depth--
			keys = keys[:stack[depth].first]
		case ',':
			stack[depth-1].wantsKey = stack[depth-1].object
		case ':':
			stack[depth-1].wantsKey = false
		case '"':
			start := i + 1
			escaped := false
			for i++; body[i] != '"'; i++ {
				if body[i] == '\\' {
					escaped = true
					i++
				}
			}
			if depth == 0 || !stack[depth-1].wantsKey {
				continue
			}
			f := &stack[depth-1]
			k := body[start:i]
			if escaped {
				var u string
				_ = json.Unmarshal(body[start-1:i+1], &u)
				k = []byte(u)
			}
			if f.many != nil {
				if _, dup := f.many[string(k)]; dup {
					return duplicateKey(string(k))
				}
				f.many[string(k)] = struct{}{}
				continue
			}
			for _, seen := range keys[f.first:] {
				if bytes.Equal(seen, k) {
					return duplicateKey(string(k))
				}
			}
			keys = append(keys, k)
			if len(keys)-f.first > searchLimit {
				f.many = make(map[string]struct{}, 2*searchLimit)
				for _, seen := range keys[f.first:] {
					f.many[string(seen)] = struct{}{}
				}
			}
		}
	}
	return nil
}

func duplicateKey(k string) error {
	return &apiError{code: codeInvalidJSON, field: k, detail: fmt.Sprintf("duplicate key %q", k)}
}

// tokenStructure is checkStructure for input that is not valid JSON: it walks the tokens and
// reports the first problem in order.
func tokenStructure(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object   bool
		keys     map[string]struct{}
		wantsKey bool
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return jsonError(err)
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if len(stack) >= maxDepth {
					return &apiError{code: codeInvalidJSON, detail: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
				}
				if top >= 0 && stack[top].object {
					stack[top].wantsKey = true
				}
				stack = append(stack, frame{object: d == '{', wantsKey: d == '{'})
			default:
				stack = stack[:top]
			}
			if len(stack) == 0 {
				if _, err := dec.Token(); err != io.EOF {
					return &apiError{code: codeInvalidJSON, detail: "data after the JSON value"}
				}
				return nil
			}
			continue
		}
		if top < 0 {
			// A bare scalar at the top: the typed decode reports it.
			return nil
		}
		f := &stack[top]
		if f.object && f.wantsKey {
			k := tok.(string)
			if f.keys == nil {
				f.keys = make(map[string]struct{}, 8)
			}
			if _, dup := f.keys[k]; dup {
				return duplicateKey(k)
			}
			f.keys[k] = struct{}{}
			f.wantsKey = false
			continue
		}
		if f.object {
			f.wantsKey = true
		}
	}
	return nil
}
