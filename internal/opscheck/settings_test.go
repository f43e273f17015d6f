package opscheck_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestConfigurationSettings holds docs/configuration.md's settings tables and each binary's
// --help to the same settings and defaults: the first table is ingest's; the second the worker's own, the rest of
// its settings being those of the first; the console's table comes third, falling back on the
// worker's and then ingest's. Every setting --help lists must have a row whose default is the
// binary's, and every row must name a setting the binary has.
func TestConfigurationSettings(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(root, "docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables := settingsTables(string(b))
	if len(tables) != 3 {
		t.Fatalf("found %d settings tables in docs/configuration.md (| variable | default | meaning | twice, | setting | default | meaning | once), want 3", len(tables))
	}
	ingestT, workerT, consoleT := tables[0], tables[1], tables[2]
	bins := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	cases := []struct {
		name   string
		args   []string
		own    map[string]string
		others []map[string]string
	}{
		{"ingest", []string{filepath.Join(bins, "ingest"), "--help"}, ingestT, nil},
		{"flushworker run", []string{filepath.Join(bins, "flushworker"), "run", "--help"}, workerT, []map[string]string{ingestT}},
		{"flushworker console", []string{filepath.Join(bins, "flushworker"), "console", "--help"}, consoleT, []map[string]string{workerT, ingestT}},
	}
	for _, c := range cases {
		out, err := exec.Command(c.args[0], c.args[1:]...).Output()
		if err != nil {
			t.Fatalf("%s --help: %v", c.name, err)
		}
		help := helpSettings(string(out))
		if len(help) < 10 {
			t.Fatalf("%s --help: %d settings read, the format changed?\n%s", c.name, len(help), out)
		}
		for env, def := range help {
			readme, ok := c.own[env]
			for _, o := range c.others {
				if !ok {
					readme, ok = o[env]
				}
			}
			switch {
			case !ok:
				t.Errorf("%s: %s (default %q) is in --help but in no table of docs/configuration.md", c.name, env, def)
			case readme == "host name", env == "FLUSH_CONSUMER":
			case !sameDefault(readme, def):
				t.Errorf("%s: %s defaults to %q in --help, %q in docs/configuration.md", c.name, env, def, readme)
			}
		}
		for env := range c.own {
			if _, ok := help[env]; !ok {
				t.Errorf("%s: docs/configuration.md's table names %s, which --help does not list", c.name, env)
			}
		}
	}
}

var backticked = regexp.MustCompile("`([^`]*)`")

// settingsTables returns each settings table of a document: variable → default ("" for empty).
func settingsTables(readme string) []map[string]string {
	var tables []map[string]string
	var cur map[string]string
	for _, line := range strings.Split(readme, "\n") {
		switch {
		case line == "| variable | default | meaning |" || line == "| setting | default | meaning |":
			cur = map[string]string{}
			tables = append(tables, cur)
			continue
		case cur == nil || strings.HasPrefix(line, "|---"):
			continue
		case !strings.HasPrefix(line, "|"):
			cur = nil
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		names := backticked.FindAllStringSubmatch(cells[1], -1)
		defCell := strings.TrimSpace(cells[2])
		if defCell == "as the workers" {
			continue // VALKEY_* and the like: the workers' rows say
		}
		defs := strings.Split(defCell, ", ")
		for i, n := range names {
			d := defCell
			if len(defs) == len(names) {
				d = defs[i]
			}
			cur[n[1]] = readmeDefault(d)
		}
	}
	return tables
}

func readmeDefault(cell string) string {
	cell = strings.TrimSpace(cell)
	if m := backticked.FindStringSubmatch(cell); m != nil {
		return m[1]
	}
	if cell == "—" || strings.HasPrefix(cell, "empty") {
		return ""
	}
	return cell
}

// helpSettings reads the settings of a --help: variable → default ("" for "(empty)").
func helpSettings(help string) map[string]string {
	out := map[string]string{}
	cols := regexp.MustCompile(`\s{2,}`)
	in := false
	for _, line := range strings.Split(help, "\n") {
		f := cols.Split(strings.TrimSpace(line), 4)
		if len(f) >= 3 && f[0] == "VARIABLE" {
			in = true
			continue
		}
		if !in || len(f) < 3 || f[0] == "-" || !strings.HasPrefix(f[1], "--") {
			continue
		}
		def := f[2]
		if def == "(empty)" {
			def = ""
		}
		out[f[0]] = def
	}
	return out
}

// sameDefault compares defaults as written: durations by value (24h is 24h0m0s).
func sameDefault(readme, help string) bool {
	if readme == help {
		return true
	}
	a, errA := time.ParseDuration(readme)
	b, errB := time.ParseDuration(help)
	return errA == nil && errB == nil && a == b
}
