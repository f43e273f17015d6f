package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/chatpipe/chatpipe/api"
)

// contract is api/openapi.yaml as a router of requests to their operations, served from any
// host (the tests' servers listen on free ports).
var contract = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, err
	}
	doc.Servers = nil
	return legacy.NewRouter(doc)
})

// holdToContract checks one exchange against api/openapi.yaml: the answer must be one the
// document allows (its status, headers and body), and a request the server accepted (2xx) one
// the document allows. A path the document does not know must have been answered 404 (or 400,
// for a channel id that is no path segment).
func holdToContract(t *testing.T, method, url string, header http.Header, body []byte, res *http.Response, answer []byte) {
	t.Helper()
	router, err := contract()
	if err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header = header.Clone()
	route, params, err := router.FindRoute(req)
	if err != nil {
		if res.StatusCode < 400 {
			t.Errorf("%s %s answered %d, but api/openapi.yaml has no such operation: %v", method, url, res.StatusCode, err)
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if res.StatusCode < 300 {
		if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
			t.Errorf("%s %s was accepted (%d), but api/openapi.yaml refuses the request: %v", method, url, res.StatusCode, err)
		}
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return // a stream's events are described in prose; its status and type are checked above
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body: io.NopCloser(bytes.NewReader(answer)), Options: opts}
	if err := openapi3filter.ValidateResponse(t.Context(), out); err != nil {
		t.Errorf("%s %s answered %d %.300s, which api/openapi.yaml does not allow: %v", method, url, res.StatusCode, answer, err)
	}
}
