package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Sink receives audit events as JSON lines.
type Sink interface {
	// Name identifies the sink in the drop counters ("stdout", "file",
	// "webhook").
	Name() string
	// Write delivers a batch of lines (each a JSON object and a newline),
	// retrying as it sees fit until ctx is done. An error drops the batch.
	Write(ctx context.Context, lines []byte) error
}

// sinkRunner feeds one sink from its own bounded queue, on its own
// goroutine.
type sinkRunner struct {
	sink     Sink
	ch       chan []byte
	maxBatch int
	dropped  atomic.Uint64
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	log      *slog.Logger
}

func startSink(s Sink, queue, maxBatch int, log *slog.Logger) *sinkRunner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &sinkRunner{sink: s, ch: make(chan []byte, queue), maxBatch: maxBatch, ctx: ctx, cancel: cancel, done: make(chan struct{}), log: log}
	go r.run()
	return r
}

// offer queues a line, or drops and counts it when the queue is full.
func (r *sinkRunner) offer(line []byte) {
	select {
	case r.ch <- line:
	default:
		r.dropped.Add(1)
	}
}

func (r *sinkRunner) run() {
	defer close(r.done)
	var buf bytes.Buffer
	for line := range r.ch {
		buf.Reset()
		buf.Write(line)
		n, open := 1, true
	more:
		for n < r.maxBatch {
			select {
			case l, ok := <-r.ch:
				if !ok {
					open = false
					break more
				}
				buf.Write(l)
				n++
			default:
				break more
			}
		}
		if err := r.sink.Write(r.ctx, buf.Bytes()); err != nil {
			r.dropped.Add(uint64(n))
			r.log.Warn("audit sink failed; events dropped", "sink", r.sink.Name(), "count", n, "error", err)
		}
		if !open {
			return
		}
	}
}

// close waits for the sink to deliver what it holds, until ctx is done
// (then the delivery in progress is abandoned). The writer has closed ch.
func (r *sinkRunner) close(ctx context.Context) error {
	defer r.cancel()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return fmt.Errorf("audit sink %s: %w", r.sink.Name(), ctx.Err())
	}
}

// WriterSink writes lines to w (stdout, a file).
type WriterSink struct {
	name string
	w    io.Writer
}

// NewWriterSink returns a sink writing to w, named name.
func NewWriterSink(name string, w io.Writer) *WriterSink { return &WriterSink{name: name, w: w} }

// Name implements Sink.
func (s *WriterSink) Name() string { return s.name }

// Write implements Sink.
func (s *WriterSink) Write(_ context.Context, lines []byte) error {
	_, err := s.w.Write(lines)
	return err
}

// Webhook defaults.
const (
	webhookTimeout     = 10 * time.Second
	webhookAttempts    = 5
	webhookBackoff     = time.Second
	webhookMaxBackoff  = 30 * time.Second
	webhookMaxResponse = 64 << 10
)

// WebhookSink POSTs batches of lines (application/x-ndjson) to a URL,
// retrying failures (network errors, 429 and 5xx answers) with
// exponential backoff; each attempt has a timeout.
type WebhookSink struct {
	name     string // webhook:<host>
	url      string
	client   *http.Client
	attempts int
	backoff  time.Duration
	// tries counts the requests made (for tests and diagnostics).
	tries atomic.Uint64
}

// NewWebhookSink returns a webhook sink for rawURL: https, or http to a
// loopback address. rt is the transport (nil: http.DefaultTransport).
func NewWebhookSink(rawURL string, rt http.RoundTripper) (*WebhookSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("audit webhook %s: not an absolute URL without credentials", redactURL(rawURL))
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !loopback(u.Hostname())) {
		return nil, fmt.Errorf("audit webhook %s: must be https (http only to a loopback address)", redactURL(rawURL))
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &WebhookSink{name: "webhook:" + u.Host, url: u.String(), client: &http.Client{Transport: rt, Timeout: webhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		attempts: webhookAttempts, backoff: webhookBackoff}, nil
}

// redactURL drops the credentials, query and fragment of a URL (they may
// carry a token) for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an invalid URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name implements Sink.
func (s *WebhookSink) Name() string { return s.name }

// Tries returns how many requests the sink has made.
func (s *WebhookSink) Tries() uint64 { return s.tries.Load() }

// Write implements Sink.
func (s *WebhookSink) Write(ctx context.Context, lines []byte) error {
	wait := s.backoff
	var err error
	for attempt := 1; ; attempt++ {
		if err = s.post(ctx, lines); err == nil {
			return nil
		}
		if attempt == s.attempts {
			return fmt.Errorf("after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, webhookMaxBackoff)
	}
}

var errRejected = errors.New("the receiver rejected the events")

func (s *WebhookSink) post(ctx context.Context, lines []byte) error {
	s.tries.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(lines))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.client.Do(req)
	if err != nil {
		// The URL (it may carry a token in its query) stays out of the
		// error.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, webhookMaxResponse))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	// Other answers will not change with a retry... but a retry costs
	// little, and a misconfigured receiver may be fixed meanwhile.
	return fmt.Errorf("%w: status %d", errRejected, resp.StatusCode)
}

// ParseSinks builds the sinks the --audit-sink values name: "stdout",
// "file:<path>" (appended to, created 0600), or a webhook URL. Each value
// may be a comma-separated list. The files are closed by the returned
// function.
func ParseSinks(values []string, stdout io.Writer) ([]Sink, func() error, error) {
	var sinks []Sink
	var files []*os.File
	closeAll := func() error {
		var errs []error
		for _, f := range files {
			errs = append(errs, f.Close())
		}
		return errors.Join(errs...)
	}
	for _, v := range values {
		for _, spec := range strings.Split(v, ",") {
			spec = strings.TrimSpace(spec)
			switch {
			case spec == "":
			case spec == "stdout":
				sinks = append(sinks, NewWriterSink("stdout", stdout))
			case strings.HasPrefix(spec, "file:"):
				path := strings.TrimPrefix(spec, "file:")
				if path == "" {
					_ = closeAll()
					return nil, nil, errors.New("audit sink file: needs a path (file:/var/log/m2mauth/audit.jsonl)")
				}
				// The file's directory is made when missing (0700: the
				// trail names clients, actors and addresses).
				err := os.MkdirAll(filepath.Dir(path), 0o700)
				var f *os.File
				if err == nil {
					f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
				}
				if err != nil {
					_ = closeAll()
					return nil, nil, fmt.Errorf("audit sink: %w", err)
				}
				files = append(files, f)
				sinks = append(sinks, NewWriterSink("file:"+path, f))
			case strings.HasPrefix(spec, "https://"), strings.HasPrefix(spec, "http://"):
				w, err := NewWebhookSink(spec, nil)
				if err != nil {
					_ = closeAll()
					return nil, nil, err
				}
				sinks = append(sinks, w)
			default:
				_ = closeAll()
				return nil, nil, fmt.Errorf("audit sink %q: use stdout, file:<path> or an https:// webhook URL", redactURL(spec))
			}
		}
	}
	return sinks, closeAll, nil
}
