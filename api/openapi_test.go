package api_test

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/chatpipe/chatpipe/api"
)

// TestDocumentValid: the document parses and is a valid OpenAPI document, with every $ref
// resolved.
func TestDocumentValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := doc.Paths.Len(); n < 20 {
		t.Errorf("%d paths, want every endpoint of ingest", n)
	}
}
