// Package httpcall sends one HTTP request for a test: it builds the
// request from a plain description, sends it, fails the test on a
// transport error, and hands back the status, the headers and the whole
// body.
package httpcall

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Request describes a request to send. Only Method and URL are required.
type Request struct {
	Method string
	URL    string
	Body   string
	// Host, when set, is sent as the Host header instead of URL's host.
	Host   string
	Header map[string]string
	// User and Password, when either is set, are sent as basic auth.
	User, Password string
	// NoRedirect returns a redirect as the answer instead of following it.
	NoRedirect bool
}

// Response is what the server answered.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Do sends r and returns the answer; it fails t if the request cannot be
// built or sent, or its body cannot be read.
func Do(t testing.TB, r Request) Response {
	t.Helper()
	req, err := http.NewRequest(r.Method, r.URL, strings.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "" {
		req.Host = r.Host
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	if r.User != "" || r.Password != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	client := http.DefaultClient
	if r.NoRedirect {
		client = noRedirect
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
