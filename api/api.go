// Package api holds chatpipe's HTTP API as a contract: the OpenAPI document of ingest, which
// ingest serves at GET /openapi.yaml and its tests hold every answer to. Generate clients in
// other languages from it; Go programs import github.com/chatpipe/chatpipe/client.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of ingest's API (openapi.yaml), as served.
//
//go:embed openapi.yaml
var OpenAPI []byte
