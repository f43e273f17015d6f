package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	apidoc "github.com/chatpipe/chatpipe/api"
	"github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestFieldsConform holds every representation of a message to the one table of its fields
// (message.Fields): a message with every field of its kind set goes through each of them and
// must come back with each field's value. It fails naming, for each field, every place that
// lacks it — a field added to the table only is reported in all of them.
func TestFieldsConform(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	missing := map[string][]string{} // field → the places that lack it
	miss := func(f message.Field, kind message.Kind, place string) {
		where := fmt.Sprintf("%s (%s)", place, kind)
		if !slices.Contains(missing[f.JSON], where) {
			missing[f.JSON] = append(missing[f.JSON], where)
		}
	}
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	pool := testenv.MigratedPool(t, testenv.Postgres(t), 2)
	v := testenv.StartValkey(t)
	keys, _ := keyspace.New("")
	scripts, err := store.Open(v.Client(t), store.Config{Layout: keys, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	tables := map[message.Kind]string{message.Public: "chat_messages", message.Private: "private_messages"}
	pgTypes := map[message.FieldType]string{message.String: "text", message.Time: "timestamp with time zone", message.Int: "bigint"}

	for _, kind := range message.Kinds {
		var fields []message.Field
		for _, f := range message.Fields {
			if f.Of(kind) {
				fields = append(fields, f)
			}
		}
		// The sample: every field of the kind set, through the Go struct.
		var m message.Message
		for _, f := range fields {
			if !setByTag(&m, f.JSON, sampleValue(f)) {
				miss(f, kind, "message.Message, the Go struct (internal/message/message.go)")
			}
		}
		id := int64(1000 + kind)
		// check compares a representation's JSON data with the sample, field by field.
		check := func(place string, data []byte, except ...string) {
			var got map[string]any
			if err := json.Unmarshal(data, &got); err != nil {
				t.Errorf("%s (%s): %q is not a JSON object: %v", place, kind, data, err)
				return
			}
			for _, f := range fields {
				if slices.Contains(except, f.JSON) {
					continue
				}
				if g, ok := got[f.JSON]; !ok || fmt.Sprint(g) != fmt.Sprint(sampleValue(f)) {
					miss(f, kind, place)
				}
			}
		}
		check("Message.JSON, the Go encoder (internal/message/message.go)", m.JSON())

		env := message.AppendEnvelope(nil, id, id+1, m.JSON())
		if rec, err := message.DecodeRingEntry(kind.String(), message.DefaultChannel, id, string(env)); err != nil {
			t.Errorf("DecodeRingEntry of %s: %v", env, err)
		} else {
			check("DecodeRingEntry and Record.JSON, the entry codec (internal/message/entry.go)", dataOf(t, rec.JSON()))
		}

		for _, f := range fields {
			if _, ok := tagIndex(reflect.TypeFor[client.Message](), f.JSON); !ok {
				miss(f, kind, "client.Message, the Go client (client/messages.go)")
			}
			if s := doc.Components.Schemas["Message"]; s == nil || s.Value.Properties[f.JSON] == nil {
				miss(f, kind, "components.schemas.Message, the OpenAPI document (api/openapi.yaml)")
			}
		}

		// Ingest's request bodies: the struct, and the fast decoder — given the fields the
		// struct has and the one checked, so that only a field it lacks is blamed.
		newReq := func() fastDecoder {
			if kind == message.Private {
				return &privateRequest{}
			}
			return &publicRequest{}
		}
		known := map[string]any{}
		for _, f := range fields {
			if !f.Request {
				continue
			}
			if _, ok := tagIndex(reflect.TypeOf(newReq()).Elem(), f.JSON); ok {
				known[f.JSON] = sampleValue(f)
			} else {
				miss(f, kind, "the send request's struct (internal/api/handlers.go)")
			}
		}
		for _, f := range fields {
			if !f.Request {
				continue
			}
			body := maps.Clone(known)
			body[f.JSON] = sampleValue(f)
			b, _ := json.Marshal(body)
			req := newReq()
			if !req.decodeFast(b) || fmt.Sprint(getByTag(req, f.JSON)) != fmt.Sprint(sampleValue(f)) {
				miss(f, kind, "the send request's fast decoder (internal/api/fastdecode.go)")
			}
		}

		// PostgreSQL: the column, and a row written (an edit writes every column) and read back.
		for _, f := range fields {
			var typ string
			err := pool.QueryRow(ctx, `SELECT data_type FROM information_schema.columns WHERE table_name = $1 AND column_name = $2`,
				tables[kind], f.Column).Scan(&typ)
			if err != nil || typ != pgTypes[f.Type] {
				miss(f, kind, fmt.Sprintf("PostgreSQL column %s.%s of type %s (internal/pg/migration)", tables[kind], f.Column, pgTypes[f.Type]))
			}
		}
		created, _ := time.Parse(time.RFC3339Nano, m.CreatedAt)
		edited, _ := time.Parse(time.RFC3339Nano, m.EditedAt)
		rec := message.Record{StreamID: "1-1", CacheID: id, Op: message.OpEdit, Message: m, CreatedAt: created, Version: id + 1, EditedAt: edited}
		if _, err := pg.New(pool).Persist(ctx, kind, []message.Record{rec}); err != nil {
			t.Errorf("writing the sample %s: %v", kind, err)
		} else if row, ok, err := pg.NewHistory(pool).One(ctx, kind, id); err != nil || !ok {
			t.Errorf("reading the sample %s back: %v, %v", kind, ok, err)
		} else {
			check("a row's write and read, the table descriptor and its scans (internal/pg/table.go, history.go)", dataOf(t, row.JSON()))
		}

		// The edit script splices a public message's data in place (find mode): every field but
		// those it changes must survive it.
		if kind == message.Public {
			sent := m
			sent.EditedAt = ""
			r, err := scripts.Enqueue(ctx, store.Message{OwnerID: m.OwnerID, ChannelID: m.ChannelID, Data: sent.JSON()})
			if err != nil {
				t.Fatal(err)
			}
			_, err = scripts.Edit(ctx, store.Edit{Kind: kind, CacheID: r.CacheID,
				Message: message.Message{OwnerID: m.OwnerID, ChannelID: m.ChannelID, Content: "spliced", EditedAt: m.EditedAt}})
			entries, rerr := scripts.Recent(ctx, message.ChannelTimeline(m.ChannelID), 1)
			if err != nil || rerr != nil || len(entries) != 1 {
				for _, f := range fields {
					miss(f, kind, fmt.Sprintf("the edit script's splice (internal/lua/edit.lua: %v)", err))
				}
			} else {
				check("the edit script's splice (internal/lua/edit.lua)", dataOf(t, []byte(entries[0])), "content")
			}
		}
	}

	// And the other way: a field one representation has that the table does not.
	inTable := func(name string) bool {
		return slices.ContainsFunc(message.Fields, func(f message.Field) bool { return f.JSON == name || f.Column == name })
	}
	extra := map[string][]string{}
	for place, names := range map[string][]string{
		"message.Message":                   jsonTags(reflect.TypeFor[message.Message]()),
		"client.Message":                    jsonTags(reflect.TypeFor[client.Message]()),
		"components.schemas.Message":        slices.Collect(maps.Keys(doc.Components.Schemas["Message"].Value.Properties)),
		"PostgreSQL table chat_messages":    columnsOf(t, pool, "chat_messages"),
		"PostgreSQL table private_messages": columnsOf(t, pool, "private_messages"),
	} {
		for _, n := range names {
			if !inTable(n) {
				extra[n] = append(extra[n], place)
			}
		}
	}
	for n, places := range extra {
		slices.Sort(places)
		t.Errorf("field %q is in %s but not in message.Fields (internal/message/fields.go)", n, strings.Join(places, ", "))
	}

	for _, f := range message.Fields {
		if places := missing[f.JSON]; len(places) > 0 {
			t.Errorf("field %q (%s) is in message.Fields but missing from:\n  - %s", f.JSON, f.Type, strings.Join(places, "\n  - "))
		}
	}
}

// sampleValue is a field's value in the sample message: its JSON value.
func sampleValue(f message.Field) any {
	switch f.Type {
	case message.Time:
		// Distinct per field, in FormatTime's form (a round trip through PostgreSQL keeps it).
		return message.FormatTime(time.Date(2026, 12, 7, 10, 0, len(f.JSON), 123456000, time.UTC))
	case message.Int:
		return int64(len(f.JSON)) * 1000
	case message.String:
	}
	return "v_" + f.JSON
}

// dataOf is the "data" object of a ring entry.
func dataOf(t *testing.T, entry []byte) []byte {
	t.Helper()
	var e struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(entry, &e); err != nil {
		t.Fatalf("ring entry %q: %v", entry, err)
	}
	return e.Data
}

// tagIndex is the index path of the field of struct type rt whose JSON key is name, looking
// into embedded structs.
func tagIndex(rt reflect.Type, name string) ([]int, bool) {
	for i := range rt.NumField() {
		sf := rt.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			if idx, ok := tagIndex(sf.Type, name); ok {
				return append([]int{i}, idx...), true
			}
			continue
		}
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag == name {
			return []int{i}, true
		}
	}
	return nil, false
}

// setByTag sets the field of *p whose JSON key is name to v; false when there is none.
func setByTag(p any, name string, v any) bool {
	rv := reflect.ValueOf(p).Elem()
	idx, ok := tagIndex(rv.Type(), name)
	if !ok {
		return false
	}
	fv := rv.FieldByIndex(idx)
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(fmt.Sprint(v))
	case reflect.Int64:
		n, _ := v.(int64)
		fv.SetInt(n)
	case reflect.Pointer:
		s := fmt.Sprint(v)
		fv.Set(reflect.ValueOf(&s))
	default:
		return false
	}
	return true
}

// getByTag is the value of the field of *p whose JSON key is name, nil when there is none.
func getByTag(p any, name string) any {
	rv := reflect.ValueOf(p).Elem()
	idx, ok := tagIndex(rv.Type(), name)
	if !ok {
		return nil
	}
	fv := rv.FieldByIndex(idx)
	if fv.Kind() == reflect.Pointer {
		if fv.IsNil() {
			return nil
		}
		fv = fv.Elem()
	}
	return fv.Interface()
}

// jsonTags are the JSON keys of struct type rt's fields.
func jsonTags(rt reflect.Type) []string {
	var out []string
	for i := range rt.NumField() {
		if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// columnsOf lists a table's columns but those every row has beside the message: its id, its
// version, the stream entry it came from and when it was written.
func columnsOf(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT column_name FROM information_schema.columns WHERE table_name = $1`, table)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(names, func(n string) bool {
		return slices.Contains([]string{"cache_id", "version", "stream_id", "persisted_at"}, n)
	})
}
