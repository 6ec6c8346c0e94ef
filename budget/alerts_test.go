package budget

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func (f *fixture) evaluate() AlertRun {
	f.t.Helper()
	run, err := f.l.EvaluateAlerts(f.ctx)
	if err != nil {
		f.t.Fatalf("evaluate alerts: %v", err)
	}
	if run.Skipped {
		f.t.Fatalf("evaluation skipped")
	}
	return run
}

// unresolved returns "rule target status" for each unresolved alert.
func (f *fixture) unresolved() []string {
	f.t.Helper()
	as, err := f.l.ListAlerts(f.ctx, AlertFilter{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Rule+" "+a.Target+" "+a.Status)
	}
	sort.Strings(out)
	return out
}

func (f *fixture) alertID(rule string) int64 {
	f.t.Helper()
	as, err := f.l.ListAlerts(f.ctx, AlertFilter{Status: "all"})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range as {
		if a.Rule == rule {
			return a.ID
		}
	}
	f.t.Fatalf("no alert %s", rule)
	return 0
}

func same(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func TestAlertLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	f.account("hot", "100")
	f.account("calm", "100")

	// Fire: 80% used crosses the 75% threshold.
	f.charge("hot", "80", "alice", "cpu")
	run := f.evaluate()
	if run.Opened != 1 || run.Firing != 1 {
		t.Fatalf("first run %+v, want one alert opened", run)
	}
	same(t, "after 80%", f.unresolved(), "budget_used_75 hot open")
	first := f.alertID("budget_used_75")

	// Deduplicate: the same condition refreshes the same alert.
	run = f.evaluate()
	if run.Opened != 0 {
		t.Errorf("second run opened %d", run.Opened)
	}
	a, err := f.l.GetAlert(f.ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if a.FireCount != 2 || a.Status != AlertOpen || a.Account != "hot" || a.Severity != SeverityInfo {
		t.Errorf("alert after two runs: %+v", a)
	}

	// A higher threshold replaces the lower one.
	f.charge("hot", "15", "alice", "cpu")
	f.evaluate()
	same(t, "after 95%", f.unresolved(), "budget_used_90 hot open")
	if a, _ := f.l.GetAlert(f.ctx, first); a.Status != AlertResolved || a.ResolvedAt == nil {
		t.Errorf("75%% alert not resolved: %+v", a)
	}

	// Acknowledge: it stays acknowledged while the condition holds.
	id90 := f.alertID("budget_used_90")
	a, err = f.l.AcknowledgeAlert(f.ctx, id90, "pi@example.org", "talking to the group")
	if err != nil || a.Status != AlertAcknowledged || *a.AcknowledgedBy != "pi@example.org" {
		t.Fatalf("acknowledge: %+v %v", a, err)
	}
	if _, err := f.l.AcknowledgeAlert(f.ctx, id90, "pi@example.org", ""); err != nil {
		t.Errorf("acknowledging twice: %v", err)
	}
	f.evaluate()
	same(t, "acknowledged", f.unresolved(), "budget_used_90 hot acknowledged")

	// Auto-resolve: a deposit brings usage under every threshold.
	if _, err := f.l.AddDeposit(f.ctx, "", "hot", Deposit{Amount: dec("1000"), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	run = f.evaluate()
	if run.Resolved != 1 {
		t.Errorf("resolved %d, want 1", run.Resolved)
	}
	same(t, "after deposit", f.unresolved())
	if _, err := f.l.AcknowledgeAlert(f.ctx, id90, "x", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("acknowledging a resolved alert: %v, want ErrConflict", err)
	}
	if _, err := f.l.AcknowledgeAlert(f.ctx, 999999, "x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("acknowledging a missing alert: %v, want ErrNotFound", err)
	}

	// Recurrence opens a new alert, not the resolved one.
	f.charge("hot", "800", "alice", "cpu")
	f.evaluate()
	same(t, "recurrence", f.unresolved(), "budget_used_75 hot open")
	if f.alertID("budget_used_75") == first {
		t.Error("recurrence reused the resolved alert")
	}
	all, _ := f.l.ListAlerts(f.ctx, AlertFilter{Status: "all"})
	if len(all) != 3 {
		t.Errorf("%d alerts in all, want 3", len(all))
	}
	counts, err := f.l.AlertCounts(f.ctx)
	if err != nil || len(counts) != 1 || counts[0].Count != 1 || counts[0].Rule != "budget_used_75" {
		t.Errorf("counts %+v %v", counts, err)
	}
	f.verify()
}

func TestAlertsForHoldsChargesAndProjections(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	now := time.Now()
	// Stuck hold: taken eight days ago (past the 7-day timeout).
	f.account("stuck", "1000")
	var stuck int64
	f.at(now.Add(-8*24*time.Hour), func() { stuck = f.hold("stuck", "10") })
	f.hold("stuck", "10") // a fresh one does not fire
	// Overrun: a job that cost more than its hold.
	f.account("over", "1000")
	h := f.hold("over", "10")
	if _, err := f.l.Settle(f.ctx, SettleRequest{HoldID: h, JobID: "77", ArrayTaskID: -1, Actual: dec("15"), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	// Fast burn: $1,000 for 30 days, $45/day for 20 days, 10 days left.
	start := startOfDay(now, time.UTC).AddDate(0, 0, -20)
	f.at(start, func() { f.account("fast", "1000") })
	for d := 0; d < 20; d++ {
		f.at(noon(start, d), func() { f.charge("fast", "45", "alice", "cpu") })
	}
	f.setEnd("fast", start.AddDate(0, 0, 30))

	f.evaluate()
	same(t, "fired", f.unresolved(),
		"budget_used_90 fast open", "overrun_charge 1 open", "overspending fast open", "projected_exhaustion fast open",
		"stuck_hold 1 open")
	pe, _ := f.l.GetAlert(f.ctx, f.alertID("projected_exhaustion"))
	if pe.Severity != SeverityCritical || !strings.Contains(pe.Message, "fast is projected to run out") {
		t.Errorf("exhaustion alert: %+v", pe)
	}
	ov, _ := f.l.GetAlert(f.ctx, f.alertID("overrun_charge"))
	if !strings.Contains(ov.Message, "job 77 on over cost $15.00, $5.00 more than its hold") {
		t.Errorf("overrun message: %s", ov.Message)
	}

	// Clearing: the stuck hold is released, the fast account is topped up
	// and given a longer end.
	if _, err := f.l.ReleaseHold(f.ctx, stuck, "test", "job gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.l.AddDeposit(f.ctx, "", "fast", Deposit{Amount: dec("100000"), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	f.evaluate()
	same(t, "after clearing", f.unresolved(), "overrun_charge 1 open", "underspending fast open")
	f.verify()
}

func TestTwoEvaluatorsNeverDuplicateAnAlert(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		f.account(n, "100")
		f.charge(n, "99", "alice", "cpu")
	}
	// Two "services" (ledgers with their own pools on one database)
	// evaluate at once, many times.
	other := New(f.l.pool, f.l.cfg, nil)
	var wg sync.WaitGroup
	var ran atomic.Int64
	for i := 0; i < 20; i++ {
		for _, l := range []*Ledger{f.l, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run, err := l.EvaluateAlerts(f.ctx)
				if err != nil {
					t.Errorf("evaluate: %v", err)
				}
				if !run.Skipped {
					ran.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if ran.Load() == 0 {
		t.Fatal("no evaluation ran")
	}
	// Without the lock, the unique index alone still deduplicates: eight
	// writers record the same firing at the same moment.
	fs := []firing{{rule: "budget_used_90", kind: "account", target: "a1", severity: SeverityWarning, message: "m"}}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.l.recordFirings(f.ctx, fs); err != nil {
				t.Errorf("record: %v", err)
			}
		}()
	}
	wg.Wait()
	var rows, distinct int
	if err := f.l.pool.QueryRow(f.ctx, `SELECT count(*), count(DISTINCT (rule, target)) FROM alerts`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != 4 || distinct != 4 {
		t.Errorf("%d alert rows for %d rule/targets, want 4 and 4", rows, distinct)
	}
}

func TestAlertWebhook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got [][]string
	fail := atomic.Bool{}
	fail.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			Alerts []Alert `json:"alerts"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		var rules []string
		for _, a := range msg.Alerts {
			rules = append(rules, a.Rule+" "+a.Target)
		}
		mu.Lock()
		got = append(got, rules)
		mu.Unlock()
	}))
	defer srv.Close()
	f := newFixture(t, "[alerts]\nwebhook_url = \""+srv.URL+"\"\nwebhook_timeout = \"1s\"\n")
	f.account("w", "100")
	f.charge("w", "60", "alice", "cpu")
	// The webhook is down: evaluation still succeeds; nothing is marked
	// delivered.
	if run := f.evaluate(); run.Opened != 1 || run.Notified != 0 {
		t.Errorf("run with the webhook down: %+v", run)
	}
	fail.Store(false)
	if run := f.evaluate(); run.Notified != 1 {
		t.Errorf("run with the webhook up: %+v", run)
	}
	if run := f.evaluate(); run.Notified != 0 {
		t.Errorf("an alert was delivered twice: %+v", run)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || len(got[0]) != 1 || got[0][0] != "budget_used_50 w" {
		t.Errorf("webhook received %v", got)
	}
}

func TestAlertsConfigAndFilters(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"[alerts]\nrules = [\"nope\"]\n",
		"[alerts]\nthresholds = [0]\n",
		"[alerts]\nvariance_percent = 0\n",
		"[alerts]\nwindow = \"30\"\n",
		"[alerts]\nwebhook_url = \"ftp://x\"\n",
	} {
		if _, err := ParseConfig(bad); err == nil {
			t.Errorf("config %q accepted", bad)
		}
	}
	f := newFixture(t, "[alerts]\nrules = [\"stuck_hold\"]\n")
	f.account("x", "100")
	f.charge("x", "99", "alice", "cpu")
	if run := f.evaluate(); run.Firing != 0 {
		t.Errorf("budget_used fired with only stuck_hold enabled: %+v", run)
	}
	for _, fl := range []AlertFilter{{Status: "bogus"}, {Severity: "loud"}, {Account: "x'; --"}} {
		if _, err := f.l.ListAlerts(f.ctx, fl); !errors.Is(err, ErrInvalid) {
			t.Errorf("filter %+v: %v, want ErrInvalid", fl, err)
		}
	}
}
