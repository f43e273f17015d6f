// Package config reads settings from environment variables, each with a matching command-line
// flag that overrides it (VALKEY_ADDR and --valkey-addr), validates them as they are read, and
// prints them all, with their defaults, for --help.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ErrHelp is returned by Parse when the user asked for help; the usage has been printed.
var ErrHelp = flag.ErrHelp

// Error is an invalid setting: exit with status 2 and print it as one line.
type Error struct {
	// Setting names the environment variable or flag at fault.
	Setting string
	// Problem says what is wrong, without repeating a secret value.
	Problem string
}

func (e *Error) Error() string { return "invalid setting " + e.Setting + ": " + e.Problem }

// ExitCode maps a command's error to its exit status: 0 for none or a help request, 2 for an
// invalid setting or usage (or a deployment refused for a setting, which has an
// InvalidSetting method), 1 for anything else. main prints the error and exits with it.
func ExitCode(err error) int {
	var cerr *Error
	var setup interface{ InvalidSetting() string }
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return 0
	case errors.As(err, &cerr), errors.As(err, &setup):
		return 2
	}
	return 1
}

// Set is a set of settings of one command.
type Set struct {
	name     string
	summary  string
	fs       *flag.FlagSet
	settings []*setting
	failed   *Error
	// usageLine, when set, replaces "Usage: name [flags]".
	usageLine string
}

type setting struct {
	env, flag, def, usage string
	secret                bool
	parse                 func(string) error
	// set is whether the environment or the command line gave the setting a value.
	set bool
	// file is the setting's _FILE form (secrets only): the path of a file holding the value.
	file *setting
	// path is the value of a _FILE form; from, the variable or flag that gave it.
	path, from string
}

// New returns an empty set for the command name, described by summary in --help.
func New(name, summary string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &Set{name: name, summary: summary, fs: fs}
}

// FlagName returns the flag matching an environment variable: VALKEY_ADDR → valkey-addr.
func FlagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

func (s *Set) add(env, def, usage string, secret bool, parse func(string) error) *setting {
	return s.addFlag(env, def, usage, secret, parse, s.fs.Func)
}

func (s *Set) addFlag(env, def, usage string, secret bool, parse func(string) error, define func(string, string, func(string) error)) *setting {
	st := &setting{env: env, flag: FlagName(env), def: def, usage: usage, secret: secret, parse: parse}
	s.define(st, define)
	return st
}

func (s *Set) define(st *setting, define func(string, string, func(string) error)) {
	s.settings = append(s.settings, st)
	define(st.flag, st.usage, func(v string) error {
		st.set, st.from = true, "--"+st.flag
		if err := st.parse(v); err != nil {
			s.failed = &Error{Setting: "--" + st.flag, Problem: problem(st, v, err)}
			return err
		}
		return nil
	})
}

func problem(st *setting, v string, err error) string {
	if st.secret {
		return err.Error()
	}
	// Keep the error one short line whatever was passed in.
	const show = 48
	if len(v) > show {
		return fmt.Sprintf("%q… (%d bytes): %v", v[:show], len(v), err)
	}
	return fmt.Sprintf("%q: %v", v, err)
}

// String adds a string setting; check, when not nil, validates a value.
func (s *Set) String(p *string, env, def, usage string, check func(string) error) {
	*p = def
	s.add(env, def, usage, false, func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	})
}

// Secret adds a string setting whose value is never printed in an error; its default, shown
// by --help, must not hold a secret. It comes with a _FILE form (DATABASE_URL_FILE,
// --database-url-file), the convention of the official container images for Docker and
// Kubernetes secrets: the path of a file whose content, trailing newlines trimmed, is the value.
// Setting both forms is an error; File returns the path, for reading the file again.
func (s *Set) Secret(p *string, env, def, usage string, check func(string) error) {
	*p = def
	st := s.add(env, def, usage, true, func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	})
	st.file = &setting{env: env + FileSuffix, flag: FlagName(env + FileSuffix), usage: "file holding " + env + " (a Docker or Kubernetes secret; trailing newlines trimmed); not with " + env}
	st.file.parse = func(v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("an empty path")
		}
		st.file.path = v
		return nil
	}
	s.define(st.file, s.fs.Func)
}

// FileSuffix ends the name of a secret's _FILE form.
const FileSuffix = "_FILE"

// File returns the path a secret was read from (its _FILE form), or "" when it was not.
func (s *Set) File(env string) string {
	for _, st := range s.settings {
		if st.env == env && st.file != nil {
			return st.file.path
		}
	}
	return ""
}

// MaxSecretFile is the largest secret file read: a token list, a DSN or a password is far
// smaller, and a bigger file is a wrong path (a log, a device), not a secret.
const MaxSecretFile = 64 << 10

// ReadSecretFile reads the secret file of the setting named (an X_FILE form) at path: its
// content without trailing newlines. Its errors name the setting and the path, never the content.
func ReadSecretFile(setting, path string) (string, error) {
	// Stat before opening: opening a FIFO would block until something writes to it.
	fi, err := os.Stat(path)
	if err != nil {
		return "", &Error{Setting: setting, Problem: "cannot read the file: " + pathErr(err)}
	}
	if !fi.Mode().IsRegular() {
		return "", &Error{Setting: setting, Problem: showPath(path) + " is not a regular file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", &Error{Setting: setting, Problem: "cannot read the file: " + pathErr(err)}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretFile+1))
	switch {
	case err != nil:
		return "", &Error{Setting: setting, Problem: "cannot read the file: " + pathErr(err)}
	case len(b) > MaxSecretFile:
		return "", &Error{Setting: setting, Problem: fmt.Sprintf("%s is larger than %d bytes: not a secret file", showPath(path), MaxSecretFile)}
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", &Error{Setting: setting, Problem: showPath(path) + " is empty"}
	}
	return v, nil
}

// pathErr is an *os.PathError's text ("open /run/secrets/x: permission denied"), which names
// the path and the reason and nothing read.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + " " + showPath(pe.Path) + ": " + pe.Err.Error()
	}
	return err.Error()
}

// showPath quotes a path, shortened, so that an error stays one short line whatever it holds.
func showPath(p string) string {
	const show = 160
	if len(p) > show {
		return strconv.Quote(p[:show]) + "…"
	}
	return strconv.Quote(p)
}

// FlagString adds a command-line option that has no environment variable (a command's
// arguments, such as which stream to list).
func (s *Set) FlagString(p *string, flag, def, usage string, check func(string) error) {
	*p = def
	s.define(&setting{flag: flag, def: def, usage: usage, parse: func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	}}, s.fs.Func)
}

// FlagInt adds an integer command-line option within [lo, hi] that has no environment variable.
func (s *Set) FlagInt(p *int, flag string, def, lo, hi int, usage string) {
	*p = def
	s.define(&setting{flag: flag, def: strconv.Itoa(def), usage: usage, parse: intParser(p, lo, hi)}, s.fs.Func)
}

// FlagBool adds a boolean command-line option that has no environment variable.
func (s *Set) FlagBool(p *bool, flag, usage string) {
	s.define(&setting{flag: flag, def: "false", usage: usage, parse: func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("not true or false")
		}
		*p = b
		return nil
	}}, s.fs.BoolFunc)
}

func intParser(p *int, lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not an integer")
		}
		if n < lo || n > hi {
			return fmt.Errorf("must be in %d..%d", lo, hi)
		}
		*p = n
		return nil
	}
}

// Int adds an integer setting within [lo, hi].
func (s *Set) Int(p *int, env string, def, lo, hi int, usage string) {
	*p = def
	s.add(env, strconv.Itoa(def), usage, false, intParser(p, lo, hi))
}

// Bool adds a boolean setting (true/false, 1/0).
func (s *Set) Bool(p *bool, env string, def bool, usage string) {
	*p = def
	// A bool flag may stand alone (--valkey-tls) or take a value (--valkey-tls=false).
	s.addFlag(env, strconv.FormatBool(def), usage, false, func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not true or false")
		}
		*p = b
		return nil
	}, s.fs.BoolFunc)
}

// Duration adds a duration setting (Go syntax: 500ms, 10s, 2m) within [lo, hi].
func (s *Set) Duration(p *time.Duration, env string, def, lo, hi time.Duration, usage string) {
	*p = def
	s.add(env, def.String(), usage, false, func(v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return errors.New("not a duration (examples: 500ms, 10s, 2m)")
		}
		if d < lo || d > hi {
			return fmt.Errorf("must be in %s..%s", lo, hi)
		}
		*p = d
		return nil
	})
}

// SetSummary replaces the description printed by --help.
func (s *Set) SetSummary(summary string) { s.summary = summary }

// SetUsageLine replaces the "Usage: name [flags]" line of --help.
func (s *Set) SetUsageLine(line string) { s.usageLine = line }

// Parse reads the environment through getenv, then args, which override it. It returns ErrHelp
// after printing the usage to help for -h or --help, and an *Error for anything invalid.
func (s *Set) Parse(args []string, getenv func(string) string, help io.Writer) error {
	for _, st := range s.settings {
		if st.env == "" {
			continue
		}
		v, ok := lookup(getenv, st.env)
		if !ok {
			continue
		}
		st.set, st.from = true, st.env
		if err := st.parse(v); err != nil {
			return &Error{Setting: st.env, Problem: problem(st, v, err)}
		}
	}
	if err := s.fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			s.PrintUsage(help)
			return ErrHelp
		case s.failed != nil:
			return s.failed
		}
		// flag's own errors: an unknown flag or a flag without its value.
		return &Error{Setting: "command line", Problem: strings.TrimPrefix(err.Error(), "flag ")}
	}
	if s.fs.NArg() > 0 {
		return &Error{Setting: "command line", Problem: fmt.Sprintf("unexpected argument %q", s.fs.Arg(0))}
	}
	return s.readFiles()
}

// readFiles sets each secret given by its _FILE form from its file, once the environment and
// the command line are read.
func (s *Set) readFiles() error {
	for _, st := range s.settings {
		if st.file == nil || st.file.path == "" {
			continue
		}
		if st.set {
			return &Error{Setting: st.file.from, Problem: "set " + st.env + " or " + st.file.env + ", not both"}
		}
		v, err := ReadSecretFile(st.file.from, st.file.path)
		if err != nil {
			return err
		}
		if err := st.parse(v); err != nil {
			return &Error{Setting: st.file.from, Problem: "the file's content: " + err.Error()}
		}
	}
	return nil
}

// lookup treats a variable set to the empty string as unset, as shells and compose files often
// leave them that way.
func lookup(getenv func(string) string, env string) (string, bool) {
	v := getenv(env)
	return v, v != ""
}

// PrintUsage prints every setting with its environment variable, flag and default.
func (s *Set) PrintUsage(w io.Writer) {
	line := s.usageLine
	if line == "" {
		line = "Usage: " + s.name + " [flags]"
	}
	fmt.Fprintf(w, "%s\n\n%s\n\nSettings (an environment variable, or its flag, which wins; - : flag only):\n\n", line, s.summary)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tFLAG\tDEFAULT\tMEANING")
	for _, st := range s.settings {
		def := st.def
		if def == "" {
			def = "(empty)"
		}
		env := st.env
		if env == "" {
			env = "-"
		}
		fmt.Fprintf(tw, "  %s\t--%s\t%s\t%s\n", env, st.flag, def, st.usage)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\n  -h, --help  print this help")
}

// Loopback reports whether a listen address (host:port) accepts loopback connections only:
// an empty host (every interface) and any host name but localhost do not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OptionalAddr is Addr, or empty for "off".
func OptionalAddr(v string) error {
	if v == "" {
		return nil
	}
	return Addr(v)
}

// hostName reports whether h can be a DNS name: letters, digits, '-', '_' and '.'.
func hostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Addr checks a host:port address; the host may be empty (all interfaces).
func Addr(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New("not host:port")
	}
	if host != "" && net.ParseIP(host) == nil && !hostName(host) {
		return errors.New("not a host name or address")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return errors.New("port must be 0..65535")
	}
	return nil
}
