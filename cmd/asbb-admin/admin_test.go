package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget/pgtest"
)

// cli runs asbb-admin command lines in-process against a test database.
type cli struct {
	t *testing.T
}

func newCLI(t *testing.T) cli {
	t.Setenv("ASBB_CONFIG", "")
	t.Setenv("ASBB_DATABASE_URL", pgtest.URL(t))
	return cli{t}
}

func (c cli) run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runIO(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func (c cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != 0 {
		c.t.Fatalf("asbb-admin %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestAccountLifecycleThroughTheCLI(t *testing.T) {
	c := newCLI(t)
	out := c.ok("account", "create", "--account=ml-proj-001", "--name=ML Research", "--budget=5000", "--end=2099-12-31")
	if !strings.Contains(out, "deposited $5,000.00") {
		t.Fatalf("create: %s", out)
	}
	c.ok("account", "create", "--account=astro", "--budget=150.25", "--max-job-cost=40")
	c.ok("account", "limit", "astro", "--partition=gpu-aws", "--max-job-cost=40", "--max-per-month=100")
	c.ok("allocations", "add", "--account=astro", "--amount=49.75", "--idempotency-key=k1")
	c.ok("allocations", "add", "--account=astro", "--amount=49.75", "--idempotency-key=k1")

	var accts []struct {
		SlurmAccount string `json:"slurm_account"`
		Available    string `json:"available"`
	}
	if err := json.Unmarshal([]byte(c.ok("account", "list", "--json")), &accts); err != nil {
		t.Fatal(err)
	}
	if len(accts) != 2 || accts[0].SlurmAccount != "astro" || accts[0].Available != "200" {
		t.Fatalf("account list: %+v", accts)
	}
	show := c.ok("account", "show", "astro")
	for _, want := range []string{"Available:    $200.00", "gpu-aws", "$100.00", "Max per job:  $40.00"} {
		if !strings.Contains(show, want) {
			t.Errorf("account show lacks %q:\n%s", want, show)
		}
	}
	if out := c.ok("transactions", "list", "--account=astro", "--type=deposit"); strings.Count(out, "deposit") != 2 {
		t.Errorf("transactions list:\n%s", out)
	}
	c.ok("account", "update", "astro", "--name=Astro Survey", "--credit-limit=10")
	c.ok("account", "close", "ml-proj-001")
	if out := c.ok("verify"); !strings.Contains(out, "ledger OK") {
		t.Fatalf("verify: %s", out)
	}
}

func TestCLIExitCodesAndErrors(t *testing.T) {
	c := newCLI(t)
	c.ok("account", "create", "--account=acct", "--budget=10")
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"account", "create", "--budget=10"}, 2, "--account is required"},
		{[]string{"account", "create", "--account=x", "--budget=-5"}, 2, "must be greater than zero"},
		{[]string{"account", "create", "--account=x", "--budget=1e9"}, 2, "not a plain decimal"},
		{[]string{"account", "create", "--account=x", "--budget=NaN"}, 2, "not a plain decimal"},
		{[]string{"account", "create", "--account=x", "--budget=0.0000001"}, 2, "decimal places"},
		{[]string{"account", "create", "--account=x'; DROP TABLE ledger;--"}, 2, "must be 1-64 letters"},
		{[]string{"account", "create", "--account=x", "--end=2025-13-45"}, 2, "not a date"},
		{[]string{"account", "create", "--account=acct"}, 1, "already exists"},
		{[]string{"account", "show", "nope"}, 4, "account not found"},
		{[]string{"allocations", "add", "--account=nope", "--amount=5"}, 4, "account not found"},
		{[]string{"account", "withdraw", "acct", "--amount=11", "--reason=test"}, 3, "has $10.00 available"},
		{[]string{"account", "frobnicate"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		code, out, errOut := c.run(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.msg) {
			t.Errorf("asbb-admin %s: exit %d, output %q; want exit %d and %q", strings.Join(tc.args, " "), code, out+errOut, tc.code, tc.msg)
		}
	}
	if out := c.ok("verify", "--json"); !strings.Contains(out, `"problems": []`) {
		t.Fatalf("verify --json: %s", out)
	}
	if code, _, _ := c.run("account", "show", "acct", "--json"); code != 0 {
		t.Fatal("show --json failed")
	}
}

func TestConfigInitWritesTheDocumentedExample(t *testing.T) {
	c := cli{t}
	path := t.TempDir() + "/asbb.toml"
	c.ok("config", "init", "-o", path)
	if code, _, errOut := c.run("config", "init", "-o", path); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("config init over an existing file: %d %s", code, errOut)
	}
	t.Setenv("ASBB_DATABASE_URL", "")
	if out := c.ok("config", "check", "--config", path); !strings.Contains(out, "config OK") {
		t.Fatal(out)
	}
}
