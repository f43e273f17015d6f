package api

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
)

// TestFastDecodeCoversEveryField: each request with a fast path, every field set (found by
// reflection, embedded ones too), is taken by its fast path and decoded as encoding/json
// decodes it. A field added to a request and forgotten in the fast path fails here instead of
// sending every request through encoding/json's reflection without a sound.
func TestFastDecodeCoversEveryField(t *testing.T) {
	for _, req := range []fastDecoder{&publicRequest{}, &privateRequest{}, &batchItem{}} {
		v := reflect.ValueOf(req).Elem()
		n := 0
		var fill func(v reflect.Value)
		fill = func(v reflect.Value) {
			for i := range v.NumField() {
				f := v.Field(i)
				n++
				val := "v" + strconv.Itoa(n) + " ü"
				switch {
				case f.Kind() == reflect.String:
					f.SetString(val)
				case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.String:
					f.Set(reflect.ValueOf(&val))
				case f.Kind() == reflect.Struct:
					fill(f)
				default:
					t.Fatalf("%s.%s is a %s: teach this test (and the fast path) about it", v.Type(), v.Type().Field(i).Name, f.Type())
				}
			}
		}
		fill(v)
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got := reflect.New(v.Type()).Interface().(fastDecoder)
		if !got.decodeFast(body) {
			t.Errorf("%T: the fast path gave up on %s: a field it does not know?", req, body)
			continue
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("%T: the fast path decoded %+v, want %+v", req, got, req)
		}
	}
}
