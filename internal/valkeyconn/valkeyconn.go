// Package valkeyconn connects to Valkey for both binaries — a standalone server, or the primary
// that Sentinel names — waits for it to come up, checks that the server is the kind the settings
// say and is configured so that nothing accepted can be evicted, and watches its memory.
package valkeyconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Mode is how chatpipe reaches Valkey.
type Mode string

// The modes of VALKEY_MODE.
const (
	// Standalone is one server at one address; valkey-go's single client is forced, so that a
	// cluster-enabled server is refused instead of guessed.
	Standalone Mode = "standalone"
	// Sentinel asks the Sentinels for the primary of a master set and follows failovers.
	Sentinel Mode = "sentinel"
	// Cluster is Valkey Cluster through valkey-go's cluster client: it needs the partitioned key
	// layout, where every script's keys are in one slot (Config.AllowCluster).
	Cluster Mode = "cluster"
)

// Modes lists the accepted values of VALKEY_MODE.
var Modes = []Mode{Standalone, Sentinel, Cluster}

// Config says how to reach Valkey.
type Config struct {
	// Mode selects the topology. Default Standalone.
	Mode Mode
	// Addr is a comma-separated list of host:port: the server (standalone), the Sentinels
	// (sentinel) or seed nodes (cluster). Required unless URL is set.
	Addr string
	// URL, when set, is a valkey:// or valkeys:// URL in valkey-go's syntax (credentials, db,
	// addr= for more addresses, master_set= for Sentinel); it replaces Addr, Username,
	// Password and the TLS settings.
	URL string
	// Username and Password authenticate (ACL user, or password only). Default: none.
	Username, Password string
	// SentinelMaster names the primary set the Sentinels watch. Required in sentinel mode
	// unless the URL has master_set.
	SentinelMaster string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels. Default: none.
	SentinelUsername, SentinelPassword string
	// Timeout bounds dialing and each read or write on a connection. Default 1s.
	Timeout time.Duration
	// TLS enables TLS; CAFile, when set, is the PEM file of the CAs to trust, and ServerName
	// overrides the name checked in the server's certificate.
	TLS        bool
	CAFile     string
	ServerName string
	// FlushDelay lets valkey-go's writer wait up to this long after a write to gather the calls
	// of concurrent requests into the next one: fewer write syscalls for a few µs of latency.
	FlushDelay time.Duration
	// AllowCluster permits Cluster mode: the caller's key layout keeps each script in one slot.
	AllowCluster bool
	// AllowEviction lets chatpipe run on a server whose maxmemory-policy evicts keys. Accepted
	// messages and ids can then vanish; a warning is logged and a metric set. Default false.
	AllowEviction bool
}

// SetupError is a deployment that chatpipe must not run on as configured: the wrong mode for
// the server, an evicting memory policy, a durability level the server cannot give. The
// command exits with status 2 and one line naming the setting.
type SetupError struct {
	// Setting names the environment variable to change.
	Setting string
	// Problem says what is wrong and how to fix it.
	Problem string
}

func (e *SetupError) Error() string { return e.Setting + ": " + e.Problem }

// InvalidSetting names the setting at fault; config.ExitCode maps such errors to status 2.
func (e *SetupError) InvalidSetting() string { return e.Setting }

// Addrs returns the addresses of Addr.
func (c Config) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Where describes the target for logs: mode and addresses, never a credential.
func (c Config) Where() string {
	if c.URL != "" {
		opt, err := valkey.ParseURL(c.URL)
		if err != nil {
			return string(c.mode()) + " (unparseable VALKEY_URL)"
		}
		return string(c.mode()) + " " + strings.Join(opt.InitAddress, ",")
	}
	return string(c.mode()) + " " + strings.Join(c.Addrs(), ",")
}

func (c Config) mode() Mode {
	if c.Mode == "" {
		return Standalone
	}
	return c.Mode
}

// Validate checks what can be checked without a server.
func (c Config) Validate() error {
	switch c.mode() {
	case Standalone, Sentinel:
	case Cluster:
		if !c.AllowCluster {
			return &SetupError{"VALKEY_MODE", "cluster needs KEY_LAYOUT=partitioned (every script's keys in one slot); the single layout's scripts span slots"}
		}
	default:
		return &SetupError{"VALKEY_MODE", fmt.Sprintf("%q is not standalone, sentinel or cluster", c.Mode)}
	}
	if c.URL != "" {
		if _, err := c.options(); err != nil {
			return err
		}
		return nil
	}
	addrs := c.Addrs()
	switch {
	case len(addrs) == 0:
		return &SetupError{"VALKEY_ADDR", "no address"}
	case c.mode() == Standalone && len(addrs) > 1:
		return &SetupError{"VALKEY_ADDR", "standalone mode takes one address; for Sentinels set VALKEY_MODE=sentinel"}
	case c.mode() == Sentinel && c.SentinelMaster == "" && c.URL == "":
		return &SetupError{"VALKEY_SENTINEL_MASTER", "required in sentinel mode: the name of the primary set the Sentinels watch"}
	}
	return nil
}

// options builds valkey-go's options. The client-side cache is off: chatpipe reads rings that
// every replica writes, and scripts are not cacheable anyway.
func (c Config) options() (valkey.ClientOption, error) {
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	var opt valkey.ClientOption
	if c.URL != "" {
		var err error
		if opt, err = valkey.ParseURL(c.URL); err != nil {
			// valkey-go's message can quote the URL, password included: say only what is wrong.
			return opt, &SetupError{"VALKEY_URL", "not a valid valkey:// URL (valkey://user:password@host:port/db?addr=host2:port2&master_set=name)"}
		}
	} else {
		opt = valkey.ClientOption{InitAddress: c.Addrs(), Username: c.Username, Password: c.Password}
		if c.TLS {
			tc, err := c.tlsConfig()
			if err != nil {
				return opt, err
			}
			opt.TLSConfig = tc
		}
	}
	opt.DisableCache = true
	opt.Dialer.Timeout = c.Timeout
	opt.ConnWriteTimeout = c.Timeout
	opt.MaxFlushDelay = c.FlushDelay
	switch c.mode() {
	case Standalone:
		opt.ForceSingleClient = true
		opt.Sentinel = valkey.SentinelOption{}
	case Sentinel:
		if c.SentinelMaster != "" {
			opt.Sentinel.MasterSet = c.SentinelMaster
		}
		if opt.Sentinel.MasterSet == "" {
			return opt, &SetupError{"VALKEY_SENTINEL_MASTER", "required in sentinel mode: the name of the primary set the Sentinels watch"}
		}
		opt.Sentinel.Username = c.SentinelUsername
		opt.Sentinel.Password = c.SentinelPassword
		opt.Sentinel.Dialer = opt.Dialer
		opt.Sentinel.TLSConfig = opt.TLSConfig
		// Off by default in valkey-go: one missed +switch-master would then tie the client to
		// the old primary until restarted (docs/ha.md).
		opt.Sentinel.TopologyRefreshInterval = 2 * time.Second
	case Cluster:
		// valkey-go's cluster client, from the seeds; it follows MOVED and failovers by itself.
		opt.Sentinel = valkey.SentinelOption{}
	}
	return opt, nil
}

func (c Config) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(c.Addrs()[0])
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the Valkey CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the Valkey CA file holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Connect returns a client once Valkey answers, retrying with capped, jittered backoff and a
// log line per failure until ctx ends, and then checks the server (see Check). Errors that a
// retry cannot fix (bad credentials, the wrong mode) are returned at once.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (valkey.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opt, err := cfg.options()
	if err != nil {
		return nil, err
	}
	where := cfg.Where()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := valkey.NewClient(opt)
		if err == nil {
			if attempt > 1 {
				log.InfoContext(ctx, "connected to valkey", "valkey", where, "attempts", attempt)
			}
			if err := Check(ctx, c, cfg, log); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		if isPermanent(err) {
			return nil, connectError(cfg, where, err)
		}
		log.WarnContext(ctx, "valkey not reachable yet, retrying", "valkey", where, "attempt", attempt, "err", err)
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to valkey (%s): %w (last error: %w)", where, ctx.Err(), err)
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// connectError explains a reply that refused the connection; in sentinel mode an unknown
// SENTINEL command means the addresses are servers, not Sentinels.
func connectError(cfg Config, where string, err error) error {
	msg := err.Error()
	if cfg.mode() == Sentinel && (strings.Contains(msg, "unknown command") || strings.Contains(msg, "SENTINEL")) {
		return &SetupError{"VALKEY_MODE", fmt.Sprintf("sentinel, but %s answered as no Sentinel does (%s): give the Sentinels' addresses, or set VALKEY_MODE=standalone", where, firstLine(msg))}
	}
	return fmt.Errorf("connecting to valkey (%s): %w", where, err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// isPermanent reports errors Valkey answered with (WRONGPASS, NOAUTH, ...): retrying the same
// credentials will not help. LOADING, MASTERDOWN and the like pass with time.
func isPermanent(err error) bool {
	if IsTransient(err) {
		return false
	}
	_, ok := valkey.IsValkeyErr(err)
	return ok
}

// IsTransient reports a reply that a later retry may not get: the server is loading its data,
// is a replica (READONLY, after a failover), has lost its primary (MASTERDOWN), has too few
// replicas for writes (NOREPLICAS), the cluster is down or resharding (CLUSTERDOWN, TRYAGAIN),
// or a script is running too long (BUSY). Connection errors, which are no reply, are transient
// too but not reported here.
func IsTransient(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	if !ok {
		return false
	}
	switch code(verr.Error()) {
	case "LOADING", "READONLY", "MASTERDOWN", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN", "BUSY":
		return true
	}
	return false
}

// IsOOM reports Valkey refusing a write because used memory is above maxmemory under
// noeviction; reads, acks and trims still run.
func IsOOM(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && code(verr.Error()) == "OOM"
}

// code is the error code that starts a reply, also when a script raised it ("OOM command not
// allowed ... script: ...").
func code(msg string) string {
	c, _, _ := strings.Cut(msg, " ")
	return c
}
