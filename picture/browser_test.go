package picture

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// update writes the screenshots shown in docs/trace.md (go test ./picture -run Browser -update).
var update = flag.Bool("update", false, "write the screenshots under docs/images")

// docsImages is where -update writes the screenshots.
const docsImages = "../docs/images"

// browser starts headless Chromium for the test. Chromium is part of the
// test setup (scripts/setup.sh --kube installs Debian's chromium): without
// it the test fails, it does not skip.
func browser(t testing.TB) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("headless Chromium is needed to check the pages: apt-get install chromium (make tools-kube / scripts/setup.sh --kube installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 900)); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// problems collects what a self-contained page must not do: console
// errors, uncaught exceptions, and requests for anything but the file.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(s string) {
	p.mu.Lock()
	p.list = append(p.list, s)
	p.mu.Unlock()
}

func (p *problems) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

// open loads a file in a new tab and fails on console errors and fetches.
func open(t *testing.T, bctx context.Context, file string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	var pr problems
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 900)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == "error" || ev.Type == "warning" || ev.Type == "assert" {
				pr.add(fmt.Sprintf("console.%s", ev.Type))
			}
		case *runtime.EventExceptionThrown:
			pr.add("exception: " + ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == "error" || ev.Entry.Level == "warning" {
				pr.add(fmt.Sprintf("log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			if u := ev.Request.URL; !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
				pr.add("fetch: " + u)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+abs), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	// Events of the load arrive before the document is ready; a round trip
	// through the page makes sure the listener has seen them.
	js[bool](t, ctx, `true`)
	if p := pr.get(); len(p) > 0 {
		t.Fatalf("%s: the page is not clean:\n  %s", file, strings.Join(p, "\n  "))
	}
	return ctx
}

// js evaluates expr in the page.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// texts returns the text of every element matching sel.
func texts(t *testing.T, ctx context.Context, sel string) []string {
	t.Helper()
	return js[[]string](t, ctx, fmt.Sprintf(`Array.from(document.querySelectorAll(%q), e => e.textContent)`, sel))
}

func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return js[int](t, ctx, fmt.Sprintf(`document.querySelectorAll(%q).length`, sel))
}

func anyContains(list []string, want string) bool {
	for _, s := range list {
		if strings.Contains(s, want) {
			return true
		}
	}
	return false
}

// screenshot takes a picture of the element sel, into docs/images with
// -update, else into the test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, sel, name string, scale float64) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.ScreenshotScale(sel, scale))
	if err != nil {
		t.Fatalf("screenshot of %s: %v", sel, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %s is not a PNG", sel)
	}
	dir := t.TempDir()
	if *update {
		dir = docsImages
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name string, write func(*os.File) error) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBrowserTracePages renders the three traces of docs/trace.md to HTML,
// opens each in headless Chromium and checks what a reader relies on.
func TestBrowserTracePages(t *testing.T) {
	bctx := browser(t)
	for _, c := range traceCases {
		t.Run(c.name, func(t *testing.T) {
			r := c.result(t)
			file := writeFile(t, c.name+".html", func(f *os.File) error { return WriteTraceHTML(f, r) })
			ctx := open(t, bctx, file)

			hops := texts(t, ctx, "svg.trace g.hop text.title")
			if len(hops) < 8 {
				t.Fatalf("only %d hops drawn: %q", len(hops), hops)
			}
			for _, want := range []string{"send", "route", "PREROUTING", "FORWARD", "POSTROUTING"} {
				if !anyContains(hops, want) {
					t.Errorf("no hop labelled %q among %q", want, hops)
				}
			}
			for _, s := range r.Summaries() {
				if count(t, ctx, "#verdict .verdict-"+s.Kind) == 0 || count(t, ctx, "svg.trace g.verdict-"+s.Kind) == 0 {
					t.Errorf("verdict %s is not shown in the list and the diagram", s.Kind)
				}
			}
			// Rule text on hover: every hop has a tooltip.
			if n, tips := count(t, ctx, "svg.trace g.hop"), count(t, ctx, "svg.trace g.hop > title"); n != tips {
				t.Errorf("%d hops, %d tooltips", n, tips)
			}

			switch c.name {
			case "f1-same-node-service":
				if n := count(t, ctx, "svg.trace g.hop.reply.bypass .bypass-marker"); n != 1 {
					t.Errorf("want one bypass marker on a reply hop, got %d", n)
				}
				if count(t, ctx, "svg.trace g.hop:not(.reply) .bypass-marker") != 0 {
					t.Errorf("the forward path is marked as bypassing conntrack")
				}
				if !anyContains(texts(t, ctx, "#verdict a"), "FAILURES.md F1") {
					t.Errorf("no link to FAILURES.md F1 in the verdict")
				}
				if !anyContains(texts(t, ctx, "svg.trace g.rewrite .rewrite-label"), "DNAT") {
					t.Errorf("the DNAT is not marked")
				}
			case "vxlan-statistic-split":
				ways := texts(t, ctx, "svg.trace g.band.branch text")
				if len(ways) != 4 {
					t.Fatalf("want 4 ways of the split, got %q", ways)
				}
				random := 0
				for _, w := range ways {
					if !strings.Contains(w, "25%") || !strings.Contains(w, "→ established with") {
						t.Errorf("way %q lacks its probability or end", w)
					}
					if strings.Contains(w, "statistic random") {
						random++
					}
				}
				if random != 3 || !strings.Contains(ways[3], "otherwise") {
					t.Errorf("want three ways taken by a statistic rule and the last one otherwise: %q", ways)
				}
				if !anyContains(hops, "vxlan") || !anyContains(hops, "wire") {
					t.Errorf("the overlay is not drawn: %q", hops)
				}
				if count(t, ctx, "svg.trace g.lane-node") != 2 {
					t.Errorf("want two node lanes")
				}
			case "forward-drop":
				drops := texts(t, ctx, "svg.trace g.hop.drop text.title")
				if len(drops) != 1 || !strings.Contains(drops[0], "FORWARD") {
					t.Errorf("want the FORWARD hop marked as dropping, got %q", drops)
				}
				if count(t, ctx, ".bypass-marker") != 0 {
					t.Errorf("a bypass marker on a trace without one")
				}
			}

			// Light and dark are both themed; print is light.
			bg := func(media string, dark bool) string {
				scheme := "light"
				if dark {
					scheme = "dark"
				}
				if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Media: media, Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
				}); err != nil {
					t.Fatal(err)
				}
				return js[string](t, ctx, `getComputedStyle(document.documentElement).backgroundColor`)
			}
			light, dark, print := bg("", false), bg("", true), bg("print", true)
			if light != "rgb(255, 255, 255)" || dark != "rgb(13, 17, 23)" || print != "rgb(255, 255, 255)" {
				t.Errorf("backgrounds: light %s, dark %s, print (dark preference) %s", light, dark, print)
			}
			bg("", false)
			scale := 1.0
			if len(r.Paths) > 1 {
				scale = 0.6 // a tall picture: keep the file small
			}
			screenshot(t, ctx, "#overview", "trace-"+c.name, scale)
		})
	}
}

// TestBrowserTraceSVG opens the standalone SVG: it loads cleanly and has
// the hops and the F1 bypass marker.
func TestBrowserTraceSVG(t *testing.T) {
	bctx := browser(t)
	r := caseNamed(t, "f1-same-node-service").result(t)
	file := writeFile(t, "f1.svg", func(f *os.File) error { return WriteTraceSVG(f, r) })
	ctx := open(t, bctx, file)
	if n := count(t, ctx, "g.hop"); n < 8 {
		t.Errorf("%d hops in the SVG", n)
	}
	if count(t, ctx, ".bypass-marker") != 1 {
		t.Errorf("no bypass marker in the SVG")
	}
}

// TestBrowserDoctorPage renders doctor's report of the F1 node (with its
// snapshot embedded) and checks the page in Chromium.
func TestBrowserDoctorPage(t *testing.T) {
	bctx := browser(t)
	page := f1DoctorPage(t)
	file := writeFile(t, "doctor.html", func(f *os.File) error { return WriteDoctorHTML(f, page) })
	ctx := open(t, bctx, file)
	if count(t, ctx, "article.finding.sev-ERROR#TW002") != 1 {
		t.Errorf("no ERROR finding TW002 on the page")
	}
	if !anyContains(texts(t, ctx, "#TW002 a"), "FAILURES.md F1") {
		t.Errorf("TW002 does not link FAILURES.md F1")
	}
	if !anyContains(texts(t, ctx, "#TW002 pre.fix"), "bridge-nf-call-iptables") {
		t.Errorf("TW002's fix is not shown")
	}
	rules := texts(t, ctx, "#node .rules")
	if len(rules) != 3 || !anyContains(rules, "iptables-nft: ") {
		t.Errorf("rule counts per backend: %q", rules)
	}
	if !anyContains(texts(t, ctx, "#node td div"), "net.bridge.bridge-nf-call-iptables = 0") {
		t.Errorf("the key sysctl is not in the node summary")
	}
	if count(t, ctx, "#snapshot-download") != 1 {
		t.Errorf("no snapshot download link")
	}
	screenshot(t, ctx, "#report", "doctor-f1", 1)
}
