package opscheck_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/chatpipe/chatpipe/internal/testenv"
	"github.com/chatpipe/chatpipe/internal/version"
)

// documents are the Markdown files a user reads: the README, the changelog and docs/.
func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md found (%v)", err)
	}
	return append([]string{filepath.Join(root, "README.md"), filepath.Join(root, "CHANGELOG.md")}, docs...)
}

// prose is a document without its fenced code blocks (blanked, so that lines keep their
// numbers), and its code: the fences' lines and the inline code spans.
func prose(doc string) (text string, code []string) {
	lines := strings.Split(doc, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			lines[i] = ""
			continue
		}
		if in {
			code = append(code, l)
			lines[i] = ""
		}
	}
	text = strings.Join(lines, "\n")
	for _, m := range backticked.FindAllStringSubmatch(text, -1) {
		code = append(code, m[1])
	}
	return text, code
}

// slugs are the anchors GitHub gives a document's headings: lower case, punctuation but - and _
// dropped, spaces as hyphens, a repeated heading numbered.
func slugs(doc string) map[string]bool {
	text, _ := prose(doc)
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range strings.Split(text, "\n") {
		h, ok := strings.CutPrefix(l, "#")
		if !ok {
			continue
		}
		h = strings.TrimSpace(strings.TrimLeft(h, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		s := b.String()
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// eachProseLine calls f with every line of every document's prose (code blocks blanked).
func eachProseLine(t *testing.T, f func(path string, n int, line string)) {
	t.Helper()
	for _, path := range documents(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := prose(string(raw))
		for n, line := range strings.Split(text, "\n") {
			f(path, n+1, line)
		}
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinks: every relative link of the README, the changelog and docs/ names a file that
// exists, and every #anchor a heading of its document.
func TestDocLinks(t *testing.T) {
	t.Parallel()
	eachProseLine(t, func(path string, n int, line string) {
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := path
			if file != "" {
				dest = filepath.Join(filepath.Dir(path), file)
			}
			where := fmt.Sprintf("%s:%d: link %s", rel(path), n, target)
			b, err := os.ReadFile(dest)
			if info, serr := os.Stat(dest); serr != nil || (err != nil && !info.IsDir()) {
				t.Errorf("%s: no file %s", where, rel(dest))
				continue
			}
			if anchor != "" && !slugs(string(b))[anchor] {
				t.Errorf("%s: %s has no heading #%s", where, rel(dest), anchor)
			}
		}
	})
}

func rel(path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return r
}

var makeCall = regexp.MustCompile(`(?:^|[\s;&(])make ([a-z][a-z0-9-]*)`)

// TestDocMakeTargets: every `make X` the documents name is a target of the Makefile.
func TestDocMakeTargets(t *testing.T) {
	t.Parallel()
	mk := string(mustRead(t, "Makefile"))
	for _, path := range documents(t) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, code := prose(string(raw))
		for _, c := range code {
			for _, m := range makeCall.FindAllStringSubmatch(c, -1) {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m[1]) + `:`).MatchString(mk) {
					t.Errorf("%s: `make %s`: the Makefile has no target %s", rel(path), m[1], m[1])
				}
			}
		}
	}
}

// TestAlertRunbooks: every alert's runbook_url points at a heading of docs/alerts.md.
func TestAlertRunbooks(t *testing.T) {
	t.Parallel()
	anchors := slugs(string(mustRead(t, "docs/alerts.md")))
	for _, r := range readRules(t).Groups[0].Rules {
		url := r.Annotations["runbook_url"]
		file, anchor, _ := strings.Cut(url, "#")
		switch {
		case url == "":
			t.Errorf("%s has no runbook_url", r.Alert)
		case !strings.HasSuffix(file, "/docs/alerts.md"):
			t.Errorf("%s: runbook_url %s is not in docs/alerts.md", r.Alert, url)
		case !anchors[anchor]:
			t.Errorf("%s: runbook_url %s: docs/alerts.md has no heading #%s", r.Alert, url, anchor)
		}
	}
}

// TestDocWording: the documents describe the code as it is, in the present tense: no issue
// numbers, build status, aims or first-person narration. Code comments carry no issue numbers
// either.
func TestDocWording(t *testing.T) {
	t.Parallel()
	banned := []struct {
		re   *regexp.Regexp
		what string
	}{
		{regexp.MustCompile(`(?i)\bissues? #?[0-9]+`), "an issue number"},
		{regexp.MustCompile(`(?m)^(?:\*\*Status\.?\*\*|Status:)|Status of|being built`), "a build status"},
		{regexp.MustCompile(`(?i)\bnot met\b|\btargets? [<>≤≥=]|\baimed at\b`), "an aim"},
		{regexp.MustCompile(`(?:^|[\s(])(?:I|[Ww]e|[Oo]ur|[Uu]s)(?:[\s,.;:)]|$)`), "first-person narration"},
	}
	eachProseLine(t, func(path string, n int, line string) {
		for _, b := range banned {
			if m := b.re.FindString(line); m != "" {
				t.Errorf("%s:%d: %s (%q): %s", rel(path), n, b.what, strings.TrimSpace(m), strings.TrimSpace(line))
			}
		}
	})
	issue := banned[0].re
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "node_modules" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if !slices.Contains([]string{".go", ".lua", ".sql"}, filepath.Ext(path)) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for n, line := range strings.Split(string(b), "\n") {
			if m := issue.FindString(line); m != "" {
				t.Errorf("%s:%d: an issue number (%q) in code: say why, not which issue", rel(path), n+1, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVersionAgreesWithChangelog: the newest version of CHANGELOG.md is version.Number, and
// both binaries print it for --version.
func TestVersionAgreesWithChangelog(t *testing.T) {
	t.Parallel()
	m := regexp.MustCompile(`(?m)^## \[([0-9]+\.[0-9]+\.[0-9]+)\]`).FindStringSubmatch(string(mustRead(t, "CHANGELOG.md")))
	if m == nil {
		t.Fatal("CHANGELOG.md has no version heading (## [x.y.z] - date)")
	}
	if m[1] != version.Number {
		t.Errorf("CHANGELOG.md's newest version is %s, internal/version says %s", m[1], version.Number)
	}
	bins := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	for _, name := range []string{"ingest", "flushworker"} {
		out, err := exec.Command(filepath.Join(bins, name), "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", name, err, out)
		}
		if want := name + " " + m[1] + " (commit "; !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version printed %q, want it to begin %q", name, out, want)
		}
	}
}

// request is one curl command of the README and the answer shown under it.
type request struct {
	line       string
	method     string
	url        string
	headers    http.Header
	body       string
	background bool
	status     int
	want       string // the body shown: JSON, or a line a stream must carry
}

// readmeRequests reads the README's first requests: each `curl` command (continued lines
// joined) with the "# → STATUS BODY" line under it.
func readmeRequests(t *testing.T) []request {
	t.Helper()
	_, code := prose(string(mustRead(t, "README.md")))
	var out []request
	for i := 0; i < len(code); i++ {
		line := strings.TrimSpace(code[i])
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(code) {
			i++
			line = strings.TrimSuffix(line, `\`) + " " + strings.TrimSpace(code[i])
		}
		r := parseCurl(t, line)
		if i+1 >= len(code) || !strings.HasPrefix(strings.TrimSpace(code[i+1]), "# → ") {
			t.Fatalf("README: %s has no \"# → STATUS BODY\" line under it", line)
		}
		i++
		shown := strings.TrimPrefix(strings.TrimSpace(code[i]), "# → ")
		status, want, _ := strings.Cut(shown, " ")
		if _, err := fmt.Sscan(status, &r.status); err != nil {
			t.Fatalf("README: %q: not a status", shown)
		}
		r.want = want
		out = append(out, r)
	}
	return out
}

// parseCurl reads the curl options the README uses: -s, -N, -X, -H, -d, a URL, a final &.
func parseCurl(t *testing.T, line string) request {
	t.Helper()
	r := request{line: line, method: http.MethodGet, headers: http.Header{}}
	words := shellWords(strings.TrimSpace(strings.SplitN(line, "# ", 2)[0]))
	if n := len(words); n > 0 && words[n-1] == "&" {
		r.background, words = true, words[:n-1]
	}
	for i := 1; i < len(words); i++ {
		w := words[i]
		next := func() string {
			i++
			if i >= len(words) {
				t.Fatalf("README: %s: %s needs a value", line, w)
			}
			return words[i]
		}
		switch {
		case w == "-s" || w == "-N" || w == "-sN":
		case strings.HasPrefix(w, "-X") && len(w) > 2:
			r.method = w[2:]
		case w == "-X":
			r.method = next()
		case w == "-H":
			k, v, _ := strings.Cut(next(), ":")
			r.headers.Set(k, strings.TrimSpace(v))
		case w == "-d":
			r.body = next()
		case strings.HasPrefix(w, "-"):
			t.Fatalf("README: %s: the test does not know curl's %s", line, w)
		default:
			r.url = w
		}
	}
	if r.url == "" {
		t.Fatalf("README: %s: no URL", line)
	}
	return r
}

// shellWords splits a command line as a shell would, for the quoting the README uses.
func shellWords(s string) []string {
	var out []string
	var b strings.Builder
	quote, any := rune(0), false
	for _, c := range s {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			b.WriteRune(c)
		case c == '\'' || c == '"':
			quote, any = c, true
		case c == ' ' || c == '\t':
			if b.Len() > 0 || any {
				out = append(out, b.String())
			}
			b.Reset()
			any = false
		default:
			b.WriteRune(c)
		}
	}
	if b.Len() > 0 || any {
		out = append(out, b.String())
	}
	return out
}

// sameShape reports whether got has every key of want, with values of the same JSON type,
// arrays compared by their first element.
func sameShape(want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("want an object, got %T", got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return "no key " + k
			}
			if d := sameShape(wv, gv); d != "" {
				return k + ": " + d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) < len(w) {
			return fmt.Sprintf("want an array of %d or more, got %v", len(w), got)
		}
		for i := range w {
			if d := sameShape(w[i], g[i]); d != "" {
				return fmt.Sprintf("[%d]: %s", i, d)
			}
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return fmt.Sprintf("want a %T, got %T (%v)", want, got, got)
		}
	}
	return ""
}

// TestREADMEFirstRequests runs the README's first requests, as shown, against a real ingest
// (on a fresh Valkey, with PostgreSQL for history and edits), in order: each must answer the
// status shown and a body of the shape shown; a request sent in the background (a live tail)
// must carry the line shown before the test ends.
func TestREADMEFirstRequests(t *testing.T) {
	t.Parallel()
	reqs := readmeRequests(t)
	if len(reqs) < 5 {
		t.Fatalf("README: %d first requests found, want send, read, follow, edit and delete", len(reqs))
	}
	bins := testenv.Build(t, "", "../../cmd/ingest")
	v := testenv.StartValkey(t)
	dsn := testenv.Postgres(t)
	testenv.MigratedPool(t, dsn, 1)
	addr := testenv.FreeAddr(t)
	startBinary(t, filepath.Join(bins, "ingest"), "INGEST_ADDR="+addr, "VALKEY_ADDR="+v.Addr, "DATABASE_URL="+dsn)
	testenv.WaitReady(t, "http://"+addr+"/readyz", 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type stream struct {
		r     request
		lines chan string
	}
	var streams []stream
	for _, r := range reqs {
		url := "http://" + strings.Replace(r.url, "localhost:8080", addr, 1)
		req, err := http.NewRequestWithContext(ctx, r.method, url, strings.NewReader(r.body))
		if err != nil {
			t.Fatalf("%s: %v", r.line, err)
		}
		req.Header = r.headers
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", r.line, err)
		}
		if resp.StatusCode != r.status {
			resp.Body.Close()
			t.Fatalf("%s: status %d, the README shows %d", r.line, resp.StatusCode, r.status)
		}
		if r.background {
			s := stream{r, make(chan string, 100)}
			streams = append(streams, s)
			go func() {
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					select {
					case s.lines <- sc.Text():
					default:
					}
				}
				close(s.lines)
			}()
			continue
		}
		var body strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
		resp.Body.Close()
		if r.want == "" {
			if body.Len() != 0 {
				t.Errorf("%s: body %q, the README shows none", r.line, body.String())
			}
			continue
		}
		var want, got any
		if err := json.Unmarshal([]byte(r.want), &want); err != nil {
			t.Fatalf("README: %s: the body shown is not JSON: %v", r.line, err)
		}
		if err := json.Unmarshal([]byte(body.String()), &got); err != nil {
			t.Fatalf("%s: the answer is not JSON: %v: %s", r.line, err, body.String())
		}
		if d := sameShape(want, got); d != "" {
			t.Errorf("%s: the answer %s is not shaped as the README shows (%s)", r.line, body.String(), d)
		}
	}
	for _, s := range streams {
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case l, ok := <-s.lines:
				if !ok {
					t.Fatalf("%s: the stream ended without the line %q", s.r.line, s.r.want)
				}
				found = l == s.r.want
			case <-deadline:
				t.Fatalf("%s: no line %q within 10 s", s.r.line, s.r.want)
			}
		}
	}
}
