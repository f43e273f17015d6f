package main

import (
	"context"
	"fmt"
	"io"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/pg"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c common
	cs := config.New("flushworker migrate", "Applies the schema migrations not yet applied, under an advisory lock, and exits.")
	c.addPostgres(cs)
	c.addLog(cs)
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return err
	}
	log := c.logger(stderr, "migrate")
	pool, err := c.connectPostgres(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := pg.Migrate(ctx, pool, log)
	if err != nil {
		return err
	}
	ms, _ := pg.Migrations()
	fmt.Fprintf(stdout, "migrations: %d applied now, schema at version %d\n", n, len(ms))
	return nil
}
