package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The transport is a minimal HTTP/1.0 client, one connection per request.
// Why not net/http: vnetctl is a short-lived process, and net/http drags in
// crypto/tls, crypto/x509, compress/* and mime, whose package initialisation
// and larger binary cost milliseconds at every start. The daemon's net/http
// server answers an HTTP/1.0 request without chunking and closes the
// connection after the response, so a body simply runs until EOF (unless a
// Content-Length bounds it), which also serves the event stream line by line.

// maxHeadLines bounds the number of header lines of a response; the
// bufio.Reader's 4 KiB buffer bounds the length of each.
const maxHeadLines = 100

// errMalformed reports a response that is not HTTP.
var errMalformed = errors.New("malformed HTTP response")

// response is the daemon's answer to one request: the status from its head
// and its body. Close releases the connection.
type response struct {
	status int
	reason string
	body   io.Reader
	// length is the body's Content-Length (-1: until EOF).
	length int64
	conn   net.Conn
	stop   func() bool
}

// maxPrealloc bounds the buffer readAll allocates up front from a
// Content-Length.
const maxPrealloc = 16 << 20

// readAll reads the whole body, into one buffer of the announced length
// when there is one: net-list of a thousand networks is 130 kB, which
// io.ReadAll would grow and copy a dozen times.
func (r *response) readAll() ([]byte, error) {
	if r.length < 0 || r.length > maxPrealloc {
		return io.ReadAll(r)
	}
	buf := make([]byte, r.length)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// Read reads the body.
func (r *response) Read(p []byte) (int, error) { return r.body.Read(p) }

// Close stops watching the context and closes the connection.
func (r *response) Close() error {
	r.stop()
	return r.conn.Close()
}

// roundTrip sends one request for target (an escaped path with its query)
// and reads the response head. A nil body sends none; a non-nil one is JSON.
// While the response is open, ctx being done (cancelled or past its
// deadline) makes every pending and later read or write on the connection
// fail. A socket that cannot be dialled gives *ConnectError; ctx being done
// gives ctx.Err(); any other failure is returned as is.
func (c *Client) roundTrip(ctx context.Context, method, target string, body []byte) (*response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := c.dialer.DialContext(ctx, "unix", c.socket)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnectError{Socket: c.socket, Err: err}
	}
	// A deadline in the past wakes up any blocked read or write at once
	// and, unlike Close, leaves the connection to its owner. ctx's own
	// deadline is not copied to the connection: its timer could fire before
	// ctx reports DeadlineExceeded, and the error would be a bare timeout.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*response, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	_, werr := conn.Write(requestBytes(method, target, body))
	br := bufio.NewReader(conn)
	status, reason, length, err := readHead(br)
	if err != nil {
		if werr != nil {
			// The daemon may answer before reading a whole request (and
			// then hang up); only without an answer is the write error news.
			return fail(werr)
		}
		return fail(err)
	}
	return &response{status: status, reason: reason, body: &bodyReader{r: br, n: length}, length: length, conn: conn, stop: stop}, nil
}

// requestBytes is the whole HTTP/1.0 request. The Host header is a
// placeholder: the socket, not a host name, selects the daemon.
func requestBytes(method, target string, body []byte) []byte {
	b := make([]byte, 0, 128+len(target)+len(body))
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.0\r\nHost: vnetd\r\nAccept: application/json\r\n"...)
	if body != nil {
		b = append(b, "Content-Type: application/json\r\n"...)
	}
	if body != nil || method != "GET" {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// readHead reads the status line and headers of a response, skipping
// informational (1xx) ones, and returns the status, its reason phrase and
// the body length (-1: until EOF).
func readHead(br *bufio.Reader) (status int, reason string, length int64, err error) {
	for {
		status, reason, length, err = readOneHead(br)
		if err != nil || status >= 200 || status == 101 {
			return status, reason, length, err
		}
	}
}

func readOneHead(br *bufio.Reader) (status int, reason string, length int64, err error) {
	line, err := readLine(br)
	if err != nil {
		return 0, "", 0, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, err = strconv.Atoi(code)
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 || err != nil || status < 100 {
		return 0, "", 0, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	length = -1
	for n := 0; ; n++ {
		line, err := readLine(br)
		if err != nil {
			return 0, "", 0, err
		}
		if line == "" {
			return status, reason, length, nil
		}
		if n == maxHeadLines {
			return 0, "", 0, fmt.Errorf("%w: more than %d header lines", errMalformed, maxHeadLines)
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return 0, "", 0, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		val = strings.TrimSpace(val)
		switch {
		case strings.EqualFold(key, "Content-Length"):
			length, err = strconv.ParseInt(val, 10, 64)
			if err != nil || length < 0 {
				return 0, "", 0, fmt.Errorf("%w: Content-Length %q", errMalformed, val)
			}
		case strings.EqualFold(key, "Transfer-Encoding") && !strings.EqualFold(val, "identity"):
			// An HTTP/1.0 request never gets a chunked answer.
			return 0, "", 0, fmt.Errorf("%w: unexpected Transfer-Encoding %q", errMalformed, val)
		}
	}
}

// readLine reads one CRLF- (or LF-) terminated line without its end. EOF
// before the end of the head is io.ErrUnexpectedEOF.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("%w: header line too long", errMalformed)
	case err == io.EOF:
		return "", io.ErrUnexpectedEOF
	case err != nil:
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// bodyReader reads n bytes of a body, or everything until EOF when n < 0.
// A body shorter than its Content-Length ends in io.ErrUnexpectedEOF.
type bodyReader struct {
	r io.Reader
	n int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	if b.n > 0 && int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.r.Read(p)
	if b.n > 0 {
		b.n -= int64(k)
		if b.n == 0 {
			// Done: a hang-up that would follow is no error.
			err = nil
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	return k, err
}

// pathOf is the unescaped path of target, as error messages name it.
func pathOf(target string) string {
	p, _, _ := strings.Cut(target, "?")
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}
