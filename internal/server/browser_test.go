package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/m2mauth/m2mauth/internal/admin"
)

// The browser tests drive a real headless Chromium (Debian's chromium
// package; .ci/run installs it) through the DevTools protocol. Any
// JavaScript exception, console error, Content-Security-Policy violation or
// failed subresource on a page fails them.

// chromiumPath returns the browser to drive: $M2MAUTH_CHROMIUM or
// /usr/bin/chromium. Without one the test is skipped, except under CI,
// where the browser test must run, and when screenshots were asked for.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("M2MAUTH_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		if os.Getenv("CI") != "" || os.Getenv("M2MAUTH_SCREENSHOTS") != "" {
			t.Fatalf("no Chromium at %s (CI or M2MAUTH_SCREENSHOTS is set, so the browser test must run: install Debian's chromium package or set M2MAUTH_CHROMIUM)", path)
		}
		t.Skipf("no Chromium at %s (install Debian's chromium package or set M2MAUTH_CHROMIUM)", path)
	}
	return path
}

// browser is one headless Chromium tab. It collects every problem a page
// reports; clean fails the test on any.
type browser struct {
	t    *testing.T
	base string // the server's URL
	ctx  context.Context
	// shots is where screenshots go ("" for none: M2MAUTH_SCREENSHOTS).
	shots string

	mu       sync.Mutex
	problems []string
	// deliberate are error statuses a step expects, by URL path.
	deliberate map[string]int
	urls       map[network.RequestID]string
	dialogs    []string
}

// stepTimeout bounds one browser step (a navigation, a click and the page
// it loads). A slow CI machine with other tests running gets room.
const stepTimeout = 30 * time.Second

// newBrowser starts Chromium (a fresh profile, no background networking:
// the browser talks to the test server only) and opens a tab.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := chromiumPath(t)
	b := &browser{t: t, base: base, shots: os.Getenv("M2MAUTH_SCREENSHOTS"),
		deliberate: map[string]int{}, urls: map[network.RequestID]string{}}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit, before its profile is removed
	})
	start, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// The first action starts the browser; its life is ctx's, not start's.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	if _, err := chromedp.Call(start, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the log domain: %v", err)
	}
	b.ctx = ctx
	// A confirm() dialog (form[data-confirm]) is accepted, as a person
	// going ahead would. Its message is kept for the test to look at.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, ev.Message)
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

// listen runs in the tab's event loop, in the order the browser sent the
// events: it only records.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + strings.SplitN(d.Exception.Description, "\n", 2)[0]
		}
		b.problems = append(b.problems, fmt.Sprintf("JavaScript exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, string(a.Value))
				}
			}
			b.problems = append(b.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		csp := strings.Contains(e.Text, "Content Security Policy")
		if e.Level != cdplog.EntryLevelError && !csp {
			return
		}
		// A deliberate error status is logged as a failed resource too.
		if !csp && e.Source == cdplog.EntrySourceNetwork && b.isDeliberate(e.URL, 0) {
			return
		}
		b.problems = append(b.problems, fmt.Sprintf("browser log (%s, %s): %s %s", e.Source, e.Level, e.Text, e.URL))
	case *network.EventRequestWillBeSent:
		b.urls[ev.RequestID] = ev.Request.URL
	case *network.EventResponseReceived:
		if r := ev.Response; r.Status >= 400 && !b.isDeliberate(r.URL, int(r.Status)) {
			b.problems = append(b.problems, fmt.Sprintf("%s %s answered %d", ev.Type, r.URL, r.Status))
		}
	case *network.EventLoadingFailed:
		// A request cut short by the next navigation is canceled, not failed.
		if ev.Canceled && ev.BlockedReason == "" {
			return
		}
		b.problems = append(b.problems, fmt.Sprintf("%s %s failed: %s %s", ev.Type, b.urls[ev.RequestID], ev.ErrorText, ev.BlockedReason))
	}
}

// isDeliberate reports whether the step expects rawURL to answer status
// (0: any error status it expects). b.mu is held.
func (b *browser) isDeliberate(rawURL string, status int) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	want, ok := b.deliberate[u.Path]
	return ok && (status == 0 || status == want)
}

// expectError declares that the current step's request of path answers
// status on purpose (a refused form, a page gone after sign-out).
func (b *browser) expectError(path string, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deliberate[path] = status
}

// take returns and clears the problems seen so far, and the step's
// deliberate errors.
func (b *browser) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	clear(b.deliberate)
	return p
}

// clean fails the test on every problem a page reported during step.
func (b *browser) clean(step string) {
	b.t.Helper()
	for _, p := range b.take() {
		b.t.Errorf("%s: %s", step, p)
	}
}

// run runs actions with a step timeout; an error fails the test.
func (b *browser) run(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
}

// load runs actions that end in a page load (a navigation, a click on a
// link or a submit button) and returns the loaded document's response.
// Problems the page reported fail the test.
func (b *browser) load(step string, actions ...chromedp.Action[chromedp.Void]) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
	if resp == nil {
		b.t.Fatalf("%s: no document loaded", step)
	}
	b.clean(step)
	return resp
}

// page is a loaded document: its status and path.
type loaded struct {
	status int
	path   string
	resp   *network.Response
}

func (b *browser) loaded(step string, resp *network.Response) loaded {
	b.t.Helper()
	u, err := url.Parse(resp.URL)
	if err != nil {
		b.t.Fatalf("%s: loaded %q: %v", step, resp.URL, err)
	}
	return loaded{int(resp.Status), u.Path, resp}
}

// want fails the test unless the document answered status at path
// (a prefix when it ends in "/").
func (b *browser) want(step string, got loaded, status int, path string) loaded {
	b.t.Helper()
	ok := got.path == path || strings.HasSuffix(path, "/") && strings.HasPrefix(got.path, path)
	if got.status != status || !ok {
		b.t.Fatalf("%s: status %d at %s, want %d at %s", step, got.status, got.path, status, path)
	}
	return got
}

// open navigates to path (on the server) and wants status 200 at wantPath.
func (b *browser) open(path, wantPath string) loaded {
	b.t.Helper()
	step := "open " + path
	return b.want(step, b.loaded(step, b.load(step, chromedp.Navigate(b.base+path))), http.StatusOK, wantPath)
}

// click clicks sel and waits for the page it loads; it wants status at
// wantPath.
func (b *browser) click(sel string, status int, wantPath string) loaded {
	b.t.Helper()
	b.need(sel)
	step := "click " + sel
	return b.want(step, b.loaded(step, b.load(step, chromedp.Click(chromedp.CSS(sel)))), status, wantPath)
}

// clickSecret clicks sel, whose form answers with a page showing a secret
// (200 or 201: the page is the POST's answer, never a redirect) at a path
// starting with wantPath. The page must not be stored.
func (b *browser) clickSecret(sel, wantPath string) loaded {
	b.t.Helper()
	b.need(sel)
	step := "click " + sel
	got := b.loaded(step, b.load(step, chromedp.Click(chromedp.CSS(sel))))
	check := got
	if check.status == http.StatusCreated {
		check.status = http.StatusOK // either is right
	}
	b.want(step, check, http.StatusOK, wantPath)
	if cc := fmt.Sprint(got.resp.Headers["Cache-Control"]); !strings.Contains(cc, "no-store") {
		b.t.Errorf("%s: the page with a secret has Cache-Control %q, want no-store", step, cc)
	}
	return got
}

// fill sets the value of a form field.
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.need(sel)
	b.run("fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// check ticks a checkbox or a radio button (a click: it must be usable).
func (b *browser) check(sel string) {
	b.t.Helper()
	b.need(sel)
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	on, err := chromedp.Run(ctx, chromedp.JavascriptAttribute[bool](chromedp.CSS(sel), "checked"))
	if err != nil {
		b.t.Fatalf("check %s: %v", sel, err)
	}
	if !on {
		b.run("check "+sel, chromedp.Click(chromedp.CSS(sel)))
	}
}

// text returns the text of the element sel on the loaded page: an input's
// value, another element's text content, trimmed. A missing element fails
// the test.
func (b *browser) text(sel string) string {
	b.t.Helper()
	got := b.eval("read "+sel, fmt.Sprintf(`(() => { const el = document.querySelector(%q);
		if (!el) return [];
		return [("value" in el && el.tagName !== "BUTTON" ? el.value : el.textContent).trim()]; })()`, sel))
	if len(got) != 1 {
		b.t.Fatalf("no %s on %s", sel, b.location())
	}
	return got[0]
}

// need fails the test at once when the loaded page has no sel (an
// action would wait for it until the step's timeout).
func (b *browser) need(sel string) {
	b.t.Helper()
	if b.count(sel) == 0 {
		b.t.Fatalf("no %s on %s", sel, b.location())
	}
}

// location is the address of the loaded page.
func (b *browser) location() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

// count returns how many elements match sel.
func (b *browser) count(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
	if err != nil {
		b.t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

// The widths a page is checked and photographed at: a laptop and a phone.
const (
	wideWidth   = 1280
	narrowWidth = 390
)

// look checks the page the tab shows, as name: every form control has a
// label, and at phone width nothing runs off the side (wide tables
// scroll inside .table-wrap). With M2MAUTH_SCREENSHOTS set it saves
// <dir>/<name>-1280.png and <name>-390.png (full page).
func (b *browser) look(name string) {
	b.t.Helper()
	unlabelled := b.eval(name+": labels", `Array.from(document.querySelectorAll("input, select, textarea"))
		.filter(el => !["hidden", "submit", "button", "reset"].includes(el.type))
		.filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
		.map(el => el.outerHTML.slice(0, 160))`)
	if len(unlabelled) > 0 {
		b.t.Errorf("%s: form controls without a label: %q", name, unlabelled)
	}
	// Nothing may stick out of the screen or of its card, at a laptop's
	// width or a phone's. The check lays the page out in a desktop
	// viewport, which does not grow to fit as a phone's does.
	for _, w := range []int64{wideWidth, narrowWidth} {
		b.run(fmt.Sprintf("%s at %d px", name, w), chromedp.EmulateViewport(w, 800))
		if over := b.eval(name+": overflow", fmt.Sprintf(stickOutJS, w)); len(over) > 0 {
			b.t.Errorf("%s: at %d px these stick out: %s", name, w, strings.Join(over, ", "))
		}
	}
	if b.shots != "" {
		// A phone's viewport, for a true picture of one.
		b.run(name+": phone", chromedp.EmulateViewport(narrowWidth, 800, chromedp.EmulateMobile))
		b.screenshot(fmt.Sprintf("%s-%d.png", name, narrowWidth), narrowWidth)
		b.run(name+": laptop", chromedp.EmulateViewport(wideWidth, 800))
		b.screenshot(fmt.Sprintf("%s-%d.png", name, wideWidth), wideWidth)
	}
	b.run(name+": reset the viewport", chromedp.EmulateViewport(wideWidth, 900))
	b.clean("look at " + name)
}

// stickOutJS lists the elements that stick out of the screen (%d px
// wide) or of their card: the outermost of each, and none that scrolls
// inside a box of its own (a wide table in .table-wrap).
const stickOutJS = `(() => {
	const screen = %d + 1;
	const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
		if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(p).overflowX)) return true; } return false; };
	const limit = el => { const card = el.parentElement && el.parentElement.closest(".card");
		return card ? Math.min(screen, card.getBoundingClientRect().right + 1) : screen; };
	const out = [];
	for (const el of document.body.querySelectorAll("*")) {
		const r = el.getBoundingClientRect();
		if (r.width === 0 || r.right <= limit(el) || scrolls(el)) continue;
		const p = el.parentElement;
		if (p !== document.body && p.getBoundingClientRect().right > limit(p)) continue;
		const cls = typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).join(".") : "";
		out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + cls + " (to " + Math.round(r.right) + " px, its box to " + Math.round(limit(el) - 1) + ")");
	}
	return out;
})()`

// eval evaluates a JavaScript expression that yields a list of strings.
func (b *browser) eval(step, js string) []string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
	if err != nil {
		b.t.Fatalf("%s: %v", step, err)
	}
	return out
}

// screenshot saves the whole page, width px wide, as file in the
// screenshot directory. The clip keeps to the width: what scrolls inside
// its own box (a wide table, the navigation on a phone) would otherwise
// widen the picture with empty space.
func (b *browser) screenshot(file string, width int64) {
	b.t.Helper()
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	shot, err := chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) ([]byte, error) {
		m, err := cdp.Call(ctx, t, page.GetLayoutMetrics, cdp.Empty{})
		if err != nil {
			return nil, err
		}
		if m.CSSContentSize == nil {
			return nil, errors.New("no content size")
		}
		res, err := cdp.Call(ctx, t, page.CaptureScreenshot, page.CaptureScreenshotParams{
			Format:                page.CaptureScreenshotFormatPng,
			Clip:                  &page.Viewport{Width: float64(width), Height: math.Ceil(m.CSSContentSize.Height), Scale: 1},
			CaptureBeyondViewport: new(true),
			FromSurface:           new(true),
		})
		return res.Data, err
	})
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", file, err)
	}
	small, err := shrinkPNG(shot)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", file, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, file), small, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// shrinkPNG re-encodes a screenshot with a palette of its 256 most common
// colours (a page is a few flat colours; the anti-aliased edges of its
// text take the nearest), at the best compression: about a third of the
// browser's size, for the pictures committed under docs/console.
func shrinkPNG(in []byte) ([]byte, error) {
	img, err := png.Decode(bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	r := img.Bounds()
	counts := map[color.RGBA]int{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	common := slices.SortedFunc(maps.Keys(counts), func(a, b color.RGBA) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return cmp.Compare(uint32(a.R)<<24|uint32(a.G)<<16|uint32(a.B)<<8|uint32(a.A), uint32(b.R)<<24|uint32(b.G)<<16|uint32(b.B)<<8|uint32(b.A))
	})
	pal := make(color.Palette, 0, 256)
	for _, c := range common[:min(len(common), 256)] {
		pal = append(pal, c)
	}
	out := image.NewPaletted(r, pal)
	index := make(map[color.RGBA]uint8, len(counts))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			i, ok := index[c]
			if !ok {
				i = uint8(pal.Index(c))
				index[c] = i
			}
			out.SetColorIndex(x, y, i)
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// The harness must see what it is there to see: each of these pages, under
// the console's Content-Security-Policy, makes one kind of problem, and a
// clean page makes none.
func TestBrowserHarnessSeesPageProblems(t *testing.T) {
	mux := http.NewServeMux()
	const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:"
	html := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", csp)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title><link rel="icon" href="data:,"></head><body>%s</body></html>`, body)
		}
	}
	js := func(code string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, code)
		}
	}
	mux.HandleFunc("/clean", html(`<p>fine</p><script src="/ok.js"></script>`))
	mux.HandleFunc("/ok.js", js(`document.body.dataset.ok = "1";`))
	mux.HandleFunc("/inline-style", html(`<p style="color: red">styled</p>`))
	mux.HandleFunc("/inline-script", html(`<script>document.title = "x";</script>`))
	mux.HandleFunc("/throws", html(`<script src="/throw.js"></script>`))
	mux.HandleFunc("/throw.js", js(`throw new Error("boom");`))
	mux.HandleFunc("/console-error", html(`<script src="/err.js"></script>`))
	mux.HandleFunc("/err.js", js(`console.error("something broke");`))
	mux.HandleFunc("/missing", html(`<img src="/nope.png" alt="">`))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := newBrowser(t, srv.URL)
	for _, tc := range []struct {
		path string
		want string // in a reported problem; "" for none
	}{
		{"/clean", ""},
		{"/inline-style", "Content Security Policy"},
		{"/inline-script", "Content Security Policy"},
		{"/throws", "boom"},
		{"/console-error", "something broke"},
		{"/missing", "404"},
	} {
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		_, err := chromedp.RunResponse(ctx, chromedp.Navigate(srv.URL+tc.path))
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		got := b.take()
		t.Logf("%s: %q", tc.path, got)
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: problems on a clean page: %q", tc.path, got)
		case tc.want != "" && !containsAny(got, tc.want):
			t.Errorf("%s: problems %q, want one mentioning %q", tc.path, got, tc.want)
		}
	}
	// A deliberate error status is not a problem; the same status elsewhere is.
	b.expectError("/nope.png", http.StatusNotFound)
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	_, err := chromedp.RunResponse(ctx, chromedp.Navigate(srv.URL+"/missing"))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if got := b.take(); len(got) > 0 {
		t.Errorf("deliberate 404: problems %q", got)
	}
}

func containsAny(list []string, s string) bool {
	for _, v := range list {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// consoleWalk is the state of the console walk: the browser, the server
// and what the walk made.
type consoleWalk struct {
	t  *testing.T
	ts *testServer
	b  *browser

	link         string // the one-time sign-in link (spent by signIn)
	api          string // the API's identifier
	appID        string
	secret       string // the application's first secret
	newSecret    string // after the rotation
	graceful     bool   // the rotation kept the first secret working
	token        string // a token of the application
	revokedToken string // a token revoked on the Revocations page
}

// The admin console in a real browser, the path of the issue's
// acceptance: sign in with a one-time link, create an API and a Client
// Credentials application, read its secret from the page, get a token with
// it over HTTP, rotate the secret, look at the signing keys, revoke a
// token, check tokens in the tester, disable the application and see the
// token endpoint refuse it, sign out. Every page is checked for script
// errors, CSP violations, failed subresources, unlabelled controls and
// overflow at phone width; with M2MAUTH_SCREENSHOTS=<dir> each is
// photographed (make screenshots).
func TestConsoleInBrowser(t *testing.T) {
	chromiumPath(t) // skip (or, under CI, fail) before starting a server
	ts := startServer(t, testConfig(t))
	w := &consoleWalk{t: t, ts: ts, b: newBrowser(t, ts.URL), api: "https://api.example.com/orders"}
	w.signInPage()
	w.signIn()
	w.createAPI()
	w.createApp()
	w.tokenOverHTTP()
	w.rotateSecret()
	w.keys()
	w.revocations()
	w.audit()
	w.tester()
	w.overview()
	w.disable()
	w.signOut()
	w.b.clean("the last page")
}

// signInPage: signed out, the console sends a visitor to the sign-in
// page, which refuses a wrong secret with the id kept.
func (w *consoleWalk) signInPage() {
	b := w.b
	b.open("/console/", "/console/sign-in")
	b.look("sign-in")
	b.fill("#client_id", w.ts.admin.ClientID)
	b.fill("#client_secret", "not-the-secret")
	b.expectError("/console/sign-in", http.StatusUnauthorized)
	b.click("button#sign-in", http.StatusUnauthorized, "/console/sign-in")
	if got := b.text("#client_id"); got != w.ts.admin.ClientID {
		w.t.Errorf("after a refused sign-in the client id field holds %q, want it kept", got)
	}
	if b.count(".flash.bad") != 1 {
		w.t.Error("a refused sign-in shows no alert")
	}
}

// signIn signs in with a one-time link from the admin API (what `m2mauth
// console` prints).
func (w *consoleWalk) signIn() {
	b := w.b
	resp, body := w.ts.adminDo(http.MethodPost, "/admin/v1/console/links", nil)
	if resp.StatusCode != http.StatusCreated {
		w.t.Fatalf("console link: %d %s", resp.StatusCode, body)
	}
	var link admin.ConsoleLinkResponse
	if err := json.Unmarshal(body, &link); err != nil {
		w.t.Fatal(err)
	}
	if !strings.HasPrefix(link.URL, w.ts.URL+"/console/link?token=") {
		w.t.Fatalf("console link %q is not on this server", link.URL)
	}
	w.link = link.URL
	b.load("open the sign-in link", chromedp.Navigate(link.URL))
	b.click("button#sign-in", http.StatusOK, "/console/")
	if got := b.text("header .who"); got != w.ts.admin.ClientID {
		w.t.Errorf("signed in as %q, want the admin client %q", got, w.ts.admin.ClientID)
	}
	for _, href := range []string{"/console/", "/console/apis", "/console/apps", "/console/keys", "/console/revocations", "/console/audit", "/console/tester"} {
		if b.count(fmt.Sprintf(`nav a[href=%q]`, href)) != 1 {
			w.t.Errorf("overview: no navigation link to %s", href)
		}
	}
	if b.count("button#sign-out") != 1 {
		w.t.Error("overview: no sign-out button")
	}
}

// overview, once the walk has made an API and an application and got
// tokens: it counts them.
func (w *consoleWalk) overview() {
	b := w.b
	b.click(`nav a[href="/console/"]`, http.StatusOK, "/console/")
	if text := b.text("main"); !strings.Contains(text, "Billing worker") {
		w.t.Error("overview: the application that got tokens is not listed")
	}
	b.look("overview")
}

// createAPI creates an API, first with a bad token lifetime: the form
// comes back with the error next to the field and nothing lost.
func (w *consoleWalk) createAPI() {
	b := w.b
	b.click(`nav a[href="/console/apis"]`, http.StatusOK, "/console/apis")
	b.click("a#new-api", http.StatusOK, "/console/apis/new")
	form := "form#api-form "
	b.fill(form+"input[name=identifier]", w.api)
	b.fill(form+"input[name=name]", "Orders")
	b.fill(form+"textarea[name=scopes]", "read:orders Read orders\nwrite:orders Create and change orders")
	b.fill(form+"input[name=token_lifetime]", "10m")
	b.look("api-form")
	b.fill(form+"input[name=token_lifetime]", "soon")
	b.expectError("/console/apis", http.StatusBadRequest)
	b.click(form+"button#save", http.StatusBadRequest, "/console/apis")
	if got := b.text(form + "input[name=name]"); got != "Orders" {
		w.t.Errorf("refused API form: name holds %q, want it kept", got)
	}
	if got := b.text(form + "textarea[name=scopes]"); !strings.Contains(got, "write:orders Create and change orders") {
		w.t.Errorf("refused API form: scopes hold %q, want them kept", got)
	}
	if b.count(form+`[aria-invalid="true"]`) == 0 || b.count(form+".error") == 0 {
		w.t.Error("refused API form: no field marked invalid with its error")
	}
	b.fill(form+"input[name=token_lifetime]", "10m")
	got := b.click(form+"button#save", http.StatusOK, "/console/api/")
	if !strings.Contains(got.resp.URL, "done=api-created") || b.count(".flash.ok") != 1 {
		w.t.Errorf("API created: at %s, want the api-created message", got.resp.URL)
	}
	if res, body := w.ts.adminDo(http.MethodGet, "/admin/v1/apis/"+url.PathEscape(w.api), nil); res.StatusCode != http.StatusOK {
		w.t.Fatalf("the API made in the console is not in the admin API: %d %s", res.StatusCode, body)
	} else {
		var api admin.APIResource
		if err := json.Unmarshal(body, &api); err != nil {
			w.t.Fatal(err)
		}
		if api.Name != "Orders" || strings.Join(api.Scopes, " ") != "read:orders write:orders" || api.TokenLifetimeSeconds != 600 ||
			api.ScopeDescriptions["write:orders"] != "Create and change orders" {
			w.t.Errorf("the API made in the console: %+v", api)
		}
	}
	b.click(`nav a[href="/console/apis"]`, http.StatusOK, "/console/apis")
	if b.count(fmt.Sprintf(`a[href=%q]`, "/console/api/"+url.PathEscape(w.api))) == 0 {
		w.t.Errorf("the APIs list has no link to %s", w.api)
	}
	b.look("apis")
}

// createApp creates a Client Credentials application granted the API and
// reads its id and secret from the page that shows them once.
func (w *consoleWalk) createApp() {
	b := w.b
	b.click(`nav a[href="/console/apps"]`, http.StatusOK, "/console/apps")
	b.click("a#new-app", http.StatusOK, "/console/apps/new")
	form := "form#app-form "
	b.fill(form+"input[name=name]", "Billing worker")
	b.fill(form+"input[name=description]", "Nightly invoice run")
	b.check(form + `input[name=auth_method][value=client_secret_basic]`)
	b.check(form + fmt.Sprintf(`input[name=grant][value=%q]`, w.api))
	for _, scope := range []string{"read:orders", "write:orders"} {
		b.check(form + fmt.Sprintf(`input[name=%q][value=%q]`, "scope:"+w.api, scope))
	}
	b.look("app-form")
	b.clickSecret(form+"button#save", "/console/apps")
	w.appID, w.secret = b.text("#client-id"), b.text("#client-secret")
	if w.appID == "" || w.secret == "" {
		w.t.Fatalf("secret page: client id %q, secret of %d characters", w.appID, len(w.secret))
	}
	if curl := b.text("#curl"); !strings.Contains(curl, "/oauth/token") || !strings.Contains(curl, w.appID) {
		w.t.Errorf("secret page: the curl command %q does not ask this server's token endpoint for this client", curl)
	}
	if env := b.text("#env"); !strings.Contains(env, w.appID) {
		w.t.Errorf("secret page: the environment lines %q do not name the client", env)
	}
	if b.count("button[data-copy]:not([hidden])") == 0 {
		w.t.Error("secret page: no copy button (console.js unhides them)")
	}
	b.look("secret")
	b.click("a#continue", http.StatusOK, "/console/app/"+w.appID)
	b.look("app")
}

// tokenOverHTTP gets a token with the secret the page showed, as a
// service would: a plain client-credentials request.
func (w *consoleWalk) tokenOverHTTP() {
	w.token = w.ts.mustToken(w.appID, w.secret, url.Values{"audience": {w.api}})
	v := w.ts.verifyToken(w.token)
	if v.claims["aud"] != w.api || v.claims["sub"] != w.appID || v.claims["scope"] != "read:orders write:orders" {
		w.t.Errorf("token claims %v, want aud %s, sub %s, both scopes", v.claims, w.api, w.appID)
	}
	// resource (RFC 8707) names the API as well.
	w.ts.mustToken(w.appID, w.secret, url.Values{"resource": {w.api}, "scope": {"read:orders"}})
}

// rotateSecret rotates the secret with a grace period: the new secret is
// shown once, and both work until the old one's grace ends.
func (w *consoleWalk) rotateSecret() {
	b := w.b
	options := b.eval("grace options", `Array.from(document.querySelectorAll("form:has(button#rotate-secret) select[name=grace] option")).map(o => o.value)`)
	if len(options) == 0 {
		w.t.Fatal("app detail: the rotate form has no grace options")
	}
	grace := options[0]
	for _, o := range options {
		// Seconds, or a Go duration.
		d, err := time.ParseDuration(o)
		if n, nerr := strconv.Atoi(o); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err == nil && d > 0 {
			grace, w.graceful = o, true
			break
		}
	}
	w.t.Logf("rotating with grace %q (of %q)", grace, options)
	b.run("choose the grace period", chromedp.SetValue(chromedp.CSS("form:has(button#rotate-secret) select[name=grace]"), grace))
	b.clickSecret("button#rotate-secret", "/console/app/"+w.appID+"/secrets")
	if id := b.text("#client-id"); id != w.appID {
		w.t.Errorf("rotated secret page names %q, want %q", id, w.appID)
	}
	w.newSecret = b.text("#client-secret")
	if w.newSecret == "" || w.newSecret == w.secret {
		w.t.Fatal("rotation showed no new secret")
	}
	w.token = w.ts.mustToken(w.appID, w.newSecret, url.Values{"audience": {w.api}})
	status, _ := w.ts.tokenStatus(w.appID, w.secret, url.Values{"audience": {w.api}})
	switch {
	case w.graceful && status != http.StatusOK:
		w.t.Errorf("old secret during its grace period (%s): %d, want 200", grace, status)
	case !w.graceful && status != http.StatusUnauthorized:
		w.t.Errorf("old secret rotated without grace: %d, want 401", status)
	}
	b.click("a#continue", http.StatusOK, "/console/app/"+w.appID)
	// Secrets are listed by hint: m2ms_ and their first characters.
	hints := b.eval("secret rows", `Array.from(document.querySelectorAll("tbody tr")).map(tr => tr.textContent).filter(t => t.includes("m2ms_"))`)
	if w.graceful && len(hints) != 2 {
		w.t.Errorf("app detail after a rotation with grace: %d secrets listed, want both", len(hints))
	}
}

// keys schedules a new signing key.
func (w *consoleWalk) keys() {
	b := w.b
	b.click(`nav a[href="/console/keys"]`, http.StatusOK, "/console/keys")
	before := b.count(`a[id^="revoke-"]`)
	if before == 0 {
		w.t.Error("keys: no key with a revoke link")
	}
	b.click("form#rotate-key button#rotate", http.StatusOK, "/console/keys")
	if after := b.count(`a[id^="revoke-"]`); after != before+1 {
		w.t.Errorf("keys: %d keys after a rotation, %d before", after, before)
	}
	b.look("keys")
}

// audit filters the audit trail for the revocation just made.
func (w *consoleWalk) audit() {
	b := w.b
	b.click(`nav a[href="/console/audit"]`, http.StatusOK, "/console/audit")
	b.fill("form#audit-filter input[name=action]", "revocation.*")
	b.click("form#audit-filter button#audit-apply", http.StatusOK, "/console/audit")
	if got := b.text("table#audit tbody tr td:nth-child(3)"); got != "revocation.add" {
		w.t.Errorf("audit trail filtered by revocation.*: first action %q, want revocation.add", got)
	}
	b.look("audit")
}

// revocations revokes a token by pasting it.
func (w *consoleWalk) revocations() {
	b := w.b
	w.revokedToken = w.ts.mustToken(w.appID, w.newSecret, url.Values{"audience": {w.api}, "scope": {"read:orders"}})
	b.click(`nav a[href="/console/revocations"]`, http.StatusOK, "/console/revocations")
	b.fill("form#revoke-token textarea[name=token]", w.revokedToken)
	got := b.click("form#revoke-token button#revoke", http.StatusOK, "/console/revocations")
	if !strings.Contains(got.resp.URL, "done=token-revoked") {
		w.t.Errorf("revocation: at %s, want the token-revoked message", got.resp.URL)
	}
	b.look("revocations")
}

// tester checks a live token and the revoked one.
func (w *consoleWalk) tester() {
	b := w.b
	b.click(`nav a[href="/console/tester"]`, http.StatusOK, "/console/tester")
	w.check(w.revokedToken, "Invalid")
	w.check(w.token, "Valid")
	if claims := b.text("#claims"); !strings.Contains(claims, w.appID) || !strings.Contains(claims, w.api) {
		w.t.Errorf("tester: claims %q, want the client and the API", claims)
	}
	if header := b.text("#header"); !strings.Contains(header, "kid") {
		w.t.Errorf("tester: header %q, want its kid", header)
	}
	b.look("tester")
}

// check pastes token into the tester and wants a verdict starting with
// want.
func (w *consoleWalk) check(token, want string) {
	b := w.b
	b.fill("form#tester textarea[name=token]", token)
	b.click("form#tester button#check", http.StatusOK, "/console/tester")
	if v := b.text("#verdict"); !strings.HasPrefix(v, want) || want == "Valid" && strings.HasPrefix(v, "Invalid") {
		w.t.Errorf("tester: verdict %q, want %s", v, want)
	}
}

// disable disables the application: the token endpoint refuses it, and
// the tokens it held stop verifying.
func (w *consoleWalk) disable() {
	b := w.b
	b.click(`nav a[href="/console/apps"]`, http.StatusOK, "/console/apps")
	b.click(fmt.Sprintf(`a[href=%q]`, "/console/app/"+w.appID), http.StatusOK, "/console/app/"+w.appID)
	got := b.click("button#disable", http.StatusOK, "/console/app/"+w.appID)
	if !strings.Contains(got.resp.URL, "done=app-disabled") || b.count("button#enable") != 1 {
		w.t.Errorf("disable: at %s, want the app-disabled message and an enable button", got.resp.URL)
	}
	for _, sec := range []string{w.newSecret, w.secret} {
		if status, code := w.ts.tokenStatus(w.appID, sec, url.Values{"audience": {w.api}}); status != http.StatusUnauthorized || code != "invalid_client" {
			w.t.Errorf("token for the disabled application: %d %s, want 401 invalid_client", status, code)
		}
	}
	b.click(`nav a[href="/console/tester"]`, http.StatusOK, "/console/tester")
	w.check(w.token, "Invalid")
}

// signOut ends the session: the console sends the visitor to sign in, the
// spent link does not sign in again, the sign-in form does.
func (w *consoleWalk) signOut() {
	b := w.b
	b.click("button#sign-out", http.StatusOK, "/console/sign-in")
	b.open("/console/", "/console/sign-in")
	b.open("/console/apps", "/console/sign-in")
	b.load("open the spent sign-in link", chromedp.Navigate(w.link))
	b.click("button#sign-in", http.StatusOK, "/console/sign-in")
	if b.count(".flash.bad") != 1 {
		w.t.Error("a spent sign-in link shows no alert")
	}
	b.fill("#client_id", w.ts.admin.ClientID)
	b.fill("#client_secret", w.ts.admin.ClientSecret)
	b.click("button#sign-in", http.StatusOK, "/console/")
	if b.count("button#sign-out") != 1 {
		w.t.Error("signed in with the form: no sign-out button")
	}
}

// shrinkPNG keeps a picture of at most 256 colours exactly, and maps the
// rarest colours of a richer one to their nearest.
func TestShrinkPNG(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for y := range 30 {
		for x := range 40 {
			// 344 colours: 0-255 on 4 pixels each, 256-343 (the same
			// red plus one step of green) on 2.
			n := (y*40 + x) % 600
			if n >= 512 {
				n = 256 + (n - 512)
			} else {
				n /= 2
			}
			img.Set(x, y, color.NRGBA{uint8(n), uint8(n >> 8), 200, 255})
		}
	}
	var in bytes.Buffer
	if err := png.Encode(&in, img); err != nil {
		t.Fatal(err)
	}
	out, err := shrinkPNG(in.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != img.Bounds() {
		t.Fatalf("bounds %v, want %v", got.Bounds(), img.Bounds())
	}
	exact, near := 0, 0
	for y := range 30 {
		for x := range 40 {
			a := color.NRGBAModel.Convert(got.At(x, y)).(color.NRGBA)
			b := img.NRGBAAt(x, y)
			switch d := absDiff(a.R, b.R) + absDiff(a.G, b.G) + absDiff(a.B, b.B); {
			case d == 0:
				exact++
			case d <= 2:
				near++
			default:
				t.Fatalf("(%d,%d): %v for %v", x, y, a, b)
			}
		}
	}
	if exact < 256*2 || near == 0 {
		t.Errorf("%d pixels exact, %d near: want the 256 common colours exact and the rest near", exact, near)
	}
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
