//go:build bench

package bench_test

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

//go:embed reference.lua
var referenceSrc string

// reference is a bare Go front, the yardstick of ingest's speed: net/http and
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
	case "/readyz":
	default:
		http.NotFound(w, req)
	}
}

// Environment of a reference process: the bench binary runs itself as the reference server,
// so that the reference, like ingest, is a process of its own beside the load generator. Served
// from inside the load generator's process it had Go's scheduler hand requests over without the
// operating system's switches between processes, which ingest pays: on 2 cores that alone made
// the reference up to a third faster in the single-message stage.
const (
	referenceListenEnv = "CHATPIPE_BENCH_REFERENCE_LISTEN"
	referenceValkeyEnv = "CHATPIPE_BENCH_REFERENCE_VALKEY"
)

// serveReference serves the reference until SIGTERM, when the environment asks for it; it
// returns false (and does nothing) otherwise.
func serveReference() bool {
	listen := os.Getenv(referenceListenEnv)
	if listen == "" {
		return false
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{os.Getenv(referenceValkeyEnv)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
	ref := &reference{c: c, script: lua.NewScript("reference", referenceSrc)}
	srv := &http.Server{Addr: listen, Handler: ref}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
	return true
}

// startReference starts the reference in a process of its own against the Valkey at addr and
// returns its address and pid.
func startReference(t *testing.T, addr string) (string, int) {
	t.Helper()
	listen := testenv.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), referenceListenEnv+"="+listen, referenceValkeyEnv+"="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	testenv.WaitReady(t, "http://"+listen+"/readyz", 20*time.Second)
	return listen, cmd.Process.Pid
}
