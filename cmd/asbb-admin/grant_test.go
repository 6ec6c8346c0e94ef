package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/shopspring/decimal"
)

// grantsCLI points the CLI at a fresh database and runs commands in-process,
// capturing what they print.
type grantsCLI struct {
	t   *testing.T
	url string
	l   *budget.Ledger
}

func newGrantsCLI(t *testing.T) *grantsCLI {
	t.Helper()
	url := pgtest.URL(t)
	cfgPath := filepath.Join(t.TempDir(), "asbb.toml")
	if err := os.WriteFile(cfgPath, []byte("[cluster]\nname = \"*\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ASBB_CONFIG", cfgPath)
	t.Setenv("ASBB_DATABASE_URL", url)
	cfg, err := budget.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	l, err := budget.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return &grantsCLI{t: t, url: url, l: l}
}

// run runs one command line in-process (runIO is run with its output
// captured) and returns its exit code, stdout and stderr.
func (c *grantsCLI) run(args ...string) (int, string, string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	code := runIO(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// shellWords splits a command line the way sh does for the quoting used in
// the docs: double quotes, no expansions.
func shellWords(line string) []string {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// docCommands returns every asbb-admin command in the sh blocks of
// docs/grants.md, in order.
func docCommands(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("../../docs/grants.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds [][]string
	inSh := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```sh":
			inSh = true
		case line == "```":
			inSh = false
		case inSh && strings.HasPrefix(line, "asbb-admin "):
			cmds = append(cmds, shellWords(line)[1:])
		case inSh && line != "":
			t.Fatalf("docs/grants.md: unexpected line in a sh block: %q", line)
		}
	}
	if len(cmds) < 20 {
		t.Fatalf("found only %d commands in docs/grants.md", len(cmds))
	}
	return cmds
}

func decOf(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// Every command of docs/grants.md (the README's account and grant examples
// among them) runs as written, and does what the page says.
func TestDocsCommands(t *testing.T) {
	c := newGrantsCLI(t)
	ctx := context.Background()
	for _, args := range docCommands(t) {
		code, out, errOut := c.run(args...)
		if code != 0 {
			t.Fatalf("asbb-admin %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		t.Logf("asbb-admin %s\n%s", strings.Join(args, " "), out)
	}
	// The three account examples: fully deposited, in the right steps.
	for _, w := range []struct {
		account   string
		n         int
		deposited string
	}{{"ml-proj-001", 6, "600"}, {"climate-sim", 4, "20000"}, {"bio-pipeline", 52, "5200"}} {
		ss, err := c.l.ListSchedules(ctx, w.account)
		if err != nil || len(ss) != 1 {
			t.Fatalf("%s: schedules %v %v", w.account, ss, err)
		}
		s := ss[0]
		if s.Installments != w.n || s.Deposited != w.n || !s.DepositedAmount.Equal(decOf(w.deposited)) || s.Status != "completed" {
			t.Fatalf("%s: %+v", w.account, s)
		}
		a, err := c.l.GetAccount(ctx, "", w.account)
		if err != nil || !a.Deposited.Equal(decOf(w.deposited)) {
			t.Fatalf("%s: deposited %s %v", w.account, a.Deposited, err)
		}
	}
	als, _ := c.l.ScheduleInstallments(ctx, 2)
	var days []string
	for _, a := range als {
		days = append(days, a.StartsAt.UTC().Format("01-02"))
	}
	if strings.Join(days, ",") != "01-01,04-01,07-01,10-01" {
		t.Fatalf("quarterly installments on %v", days)
	}
	als, _ = c.l.ScheduleInstallments(ctx, 3)
	if last := als[len(als)-1]; last.StartsAt.UTC().Format("2006-01-02") != "2025-12-24" {
		t.Fatalf("weekly total reached on %s, want 2025-12-24", last.StartsAt)
	}
	// lab-ops: Jan 31, Feb 28, Mar 31, and the remainder on Apr 30; each
	// lapses one month after it falls due, so by now all have lapsed.
	als, _ = c.l.ScheduleInstallments(ctx, 4)
	if len(als) != 4 || als[1].StartsAt.UTC().Format("01-02") != "02-28" || !als[3].Amount.Equal(decOf("100")) {
		t.Fatalf("lab-ops installments: %+v", als)
	}
	if a, _ := c.l.GetAccount(ctx, "", "lab-ops"); !a.Deposited.IsZero() {
		t.Fatalf("lab-ops deposited %s, want 0 (all lapsed)", a.Deposited)
	}
	if es, _ := c.l.ListEntries(ctx, budget.EntryFilter{Account: "lab-ops", Type: "expire"}); len(es) != 4 {
		t.Fatalf("lab-ops has %d expire entries, want 4", len(es))
	}
	// The grants and their periods.
	want := map[string][]string{
		"NSF-2025-12345": {"2025-01-01..2025-12-31 250000", "2026-01-01..2026-12-31 250000", "2027-01-01..2027-12-31 250000"},
		"R01-GM123456": {"2025-07-01..2026-06-30 375000", "2026-07-01..2027-06-30 375000", "2027-07-01..2028-06-30 375000",
			"2028-07-01..2029-06-30 375000", "2029-07-01..2030-06-30 375000"},
		"DE-SC0012345": {"2025-01-01..2025-06-30 125000.02", "2025-07-01..2025-12-31 125000.02",
			"2026-01-01..2026-06-30 125000.02", "2026-07-01..2026-12-31 125000"}, // edited by grant budget
	}
	for number, ps := range want {
		got, err := c.l.GrantPeriods(ctx, number)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, p := range got {
			lines = append(lines, p.StartDate+".."+p.EndDate+" "+p.Budget.String())
		}
		if strings.Join(lines, "|") != strings.Join(ps, "|") {
			t.Fatalf("%s periods:\n%v\nwant\n%v", number, lines, ps)
		}
	}
	g, err := c.l.GetGrant(ctx, "R01-GM123456")
	if err != nil || len(g.CoPIs) != 2 || g.CarryForward || !g.IndirectRate.Equal(decOf("0.55")) || g.FederalID != "93.859" {
		t.Fatalf("NIH grant: %+v %v", g, err)
	}
	if g, _ := c.l.GetGrant(ctx, "NSF-2025-12345"); len(g.Accounts) != 1 || g.Accounts[0] != "ml-proj-001" {
		t.Fatalf("NSF accounts: %v", g.Accounts)
	}
	code, out, _ := c.run("grant", "list", "--active", "--json")
	if code != 0 || strings.Count(out, `"grant_number"`) != 3 {
		t.Fatalf("grant list --active: %d %s", code, out)
	}
	rep, err := c.l.Verify(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// Bad input: a clear error, the right exit code, and nothing written.
func TestGrantAndScheduleCommandsRefuseBadInput(t *testing.T) {
	c := newGrantsCLI(t)
	ctx := context.Background()
	if code, _, errOut := c.run("grant", "create", "--number=G-1", "--agency=NSF", "--pi=P", "--amount=1000",
		"--start=2025-01-01", "--end=2025-12-31"); code != 0 {
		t.Fatalf("good grant: %d %s", code, errOut)
	}
	grant := func(extra ...string) []string {
		return append([]string{"grant", "create", "--number=G-2", "--agency=NSF", "--pi=P", "--amount=1000",
			"--start=2025-01-01", "--end=2025-12-31"}, extra...)
	}
	account := func(extra ...string) []string {
		return append([]string{"account", "create", "--account=acct-x", "--incremental", "--total-budget=600",
			"--allocation-amount=100", "--allocation-frequency=monthly", "--start=2025-01-01", "--end=2025-06-30"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"end before start", grant("--end=2024-12-31"), 2, "before start date"},
		{"zero amount", grant("--amount=0"), 2, "greater than zero"},
		{"negative amount", grant("--amount=-5"), 2, "greater than zero"},
		{"sub-cent award", grant("--amount=1000.005"), 2, "whole number of cents"},
		{"periods of 0", grant("--periods=0"), 2, "1-120 months"},
		{"indirect above 1.5", grant("--indirect=1.6"), 2, "outside [0, 1.5]"},
		{"indirect negative", grant("--indirect=-0.1"), 2, "must not be negative"},
		{"indirect as a percentage", grant("--indirect=30%"), 2, "0.30"},
		{"bad date", grant("--start=2025-13-01"), 2, "not a date"},
		{"duplicate number", grant("--number=G-1"), 1, "G-1 already exists"},
		{"unknown frequency", account("--allocation-frequency=fortnightly"), 2, "must be one of daily"},
		{"schedule end before start", account("--end=2024-12-01"), 2, "end date must be after start date"},
		{"zero installment", account("--allocation-amount=0"), 2, "greater than zero"},
		{"negative total", account("--total-budget=-600"), 2, "greater than zero"},
		{"installment not whole cents", account("--allocation-amount=33.333"), 2, "whole number of cents"},
		{"schedule short of its total", account("--allocation-amount=50"), 2, "short of the total"},
		{"incremental without frequency", []string{"account", "create", "--account=acct-x", "--incremental",
			"--total-budget=600", "--allocation-amount=100"}, 2, "--allocation-frequency"},
		{"schedule flags without --incremental", []string{"account", "create", "--account=acct-x",
			"--total-budget=600"}, 2, "need --incremental"},
		{"link to a missing grant", []string{"grant", "link", "nope", "acct-x"}, 4, "grant nope"},
		{"pause a missing schedule", []string{"allocations", "pause", "77"}, 4, "schedule 77"},
		{"pause without an id", []string{"allocations", "pause"}, 2, "schedule id"},
	}
	for _, tc := range cases {
		code, out, errOut := c.run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%s: exit %d (want %d)\nstdout: %s\nstderr: %s(want it to mention %q)", tc.name, code, tc.code, out, errOut, tc.msg)
		}
	}
	gs, _ := c.l.ListGrants(ctx, budget.GrantFilter{})
	if len(gs) != 1 {
		t.Fatalf("bad input left %d grants", len(gs))
	}
	if _, err := c.l.GetAccount(ctx, "", "acct-x"); err == nil {
		t.Fatal("a refused account create left the account behind")
	}
	ss, _ := c.l.ListSchedules(ctx, "")
	if len(ss) != 0 {
		t.Fatalf("bad input left %d schedules", len(ss))
	}
}
