package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

// Valkey adds the settings that say where and how to reach Valkey, shared by both binaries
// (the timeout excepted: each binary has its own default).
func Valkey(s *Set, c *valkeyconn.Config) {
	s.String((*string)(&c.Mode), "VALKEY_MODE", string(valkeyconn.Standalone), "standalone (one server), sentinel (the primary the Sentinels name) or cluster (Valkey Cluster; needs KEY_LAYOUT=partitioned)", checkMode)
	s.String(&c.Addr, "VALKEY_ADDR", "127.0.0.1:6379", "host:port of the server (standalone), or a comma-separated list of the Sentinels (sentinel)", AddrList)
	s.Secret(&c.URL, "VALKEY_URL", "", "valkey:// or valkeys:// URL in valkey-go's syntax; replaces VALKEY_ADDR, the credentials and TLS", checkURL)
	s.String(&c.Username, "VALKEY_USERNAME", "", "Valkey ACL user name", nil)
	s.Secret(&c.Password, "VALKEY_PASSWORD", "", "Valkey password", nil)
	s.String(&c.SentinelMaster, "VALKEY_SENTINEL_MASTER", "", "sentinel mode: name of the primary set the Sentinels watch", checkName)
	s.String(&c.SentinelUsername, "VALKEY_SENTINEL_USERNAME", "", "sentinel mode: ACL user name on the Sentinels", nil)
	s.Secret(&c.SentinelPassword, "VALKEY_SENTINEL_PASSWORD", "", "sentinel mode: password of the Sentinels", nil)
	s.Bool(&c.AllowEviction, "VALKEY_ALLOW_EVICTION", false, "run even when Valkey's maxmemory-policy evicts keys (accepted messages can then vanish)")
	ValkeyTLS(s, c)
}

// ValkeyTLS adds the Valkey TLS settings, shared by both binaries.
func ValkeyTLS(s *Set, c *valkeyconn.Config) {
	s.Bool(&c.TLS, "VALKEY_TLS", false, "connect to Valkey over TLS")
	s.String(&c.CAFile, "VALKEY_TLS_CA_FILE", "", "PEM file of the CAs that sign Valkey's certificate (empty: the system's)", nil)
	s.String(&c.ServerName, "VALKEY_TLS_SERVER_NAME", "", "name to check in Valkey's certificate (empty: the host of VALKEY_ADDR)", nil)
}

// CheckValkey checks the Valkey settings together, once all are read.
func CheckValkey(c valkeyconn.Config) error {
	return SetupErr(c.Validate())
}

// SetupErr turns a valkeyconn.SetupError into an invalid setting (exit status 2).
func SetupErr(err error) error {
	var se *valkeyconn.SetupError
	if errors.As(err, &se) {
		return &Error{Setting: se.Setting, Problem: se.Problem}
	}
	return err
}

func checkMode(v string) error {
	for _, m := range valkeyconn.Modes {
		if string(m) == v {
			return nil
		}
	}
	return errors.New("must be standalone, sentinel or cluster")
}

// AddrList checks a comma-separated list of host:port addresses.
func AddrList(v string) error {
	parts := strings.Split(v, ",")
	if len(parts) > 64 {
		return errors.New("more than 64 addresses")
	}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return errors.New("an empty address in the list")
		}
		if err := Addr(p); err != nil {
			return fmt.Errorf("%w (in a comma-separated list of host:port)", err)
		}
	}
	return nil
}

func checkURL(v string) error {
	if len(v) > 4096 {
		return errors.New("longer than 4096 bytes")
	}
	if !strings.HasPrefix(v, "valkey://") && !strings.HasPrefix(v, "valkeys://") &&
		!strings.HasPrefix(v, "redis://") && !strings.HasPrefix(v, "rediss://") {
		return errors.New("must start with valkey://, valkeys://, redis:// or rediss://")
	}
	if err := (valkeyconn.Config{URL: v, Mode: valkeyconn.Standalone}).Validate(); err != nil {
		return errors.New("not a valid URL (valkey://user:password@host:port/db?addr=host2:port2&master_set=name)")
	}
	return nil
}

func checkName(v string) error {
	if len(v) > 128 {
		return errors.New("longer than 128 bytes")
	}
	for _, c := range v {
		if c <= ' ' || c == 0x7f {
			return errors.New("holds a space or a control character")
		}
	}
	return nil
}

// Layout adds KEY_LAYOUT and KEY_PARTITIONS, shared by both binaries.
func Layout(s *Set, name *string, partitions *int) {
	s.String(name, "KEY_LAYOUT", keyspace.SingleLayout, "single (the list-based cache's keys) or partitioned (hash-tagged partitions: Valkey Cluster, and any other server)", func(v string) error {
		if v != keyspace.SingleLayout && v != keyspace.PartitionedLayout {
			return errors.New("must be single or partitioned")
		}
		return nil
	})
	s.Int(partitions, "KEY_PARTITIONS", keyspace.DefaultPartitions, 1, keyspace.MaxPartitions, "partitions of the partitioned layout, fixed when a deployment is created")
}

// DefaultChannel defines DEFAULT_CHANNEL, the channel both binaries give the public messages
// that name none: those of the endpoints from before channels, and the entries written then.
func DefaultChannel(s *Set, p *string) {
	s.String(p, "DEFAULT_CHANNEL", message.DefaultChannel, "the channel of /v1/messages and of public messages from before channels; set it before upgrading (docs/api.md: Channels)", func(v string) error {
		return message.ValidateChannel("DEFAULT_CHANNEL", v)
	})
}

// RingTTL defines RING_IDLE_TTL, how long a ring lives after its last push, in both binaries
// (the workers repair private rings in the partitioned layout).
func RingTTL(s *Set, p *time.Duration) {
	s.Duration(p, "RING_IDLE_TTL", 7*24*time.Hour, 0, 10*365*24*time.Hour, "how long a channel's or user's recent ring lives after its last message (0: forever), so that idle rooms and users leave Valkey's memory; history does not need the rings")
}

// NewLayout builds the layout of KEY_LAYOUT, KEY_PARTITIONS and KEY_PREFIX, once all are read,
// and tells the Valkey settings whether cluster mode may be used.
func NewLayout(name, prefix string, partitions int, defaultChannel string, v *valkeyconn.Config) (keyspace.Layout, error) {
	l, err := keyspace.NewLayout(name, prefix, partitions, defaultChannel)
	if err != nil {
		return nil, &Error{Setting: "KEY_PREFIX", Problem: err.Error()}
	}
	v.AllowCluster = name == keyspace.PartitionedLayout
	return l, nil
}
