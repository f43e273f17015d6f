package config_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/chatpipe/chatpipe/internal/config"
)

// secretSet is a set with one secret, DB_URL, whose values must start with "pg:".
func secretSet(p *string) *config.Set {
	s := config.New("t", "test")
	s.Secret(p, "DB_URL", "pg:default", "a secret", func(v string) error {
		if !strings.HasPrefix(v, "pg:") {
			return errors.New("must start with pg:")
		}
		return nil
	})
	return s
}

func TestSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "pg:from-file\n")
	crlf := write("crlf", "pg:crlf\r\n\r\n")
	inner := write("inner", "pg:a\nb\n")
	bad := write("bad", "topsecret-not-a-url\n")
	empty := write("empty", "\n")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := write("huge", "pg:"+strings.Repeat("x", config.MaxSecretFile))
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // the value, or "" when an error is wanted
		// setting and problem, for an error: the setting named and words of the problem.
		setting, problem string
	}{
		{name: "default", want: "pg:default"},
		{name: "value", env: map[string]string{"DB_URL": "pg:env"}, want: "pg:env"},
		{name: "file", env: map[string]string{"DB_URL_FILE": good}, want: "pg:from-file"},
		{name: "file by flag", args: []string{"--db-url-file", good}, want: "pg:from-file"},
		{name: "CRLF trimmed", env: map[string]string{"DB_URL_FILE": crlf}, want: "pg:crlf"},
		{name: "inner newline kept", env: map[string]string{"DB_URL_FILE": inner}, want: "pg:a\nb"},
		{name: "empty variable is unset", env: map[string]string{"DB_URL": "", "DB_URL_FILE": good}, want: "pg:from-file"},
		{name: "both in the environment", env: map[string]string{"DB_URL": "pg:env", "DB_URL_FILE": good}, setting: "DB_URL_FILE", problem: "set DB_URL or DB_URL_FILE, not both"},
		{name: "value flag and file variable", env: map[string]string{"DB_URL_FILE": good}, args: []string{"--db-url", "pg:flag"}, setting: "DB_URL_FILE", problem: "not both"},
		{name: "missing file", env: map[string]string{"DB_URL_FILE": filepath.Join(dir, "nope")}, setting: "DB_URL_FILE", problem: "no such file"},
		{name: "a folder", env: map[string]string{"DB_URL_FILE": dir}, setting: "DB_URL_FILE", problem: "not a regular file"},
		{name: "a device", env: map[string]string{"DB_URL_FILE": "/dev/zero"}, setting: "DB_URL_FILE", problem: "not a regular file"},
		{name: "a FIFO", env: map[string]string{"DB_URL_FILE": fifo}, setting: "DB_URL_FILE", problem: "not a regular file"},
		{name: "empty file", env: map[string]string{"DB_URL_FILE": empty}, setting: "DB_URL_FILE", problem: "is empty"},
		{name: "huge file", env: map[string]string{"DB_URL_FILE": huge}, setting: "DB_URL_FILE", problem: "larger than"},
		{name: "invalid content", env: map[string]string{"DB_URL_FILE": bad}, setting: "DB_URL_FILE", problem: "must start with pg:"},
		{name: "empty path flag", args: []string{"--db-url-file="}, setting: "--db-url-file", problem: "empty path"},
		{name: "blank path", env: map[string]string{"DB_URL_FILE": "  "}, setting: "DB_URL_FILE", problem: "empty path"},
		{name: "hostile path", env: map[string]string{"DB_URL_FILE": "$(reboot)\x00/etc"}, setting: "DB_URL_FILE", problem: "cannot read"},
		{name: "path with a newline", env: map[string]string{"DB_URL_FILE": "/nonexistent/a\nb"}, setting: "DB_URL_FILE", problem: "no such file"},
		{name: "path too long", env: map[string]string{"DB_URL_FILE": "/" + strings.Repeat("d", 5000)}, setting: "DB_URL_FILE", problem: "cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v string
			s := secretSet(&v)
			err := s.Parse(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.setting == "" {
				if err != nil || v != tt.want {
					t.Fatalf("value %q, err %v; want %q", v, err, tt.want)
				}
				return
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) || cerr.Setting != tt.setting || !strings.Contains(cerr.Problem, tt.problem) {
				t.Fatalf("err %v; want an invalid setting %s saying %q", err, tt.setting, tt.problem)
			}
			if msg := err.Error(); strings.Contains(msg, "topsecret") || strings.Contains(msg, "xxxx") || strings.Contains(msg, "\n") || len(msg) > 300 {
				t.Errorf("the error repeats the file's content or is not one line: %q", msg)
			}
			if config.ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", config.ExitCode(err))
			}
		})
	}
}

func TestFileAndHelp(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "s")
	_ = os.WriteFile(p, []byte("pg:x"), 0o600)
	var v string
	s := secretSet(&v)
	if err := s.Parse(nil, func(k string) string { return map[string]string{"DB_URL_FILE": p}[k] }, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s.File("DB_URL") != p || s.File("OTHER") != "" {
		t.Errorf("File(DB_URL) = %q, want %q", s.File("DB_URL"), p)
	}
	var help strings.Builder
	s.PrintUsage(&help)
	if !strings.Contains(help.String(), "DB_URL_FILE") || !strings.Contains(help.String(), "--db-url-file") {
		t.Errorf("--help does not list the _FILE form:\n%s", help.String())
	}
}

func TestLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:1": true, "[::1]:8080": true, "localhost:8080": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:8080": false,
		"example.com:80": false, "localhost.evil.com:80": false, "no-port": false, "": false,
	} {
		if got := config.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
