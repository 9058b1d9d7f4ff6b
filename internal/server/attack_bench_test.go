package server

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/config"
)

// worstScopeBody is the request of the scope attack: a JSON body just under
// the 64 KiB limit holding ~11,000 distinct scope tokens, without
// credentials.
func worstScopeBody() string {
	var b strings.Builder
	b.WriteString(`{"grant_type":"client_credentials","scope":"`)
	for i := 0; b.Len() < 64<<10-64; i++ {
		b.WriteString("s" + strconv.Itoa(i) + " ")
	}
	b.WriteString(`"}`)
	return b.String()
}

// BenchmarkWorstCaseScope is the CPU one unauthenticated request with the
// largest scope parameter the body limit allows costs the server.
func BenchmarkWorstCaseScope(b *testing.B) {
	cfg := config.Default()
	cfg.AuthFailureRate = 0 // measure the parser, not the limiter
	h, _ := benchServer(b, cfg)
	body := worstScopeBody()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code/100 != 4 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkInvalidClient compares a wrong secret for a known client with
// distinct unknown client ids: both are answered from memory (the client
// cache and its id filter), so they cost the same.
func BenchmarkInvalidClient(b *testing.B) {
	cfg := config.Default()
	cfg.AuthFailureRate = 0
	h, newReq := benchServer(b, cfg)
	id, _, _ := newReq().BasicAuth()
	run := func(name string, idf func(i int) string) {
		b.Run(name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader("grant_type=client_credentials"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.SetBasicAuth(idf(i), "m2ms_wrongwrongwrongwrongwrongwrongwrongwrongwro")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusUnauthorized {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
	run("known", func(int) string { return id })
	run("unknown", func(i int) string { return "m2mc_unknown" + strconv.Itoa(i) })
}
