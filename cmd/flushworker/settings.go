package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/telemetry"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

// common are the settings every command shares.
type common struct {
	valkey      valkeyconn.Config
	keyPrefix   string
	layoutName  string
	partitions  int
	layout      keyspace.Layout
	databaseURL string
	pgMaxConns  int
	logLevel    string
	logFormat   string
}

func (c *common) addValkey(cs *config.Set) {
	config.Valkey(cs, &c.valkey)
	cs.Duration(&c.valkey.Timeout, "VALKEY_TIMEOUT", 5*time.Second, 10*time.Millisecond, time.Minute, "bound on every Valkey call")
	cs.String(&c.keyPrefix, "KEY_PREFIX", "", "prefix of every Valkey key", keyspace.ValidatePrefix)
	config.Layout(cs, &c.layoutName, &c.partitions)
}

func (c *common) addPostgres(cs *config.Set) {
	cs.Secret(&c.databaseURL, "DATABASE_URL", "postgres://localhost:5432/chatpipe", "PostgreSQL URL or DSN (sslmode, password, … as libpq takes them)", pg.CheckDSN)
	cs.Int(&c.pgMaxConns, "FLUSH_PG_MAX_CONNS", 4, 1, 1000, "most PostgreSQL connections of one replica")
}

func (c *common) addLog(cs *config.Set) {
	cs.String(&c.logLevel, "LOG_LEVEL", "info", "debug, info, warn or error", telemetry.CheckLogLevel)
	cs.String(&c.logFormat, "LOG_FORMAT", "text", "text or json", telemetry.CheckLogFormat)
}

func (c *common) logger(w io.Writer, component string) *slog.Logger {
	return telemetry.NewLogger(w, c.logLevel, c.logFormat, component)
}

// checkValkey builds the layout and checks the Valkey settings together, once all are read.
func (c *common) checkValkey() error {
	var err error
	// The default channel names a public ring, which the workers never touch.
	if c.layout, err = config.NewLayout(c.layoutName, c.keyPrefix, c.partitions, "", &c.valkey); err != nil {
		return err
	}
	return config.CheckValkey(c.valkey)
}

func (c *common) connectValkey(ctx context.Context, log *slog.Logger) (valkey.Client, error) {
	cl, err := valkeyconn.Connect(ctx, c.valkey, log)
	return cl, config.SetupErr(err)
}

func (c *common) connectPostgres(ctx context.Context) (*pgxpool.Pool, error) {
	return pg.Connect(ctx, c.databaseURL, int32(c.pgMaxConns))
}

// hostname is the default consumer name: stable per replica (a pod or container keeps it
// across restarts), so a restarted replica finds its own pending entries.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || message.ValidateID("consumer", h) != nil {
		return "flushworker"
	}
	return h
}

func checkConsumer(v string) error {
	var fe *message.FieldError
	if err := message.ValidateID("consumer", v); errors.As(err, &fe) {
		return errors.New(fe.Problem)
	}
	return nil
}
