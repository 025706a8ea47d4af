package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
)

// Listener wraps ln, the receiver's listener, so that the answers net/http
// writes on its own before any handler runs are JSON too: a request line it
// cannot parse (a bad % escape in the path, such as "/webhook%zz"), a
// missing or malformed Host header, headers over the server's limit (431),
// a transfer encoding it does not know (501). net/http writes such an
// answer as text/plain and closes the connection; it does so before it
// knows which route the request was for, so the JSON body carries both
// answer shapes: Tencent's ActionStatus, ErrorCode (10 times the status)
// and ErrorInfo, and the device API's "error". Everything else passes
// through untouched.
func Listener(ln net.Listener) net.Listener { return earlyErrorListener{ln} }

type earlyErrorListener struct{ net.Listener }

func (l earlyErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &earlyErrorConn{Conn: c}, nil
}

// earlyErrorHeaders is what net/http (server.go, conn.serve) writes after
// the status line of an answer it makes before a request is parsed; a
// handler's answer always has a Date header, and net/http sorts header
// names, so no handler's answer starts this way.
const earlyErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

type earlyErrorConn struct{ net.Conn }

// Write replaces net/http's early text/plain answer (status line,
// earlyErrorHeaders and text, in one write) by its JSON form.
func (c *earlyErrorConn) Write(p []byte) (int, error) {
	status, text, ok := parseEarlyError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	body, _ := json.Marshal(struct {
		ActionStatus string `json:"ActionStatus"`
		ErrorCode    int    `json:"ErrorCode"`
		ErrorInfo    string `json:"ErrorInfo"`
		Error        string `json:"error"`
	}{"FAIL", status * 10, text, text})
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", status, http.StatusText(status), len(body))
	b.Write(body)
	if _, err := c.Conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes the connection when the wrapped one can (net/http
// uses it after a 431).
func (c *earlyErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// parseEarlyError recognises net/http's early answer in p and returns its
// status and text.
func parseEarlyError(p []byte) (status int, text string, ok bool) {
	const proto = "HTTP/1.1 "
	end := bytes.Index(p, []byte("\r\n"))
	if !bytes.HasPrefix(p, []byte(proto)) || end < len(proto)+3 || !bytes.HasPrefix(p[end:], []byte(earlyErrorHeaders)) {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	text = string(p[end+len(earlyErrorHeaders):])
	if text == "400 Bad Request" {
		text += ": the request line or a header could not be parsed (e.g. a bad % escape in the path)"
	}
	return status, text, true
}
