// Command flushworker persists chatpipe's flush streams to PostgreSQL: replicas share one
// consumer group per stream. Subcommands: run (the default), migrate, dlq list|replay|purge,
// console.
// See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if code := config.ExitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "flushworker:", err)
		os.Exit(code)
	}
}

// errUsage is a command line that names no known command.
func errUsage(format string, args ...any) error {
	return &config.Error{Setting: "command line", Problem: fmt.Sprintf(format, args...)}
}

const topUsage = `Usage: flushworker [command] [flags]

chatpipe's flush worker: persists the flush streams to PostgreSQL, exactly once.

Commands:
  run                     consume the flush streams (the default when no command is given)
  migrate                 apply the schema migrations and exit
  dlq list|replay|purge   show, replay or delete dead letters
  console                 serve the operator console (queues, consumers, dead letters)

Run 'flushworker COMMAND --help' for a command's settings, 'flushworker --version' for the version.
`

// run dispatches to a command; main only maps its error to an exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if version.Asked(args) {
		_, err := fmt.Fprintln(stdout, version.String("flushworker"))
		return err
	}
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, topUsage)
		return config.ErrHelp
	}
	switch cmd {
	case "run":
		return runWorker(ctx, args, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, args, getenv, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, args, getenv, stdout, stderr)
	case "console":
		return runConsole(ctx, args, getenv, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, topUsage)
		return nil
	}
	return errUsage("unknown command %q (run, migrate, dlq, console)", cmd)
}
