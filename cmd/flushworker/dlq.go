package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/streams"
)

const dlqUsage = `Usage: flushworker dlq list|replay|purge [flags]

Dead letters are flush-stream entries that can never be written as they are (not decodable,
refused by PostgreSQL, or delivered too often). Each keeps the original's fields and adds
error, original_id, deliveries, consumer and failed_at.

  list     print dead letters, oldest first
  replay   put dead letters back on their flush stream (after fixing the cause)
  purge    delete dead letters for good

Run 'flushworker dlq COMMAND --help' for its flags.
`

type dlqSettings struct {
	common
	stream string
	count  int
	ids    string
	all    bool
	asJSON bool
}

var streamIDPattern = regexp.MustCompile(`^\d+-\d+$`)

func checkStream(v string) error {
	switch v {
	case "message", "private_message", "all":
		return nil
	}
	return errors.New("must be message, private_message or all")
}

func checkIDs(v string) error {
	for _, id := range strings.Split(v, ",") {
		if !streamIDPattern.MatchString(strings.TrimSpace(id)) {
			return fmt.Errorf("%.40q is not a stream id (like 1732528800000-0)", id)
		}
	}
	return nil
}

func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Fprint(stdout, dlqUsage)
		if len(args) == 0 {
			return errUsage("dlq needs a command: list, replay or purge")
		}
		return config.ErrHelp
	}
	sub, args := args[0], args[1:]
	var s dlqSettings
	cs := config.New("flushworker dlq "+sub, "")
	s.addValkey(cs)
	s.addLog(cs)
	cs.FlagString(&s.stream, "stream", "all", "message, private_message or all", checkStream)
	switch sub {
	case "list":
		cs = describe(cs, "Prints dead letters, oldest first.")
		cs.FlagInt(&s.count, "count", 100, 1, 1_000_000, "most dead letters to print per stream")
		cs.FlagBool(&s.asJSON, "json", "print one JSON object per line")
	case "replay", "purge":
		verb := map[string]string{"replay": "Puts dead letters back on their flush stream, each atomically with its removal.", "purge": "Deletes dead letters for good."}[sub]
		cs = describe(cs, verb)
		cs.FlagString(&s.ids, "ids", "", "comma-separated dead-letter ids (with one --stream)", checkIDs)
		cs.FlagBool(&s.all, "all", "every dead letter of the stream(s)")
		cs.FlagInt(&s.count, "count", 0, 0, 100_000_000, "with --all: at most this many per stream (0: no limit)")
	default:
		fmt.Fprint(stdout, dlqUsage)
		return errUsage("unknown dlq command %q (list, replay, purge)", sub)
	}
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return err
	}
	if err := s.checkValkey(); err != nil {
		return err
	}
	if sub != "list" {
		switch {
		case (s.ids == "") == !s.all:
			return &config.Error{Setting: "command line", Problem: "give either --ids or --all"}
		case s.ids != "" && s.stream == "all":
			return &config.Error{Setting: "command line", Problem: "--ids needs --stream message or private_message"}
		}
	}
	log := s.logger(stderr, "dlq")
	client, err := s.connectValkey(ctx, log)
	if err != nil {
		return err
	}
	defer client.Close()
	dl := streams.NewDeadLetters(client)
	var chosen []keyspace.FlushStream
	for _, fs := range s.layout.FlushStreams() {
		if s.stream == "all" || s.stream == fs.Kind.String() {
			chosen = append(chosen, fs)
		}
	}
	if sub == "list" {
		for _, fs := range chosen {
			if err := dlqList(ctx, dl, fs, s, stdout); err != nil {
				return err
			}
		}
		return nil
	}
	if s.ids != "" {
		return dlqApplyIDs(ctx, dl, chosen, s, sub, stdout)
	}
	for _, fs := range chosen {
		if err := dlqApply(ctx, dl, fs, s, sub, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

// dlqApplyIDs replays or purges the given ids, each from the stream (of the chosen kind, in any
// partition) that holds it.
func dlqApplyIDs(ctx context.Context, dl *streams.DeadLetters, chosen []keyspace.FlushStream, s dlqSettings, sub string, stdout io.Writer) error {
	ids := strings.Split(s.ids, ",")
	for i := range ids {
		ids[i] = strings.TrimSpace(ids[i])
	}
	op := streams.DLQOp(sub)
	done, missing, err := dl.ApplyIDs(ctx, chosen, op, ids)
	if err != nil {
		return err
	}
	verb := op.Past()
	fmt.Fprintf(stdout, "%s: %s %d dead letters", s.stream, verb, done)
	if missing > 0 {
		fmt.Fprintf(stdout, " (%d ids not found)", missing)
	}
	fmt.Fprintln(stdout)
	return nil
}

func describe(cs *config.Set, summary string) *config.Set {
	cs.SetSummary(summary)
	return cs
}

func dlqList(ctx context.Context, dl *streams.DeadLetters, fs keyspace.FlushStream, s dlqSettings, stdout io.Writer) error {
	letters, err := dl.List(ctx, fs, "", s.count)
	if err != nil {
		return err
	}
	total, err := dl.Len(ctx, fs)
	if err != nil {
		return err
	}
	if fs.Partition != "" && total == 0 {
		return nil // sixteen empty partitions say nothing
	}
	if !s.asJSON {
		fmt.Fprintf(stdout, "# %s: %d dead letters\n", fs.Label(), total)
	}
	enc := json.NewEncoder(stdout)
	for _, l := range letters {
		if s.asJSON {
			obj := map[string]any{"stream": fs.Kind.String(), "id": l.ID, "fields": l.Fields}
			if fs.Partition != "" {
				obj["partition"] = fs.Partition
			}
			if err := enc.Encode(obj); err != nil {
				return err
			}
			continue
		}
		f := l.Fields
		payload := f["payload"]
		if len(payload) > 80 {
			payload = payload[:80] + "…"
		}
		fmt.Fprintf(stdout, "%s cache_id=%s kind=%s reason=%s deliveries=%s consumer=%s failed_at=%s\n  error: %s\n  payload: %q\n",
			l.ID, f["cache_id"], f["kind"], l.Reason(), f["deliveries"], f["consumer"], f["failed_at"], f["error"], payload)
	}
	return nil
}

// dlqApply replays or purges every dead letter of fs (up to --count), printing progress every
// 1000 entries.
func dlqApply(ctx context.Context, dl *streams.DeadLetters, fs keyspace.FlushStream, s dlqSettings, sub string, stdout, stderr io.Writer) error {
	total, err := dl.Len(ctx, fs)
	if err != nil {
		return err
	}
	done, err := dl.ApplyAll(ctx, fs, streams.DLQOp(sub), streams.ApplyAllOptions{Limit: s.count, Progress: func(done int) {
		if done%1000 == 0 {
			fmt.Fprintf(stderr, "%s %s: %d of %d\n", sub, fs.Label(), done, total)
		}
	}})
	if err != nil {
		return err
	}
	if fs.Partition != "" && done == 0 {
		return nil
	}
	fmt.Fprintf(stdout, "%s: %s %d dead letters\n", fs.Label(), streams.DLQOp(sub).Past(), done)
	return nil
}
