package config

import "github.com/chatpipe/chatpipe/internal/valkeyconn"

// ValkeyTLS adds the Valkey TLS settings, shared by both binaries.
func ValkeyTLS(s *Set, c *valkeyconn.Config) {
	s.Bool(&c.TLS, "VALKEY_TLS", false, "connect to Valkey over TLS")
	s.String(&c.CAFile, "VALKEY_TLS_CA_FILE", "", "PEM file of the CAs that sign Valkey's certificate (empty: the system's)", nil)
	s.String(&c.ServerName, "VALKEY_TLS_SERVER_NAME", "", "name to check in Valkey's certificate (empty: the host of VALKEY_ADDR)", nil)
}
