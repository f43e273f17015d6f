//go:build bench

package bench_test

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/lua"
)

//go:embed reference.lua
var referenceSrc string

// reference is the bare Go front of issue 13, the yardstick of ingest's speed: net/http and
// encoding/json, one EVALSHA of reference.lua per message through valkey-go's auto-pipelining,
// and for a batch the messages' calls in one DoMulti. No validation beyond JSON, no
// client_msg_id, no backlog cap, no durability: what chatpipe does on top is what it costs.
type reference struct {
	c      valkey.Client
	script *lua.Script
}

type refMessage struct {
	OwnerID  string `json:"owner_id"`
	Username string `json:"username"`
	Content  string `json:"content"`
}

func (r *reference) call(m refMessage) lua.Call {
	data, _ := json.Marshal(m)
	return lua.Call{Keys: []string{"ref:ratelimit:" + m.OwnerID, "ref:id", "ref:recent", "ref:flush"},
		Args: []string{"1000000000", "60", string(data), "500"}}
}

func (r *reference) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch req.URL.Path {
	case "/v1/messages":
		var m refMessage
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cl := r.call(m)
		id, err := r.script.Exec(req.Context(), r.c, cl.Keys, cl.Args).AsInt64()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"cache_id":`+strconv.FormatInt(id, 10)+"}\n")
	case "/v1/messages/batch":
		var b struct {
			Messages []refMessage `json:"messages"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		calls := make([]lua.Call, len(b.Messages))
		for i, m := range b.Messages {
			calls[i] = r.call(m)
		}
		type result struct {
			CacheID int64 `json:"cache_id"`
		}
		out := struct {
			Results []result `json:"results"`
		}{Results: make([]result, len(calls))}
		for i, res := range r.script.ExecMulti(req.Context(), r.c, calls) {
			if out.Results[i].CacheID, err = res.AsInt64(); err != nil || out.Results[i].CacheID < 1 {
				http.Error(w, fmt.Sprintf("message %d: %v (%d)", i, err, out.Results[i].CacheID), http.StatusServiceUnavailable)
				return
			}
		}
		raw, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(raw))) // sized, as the load generator keeps connections only for sized answers
		_, _ = w.Write(raw)
	default:
		http.NotFound(w, req)
	}
}

// startReference serves the reference on a loopback port against the Valkey at addr.
func startReference(t *testing.T, addr string) string {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &reference{c: c, script: lua.NewScript("reference", referenceSrc)}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}
