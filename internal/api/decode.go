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
	if err := checkStructure(body); err != nil {
		return err
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

// checkStructure walks the tokens once: one value, no trailing data, nesting within maxDepth,
// and no key twice in one object.
func checkStructure(body []byte) error {
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
				return &apiError{code: codeInvalidJSON, field: k, detail: fmt.Sprintf("duplicate key %q", k)}
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
