package client

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawServe answers every request on a unix socket with the bytes of reply,
// then hangs up; it hands each parsed request to got when got is not nil.
func rawServe(t *testing.T, reply string, got chan<- *http.Request) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "raw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.ReadAll(req.Body)
				if got != nil {
					got <- req
				}
				io.WriteString(conn, reply)
			}()
		}
	}()
	return sock
}

func TestRequestFormat(t *testing.T) {
	got := make(chan *http.Request, 2)
	sock := rawServe(t, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"+`{"name":"n"}`, got)
	c := New(sock)
	if _, err := c.Start(context.Background(), "n"); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.Proto != "HTTP/1.0" || r.Host != "vnetd" || r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		t.Errorf("POST without body: proto %q host %q length %d type %q", r.Proto, r.Host, r.ContentLength, r.Header.Get("Content-Type"))
	}
	if _, err := c.Define(context.Background(), "<network/>"); err != nil {
		t.Fatal(err)
	}
	r = <-got
	if r.ContentLength != int64(len(`{"xml":"<network/>"}`+"\n")) || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("POST with body: length %d type %q", r.ContentLength, r.Header.Get("Content-Type"))
	}
}

// TestResponses feeds the client hand-made answers a net/http server would
// not give, or gives rarely.
func TestResponses(t *testing.T) {
	cases := []struct {
		name, reply string
		want        string // error text; "" = success with one network
	}{
		{"until-eof", "HTTP/1.0 200 OK\r\n\r\n" + `[{"name":"a"}]`, ""},
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n" + `[{"name":"a"}]trailing garbage`, ""},
		{"lf-only", "HTTP/1.0 200 OK\nContent-Length: 14\n\n" + `[{"name":"a"}]`, ""},
		{"informational", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n" + `[{"name":"a"}]`, ""},
		{"short-body", "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n[", "vnetd GET /v1/networks: read response: unexpected EOF"},
		{"hang-up", "", "vnetd GET /v1/networks: unexpected EOF"},
		{"truncated-head", "HTTP/1.0 200 OK\r\nContent-", "vnetd GET /v1/networks: unexpected EOF"},
		{"not-http", "SSH-2.0-OpenSSH\r\n\r\n", `vnetd GET /v1/networks: malformed HTTP response: status line "SSH-2.0-OpenSSH"`},
		{"bad-length", "HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", `vnetd GET /v1/networks: malformed HTTP response: Content-Length "-1"`},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", `vnetd GET /v1/networks: malformed HTTP response: unexpected Transfer-Encoding "chunked"`},
		{"odd-status", "HTTP/1.0 599 Odd\r\n\r\nno", "internal error: unexpected response from vnetd: 599 Odd: no"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := New(rawServe(t, tc.reply, nil)).List(context.Background())
			if tc.want == "" {
				if err != nil || len(l) != 1 || l[0].Name != "a" {
					t.Errorf("List = %+v, %v", l, err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestContext checks that a cancellation or a deadline ends a request the
// daemon does not answer, and that the daemon sees the hang-up.
func TestContext(t *testing.T) {
	gone := make(chan struct{}, 4)
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		gone <- struct{}{}
	}))
	c := New(sock)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.List(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "vnetd GET /v1/networks: ") {
		t.Errorf("deadline: error %v", err)
	}
	<-gone

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.Start(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: error %v", err)
	}
	<-gone

	if _, err := c.List(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("already cancelled: error %v", err)
	}
}

// TestConcurrent runs requests in parallel on one Client (run with -race).
func TestConcurrent(t *testing.T) {
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[{"name":"ref-open"}]`)
	}))
	c := New(sock)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if l, err := c.List(context.Background()); err != nil || len(l) != 1 {
					t.Errorf("List = %+v, %v", l, err)
				}
			}
		})
	}
	wg.Wait()
}
