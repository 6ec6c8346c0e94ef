package budget

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromiumPath finds Debian's chromium (tests/tools/provision-chromium.sh
// installs it). There is no skip: a missing browser fails the test with
// the command that provides it.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{os.Getenv("ASBB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run tests/tools/provision-chromium.sh (apt-get install chromium) or set ASBB_CHROMIUM")
	return ""
}

// headless runs chromium once on a page with the flags a root CI machine
// needs, in a fresh profile, and returns its stdout.
func headless(t *testing.T, browser, page string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir()}, extra...)
	args = append(args, "file://"+page)
	cmd := exec.CommandContext(ctx, browser, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", browser, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// TestGrantReportInAHeadlessBrowser opens the HTML report in a real
// browser: the DOM it builds has the chart's paths, and its screenshot
// (kept in tests/artifacts/ for people to look at) is a real picture.
func TestGrantReportInAHeadlessBrowser(t *testing.T) {
	t.Parallel()
	browser := chromiumPath(t)
	f := reportFixture(t)
	r, err := f.l.GrantReport(f.ctx, "NSF-2025-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("../tests/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "grant-report.html")
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	dom := string(headless(t, browser, page, "--dump-dom"))
	actual := regexp.MustCompile(`<path id="burndown-actual" d="(M[0-9. L]+)"`).FindStringSubmatch(dom)
	if actual == nil {
		t.Fatalf("the browser's DOM has no burn-down path:\n%.2000s", dom)
	}
	if n := strings.Count(actual[1], "L"); n != len(r.BurnDown) {
		t.Errorf("the path has %d segments, the series %d days", n, len(r.BurnDown))
	}
	for _, want := range []string{`id="burndown-plan"`, "<svg", "Ending balance", "$3,303.13"} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}

	shot := filepath.Join(dir, "grant-report.png")
	os.Remove(shot)
	headless(t, browser, page, "--screenshot="+shot, "--window-size=1000,1400")
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1000 || b.Dy() != 1400 {
		t.Errorf("screenshot is %v", b)
	}
	// A blank page compresses to almost nothing; text, tables and the
	// chart do not. Count the colours to be sure something was drawn,
	// and look for the chart's blue line.
	if len(data) < 20000 {
		t.Errorf("screenshot is only %d bytes: blank?", len(data))
	}
	colours := map[uint32]bool{}
	blue := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
			if r>>8 < 40 && g>>8 > 80 && g>>8 < 130 && bl>>8 > 190 {
				blue++
			}
		}
	}
	if len(colours) < 16 || blue < 50 {
		t.Errorf("screenshot has %d colours and %d chart-blue pixels: the chart did not render", len(colours), blue)
	}
	t.Logf("report: %s, screenshot: %s (%d bytes)", page, shot, len(data))
}
