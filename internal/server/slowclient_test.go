package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/oauth"
)

// HTTPServer applies the timeouts it is given, and the defaults (those of
// `m2mauth serve`) for the ones left zero.
func TestHTTPServerTimeouts(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		in   Timeouts
		want Timeouts
	}{
		{"zero: the defaults", Timeouts{}, Timeouts{ReadHeader: 5 * time.Second, Read: 15 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second, Request: 20 * time.Second}},
		{"all given", Timeouts{1, 2, 3, 4, 5}, Timeouts{1, 2, 3, 4, 5}},
		{"some given", Timeouts{ReadHeader: time.Second}, Timeouts{ReadHeader: time.Second, Read: 15 * time.Second, Write: 30 * time.Second, Idle: 120 * time.Second, Request: 20 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := HTTPServer(http.NotFoundHandler(), log, tc.in)
			got := Timeouts{hs.ReadHeaderTimeout, hs.ReadTimeout, hs.WriteTimeout, hs.IdleTimeout, tc.in.withDefaults().Request}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Short timeouts for the slow-client test. The server's real timers are
// what is under test; the test asserts what happens to the connections,
// never how long it took.
var shortTimeouts = Timeouts{ReadHeader: 300 * time.Millisecond, Read: 500 * time.Millisecond, Write: 10 * time.Second, Idle: 500 * time.Millisecond}

// giveUp is how long the test waits for the server to drop a connection
// before failing: far beyond the short timeouts, and shorter than the
// default ones, so that the test also fails if the injected timeouts were
// not applied.
const giveUp = 4 * time.Second

// slowConn is a raw connection playing a slow client.
type slowConn struct {
	kind   string
	conn   net.Conn
	closed atomic.Bool
	got    []byte // what the server sent before closing
	err    error  // why reading stopped
}

// Slow clients (headers trickled byte by byte or stalled, bodies trickled
// or stalled, idle kept-alive connections) are dropped by the server's
// timeouts, while a normal client is served meanwhile. A slow body gets a
// 4xx in its surface's envelope or nothing; never a 2xx or a 5xx.
func TestSlowClientsAreDropped(t *testing.T) {
	ts := startServerWith(t, testConfig(t), nil, shortTimeouts)
	id, secret := setupOrders(ts)
	addr := strings.TrimPrefix(ts.URL, "http://")

	form := "grant_type=client_credentials&client_id=" + url.QueryEscape(id) + "&client_secret="
	kinds := []struct {
		name    string
		opening string // sent at once
		trickle string // then sent one byte at a time, repeated; "" stalls
	}{
		{"headers trickled (slowloris)", "POST /oauth/token HTTP/1.1\r\nHost: a\r\n", "X-Slow: aaaaaaaa\r\n"},
		{"headers stalled", "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ", ""},
		{"standard body trickled", "POST /oauth/token HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n" + form, "a"},
		{"machine body stalled", "POST /v1/oauth/token/machine HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"apiKey\":", ""},
		{"atm body stalled", "POST /auth/token HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"clientId\":", ""},
		{"admin body trickled", "POST /admin/v1/clients HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + ts.token + "\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"name\":\"", "a"},
		{"idle keep-alive", "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", ""},
	}
	const perKind = 8
	var conns []*slowConn
	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	var open atomic.Int64
	for _, k := range kinds {
		for range perKind {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			sc := &slowConn{kind: k.name, conn: c}
			conns = append(conns, sc)
			if _, err := io.WriteString(c, k.opening); err != nil {
				t.Fatal(err)
			}
			open.Add(1)
			readers.Add(1)
			go func() {
				defer readers.Done()
				_ = c.SetReadDeadline(time.Now().Add(giveUp))
				sc.got, sc.err = io.ReadAll(c)
				sc.closed.Store(true)
				open.Add(-1)
			}()
			if k.trickle != "" {
				writers.Add(1)
				go func() {
					defer writers.Done()
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if sc.closed.Load() {
							return
						}
						if _, err := c.Write([]byte{k.trickle[i%len(k.trickle)]}); err != nil {
							return
						}
					}
				}()
			}
		}
	}
	t.Cleanup(func() {
		for _, sc := range conns {
			sc.conn.Close()
		}
	})

	// A normal client is served while every slow connection is held.
	normal := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := normal.Do(req)
		if err != nil {
			t.Fatalf("normal client: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("normal client: %d %s", resp.StatusCode, body)
		}
	}
	stillOpen := open.Load()

	readers.Wait()
	close(stop)
	writers.Wait()

	if stillOpen != int64(len(conns)) {
		t.Errorf("only %d of %d slow connections were still open when the normal client had been served; the check proves less than it should (a very slow machine?)", stillOpen, len(conns))
	}
	summary := map[string]map[string]int{}
	for _, sc := range conns {
		if summary[sc.kind] == nil {
			summary[sc.kind] = map[string]int{}
		}
		var ne net.Error
		if errors.As(sc.err, &ne) && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open (%d bytes received)", sc.kind, len(sc.got))
			summary[sc.kind]["kept open"]++
			continue
		}
		outcome := "closed without an answer"
		if len(sc.got) > 0 {
			statuses := responseStatuses(t, sc.kind, sc.got)
			outcome = fmt.Sprintf("answered %v, then closed", statuses)
			for i, st := range statuses {
				idleFirst := sc.kind == "idle keep-alive" && i == 0
				if idleFirst && st != http.StatusOK || !idleFirst && (st < 400 || st >= 500) {
					t.Errorf("%s: answered %d", sc.kind, st)
				}
			}
		} else if sc.kind == "idle keep-alive" {
			t.Errorf("%s: no answer to the request before the idle timeout", sc.kind)
		}
		summary[sc.kind][outcome]++
	}
	for _, k := range kinds {
		t.Logf("%-30s %v", k.name, summary[k.name])
	}
}

// responseStatuses parses the HTTP responses in b and checks each error's
// envelope against its surface.
func responseStatuses(t *testing.T, kind string, b []byte) []int {
	t.Helper()
	var out []int
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return out
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Errorf("%s: unparsable answer %q: %v", kind, b, err)
			return out
		}
		body, _ := io.ReadAll(resp.Body)
		out = append(out, resp.StatusCode)
		if strings.HasPrefix(kind, "headers") && resp.StatusCode == http.StatusBadRequest && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			// The headers never completed: no route, so no surface, was
			// reached, and net/http answers by itself (on a loaded machine
			// the timeout can end a read mid-line).
			continue
		}
		if resp.StatusCode >= 400 {
			surface := "standard"
			switch {
			case strings.HasPrefix(kind, "machine"):
				surface = "machine"
			case strings.HasPrefix(kind, "admin"):
				surface = "admin"
			}
			checkEnvelope(t, kind, surface, resp.StatusCode, resp.Header, body)
		}
	}
}

// checkEnvelope checks that an error answer is in its surface's envelope.
func checkEnvelope(t *testing.T, what, surface string, status int, h http.Header, body []byte) {
	t.Helper()
	ct := h.Get("Content-Type")
	switch surface {
	case "standard": // RFC 6749 §5.2
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d not an RFC 6749 error: %s %s", what, status, ct, body)
		}
	case "machine":
		var e struct {
			Errors []struct {
				I18N  string `json:"i18N"`
				Error string `json:"error"`
				Type  string `json:"type"`
			} `json:"errors"`
		}
		if !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].I18N == "" {
			t.Errorf("%s: %d not in the machine envelope: %s %s", what, status, ct, body)
		}
		if status == http.StatusRequestEntityTooLarge && (len(e.Errors) != 1 || e.Errors[0].I18N != "PAYLOAD_TOO_LARGE") {
			t.Errorf("%s: 413 without PAYLOAD_TOO_LARGE: %s", what, body)
		}
	case "admin": // RFC 9457
		var p struct {
			Type   string `json:"type"`
			Title  string `json:"title"`
			Status int    `json:"status"`
		}
		if ct != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != status || p.Title == "" {
			t.Errorf("%s: %d not a problem+json: %s %s", what, status, ct, body)
		}
	case "console": // an HTML page
		if !strings.HasPrefix(ct, "text/html") || !bytes.Contains(body, []byte("<html")) {
			t.Errorf("%s: %d not a console page: %s %s", what, status, ct, body)
		}
	default:
		t.Fatalf("unknown surface %q", surface)
	}
}

// routeSurface is the envelope a route answers errors in.
func routeSurface(path string) string {
	switch {
	case path == "/admin/v1/token":
		return "standard" // the admin login is the standard token endpoint
	case strings.HasPrefix(path, "/admin/"):
		return "admin"
	case path == "/v1/oauth/token/machine":
		return "machine"
	case path == "/console" || strings.HasPrefix(path, "/console/"), path == "/":
		return "console"
	}
	return "standard"
}

// Routes taking a method with a body whose handlers do not read it: an
// oversized body is ignored, like any other. A new route that accepts a
// body but does not refuse an oversized one fails the test until it is
// listed here.
var bodyIgnored = []string{
	"POST /admin/v1/clients/{id}/revoke-tokens",
	"POST /admin/v1/keys/{kid}/revoke",
	"POST /admin/v1/console/links",
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// For every route of the routes table: one that accepts a body refuses
// limit+1 bytes with 413 in its surface's envelope; one that does not
// (GET, DELETE, the catch-all) answers as it does without the body. Never
// a 5xx. The list comes from the table, so no route is forgotten.
func TestOversizedBodyPerRoute(t *testing.T) {
	ts := startServer(t, testConfig(t))
	if len(ts.srv.table) < 20 {
		t.Fatalf("only %d routes in the table", len(ts.srv.table))
	}
	// The request is written while the answer is read: a server that
	// answers without reading the body and closes makes the write fail,
	// which a client like net/http's reports instead of the answer.
	send := func(t *testing.T, method, path, surface string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
		req.Close = true
		switch surface {
		case "admin":
			req.Header.Set("Authorization", "Bearer "+ts.token)
			req.Header.Set("Content-Type", "application/json")
		case "machine":
			req.Header.Set("Content-Type", "application/json")
		default:
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if path == "/auth/token" {
				req.Header.Set("Content-Type", "application/json")
			}
		}
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() { _ = req.Write(conn) }()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatalf("%s %s: no answer: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	refused, ignored := 0, 0
	for _, r := range ts.srv.table {
		method, path, ok := strings.Cut(r.pattern, " ")
		if !ok {
			method, path = http.MethodPost, r.pattern
		}
		if path == "/" {
			path = "/no/such/endpoint"
		}
		path = wildcard.ReplaceAllString(path, "none")
		surface := routeSurface(path)
		limit := r.bodyLimit
		if limit == 0 {
			limit = oauth.MaxBodyBytes // no body expected: send one anyway
		}
		body := oversized(limit+1, surface == "admin" || surface == "machine" || path == "/auth/token")
		name := r.pattern
		if !ok {
			name = "any " + r.pattern
		}
		t.Run(name, func(t *testing.T) {
			resp, got := send(t, method, path, surface, body)
			if resp.StatusCode >= 500 {
				t.Fatalf("%d: %s", resp.StatusCode, got)
			}
			takesBody := r.bodyLimit > 0 && (method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch) &&
				!slices.Contains(bodyIgnored, r.pattern)
			if takesBody {
				refused++
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("%d bytes: %d %s; want 413", len(body), resp.StatusCode, got)
				}
				checkEnvelope(t, r.pattern, surface, resp.StatusCode, resp.Header, got)
				return
			}
			ignored++
			without, _ := send(t, method, path, surface, nil)
			if resp.StatusCode != without.StatusCode {
				t.Fatalf("with a %d-byte body: %d %s; without a body: %d", len(body), resp.StatusCode, got, without.StatusCode)
			}
		})
	}
	t.Logf("%d routes: %d refuse an oversized body with 413, %d ignore a body", len(ts.srv.table), refused, ignored)
}

// oversized returns a body of n bytes: a JSON object or a form with one
// long member.
func oversized(n int64, asJSON bool) []byte {
	prefix, suffix := "grant_type=client_credentials&pad=", ""
	if asJSON {
		prefix, suffix = `{"pad":"`, `"}`
	}
	pad := int(n) - len(prefix) - len(suffix)
	return []byte(prefix + strings.Repeat("a", pad) + suffix)
}
