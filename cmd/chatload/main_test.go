package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--messages", "0"}, {"--messages", "lots"}, {"--messages="}, {"--concurrency", "99999"},
		{"--private-percent", "101"}, {"--batch", "5000"}, {"--seed", "-1"}, {"extra"},
		{"--channels", "0"}, {"--channels", "many"}, {"--channels", "2000000"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) { testenv.WantInvalidSetting(t, run, args, nil, "") })
	}
}

func TestOnlyLoopback(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"--messages", "1"}, testenv.Env(map[string]string{"CHATLOAD_URL": "http://192.0.2.1:8080"}), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want a refusal to send off loopback", err)
	}
}

// TestCountsAgree sends a load to a real ingest and compares the counts with what it stored.
func TestCountsAgree(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	scripts, err := store.Open(c, store.Config{DefaultRate: store.RateLimit{Limit: 10, WindowSeconds: 60, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Store: scripts})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	ids := filepath.Join(t.TempDir(), "ids")
	var out, progress bytes.Buffer
	err = run(context.Background(), []string{"--messages", "2000", "--concurrency", "8", "--users", "300", "--hot-percent", "10", "--ids-out", ids},
		testenv.Env(map[string]string{"CHATLOAD_URL": srv.URL}), &out, &progress)
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := os.ReadFile(ids)
	accepted := strings.Count(string(lines), "\n")
	pub, _ := testenv.Do(t, c, "XLEN", "chatpipe:flush:message").AsInt64()
	priv, _ := testenv.Do(t, c, "XLEN", "chatpipe:flush:private_message").AsInt64()
	if int64(accepted) != pub+priv || accepted == 0 {
		t.Fatalf("%d ids accepted, streams hold %d: they must agree", accepted, pub+priv)
	}
	// The public messages are spread over channels, skewed: the default channel the busiest.
	xs, _ := testenv.Do(t, c, "XRANGE", "chatpipe:flush:message", "-", "+").AsXRange()
	perChannel := map[string]int{}
	for _, x := range xs {
		var e struct {
			Data struct {
				ChannelID string `json:"channel_id"`
			} `json:"data"`
		}
		_ = json.Unmarshal([]byte(x.FieldValues["payload"]), &e)
		perChannel[e.Data.ChannelID]++
	}
	busiest := ""
	for ch, n := range perChannel {
		if n > perChannel[busiest] {
			busiest = ch
		}
	}
	if len(perChannel) < 20 || busiest != "general" {
		t.Errorf("public messages over %d channels, the busiest %q: want them spread over many, the default channel the busiest", len(perChannel), busiest)
	}
	for _, want := range []string{"sent 2000", "rate_limited", "invalid"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "rate_limited  0\n") || strings.Contains(out.String(), "invalid       0\n") {
		t.Errorf("the load should have hit the rate limit and sent invalid messages:\n%s", out.String())
	}
}
