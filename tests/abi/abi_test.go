// Package abi tests libasbb.so through its C ABI: it builds the library
// with -buildmode=c-shared (once), compiles cgo/smoke/smoke.c with gcc and
// runs it against a real database, under valgrind when it is installed.
package abi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
	"github.com/asbb/asbb/budget/spool"
	"github.com/shopspring/decimal"
)

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func run(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.Bytes())
	}
	return out.Bytes()
}

const configTemplate = `
[database]
url = %q
connect_timeout = "1s"
[log]
file = %q
level = "debug"
[submit]
timeout = "%s"
on_db_error = "reject"
[slurm]
bind_interval = "0s"
[epilog]
spool_dir = %q
[pricing.partitions.cpu]
node_hour = "5.00"
max_time = "1-00:00:00"
[pricing.partitions."ü-part"]
node_hour = "5.00"
`

func TestABISmoke(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc is needed to compile the C smoke test (apt-get install gcc)")
	}
	root := moduleRoot(t)
	dir := t.TempDir()
	ctx := context.Background()

	dbURL := pgtest.URL(t)
	good := filepath.Join(dir, "good.toml")
	down := filepath.Join(dir, "down.toml")
	downSpool := filepath.Join(dir, "down-spool")
	os.WriteFile(good, []byte(fmt.Sprintf(configTemplate, dbURL, filepath.Join(dir, "asbb.log"), "5s", filepath.Join(dir, "spool"))), 0o600)
	os.WriteFile(down, []byte(fmt.Sprintf(configTemplate, "postgres://asbb@127.0.0.1:1/asbb", filepath.Join(dir, "asbb-down.log"), "1s", downSpool)), 0o600)

	cfg, err := budget.LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	l, err := budget.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for name, amount := range map[string]int64{"rich": 10000, "poor": 1} {
		if _, err := l.CreateAccount(ctx, budget.AccountSpec{SlurmAccount: name, Budget: decimal.NewFromInt(amount), Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}

	lib := filepath.Join(dir, "libasbb.so")
	run(t, root, []string{"CGO_ENABLED=1"}, "go", "build", "-buildmode=c-shared",
		"-ldflags", "-extldflags -Wl,-soname,libasbb.so", "-o", lib, "./cgo")
	smoke := filepath.Join(dir, "smoke")
	run(t, root, nil, "gcc", "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Icgo",
		"-o", smoke, "cgo/smoke/smoke.c", "-ldl", "-lpthread")

	args := []string{lib, good, down}
	var out []byte
	if vg, err := exec.LookPath("valgrind"); err == nil {
		out = run(t, root, nil, vg, append([]string{"--error-exitcode=1", "--leak-check=full",
			"--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
			"--suppressions=" + filepath.Join(root, "cgo/smoke/valgrind.supp"), smoke}, args...)...)
	} else if os.Getenv("CI") == "true" {
		t.Fatal("valgrind is not installed (tests/e2e/provision.sh installs it)")
	} else {
		t.Log("valgrind not installed: running the smoke test without it")
		out = run(t, root, nil, smoke, args...)
	}
	if !bytes.Contains(out, []byte("smoke: ok")) {
		t.Fatalf("smoke did not finish:\n%s", out)
	}

	// What the C side did is in the database.
	var holds []int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "HOLD "); ok {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("bad HOLD line %q", sc.Text())
			}
			holds = append(holds, id)
		}
	}
	if want := 3 + 8*3; len(holds) != want {
		t.Fatalf("%d holds reported, want %d", len(holds), want)
	}
	for i, id := range holds {
		h, err := l.GetHold(ctx, id)
		want := "active"
		if i == 1 {
			want = "closed" // modified, then settled
		}
		if err != nil || h.Account != "rich" || h.Status != want {
			t.Errorf("hold %d: %s on %s (%v), want %s on rich", id, h.Status, h.Account, err, want)
		}
	}
	var charges int
	var actual decimal.Decimal
	if err := l.Pool().QueryRow(ctx, `SELECT count(*), coalesce(sum(actual), 0) FROM charges WHERE job_id = '4242'`).Scan(&charges, &actual); err != nil {
		t.Fatal(err)
	}
	if charges != 1 || !actual.Equal(decimal.RequireFromString("2.5")) {
		t.Errorf("job 4242: %d charges totalling %s, want one of 2.50", charges, actual)
	}
	h, _ := l.GetHold(ctx, holds[1])
	if h.Status != "closed" {
		t.Errorf("modified and settled hold %d is %s", holds[1], h.Status)
	}
	spooled, err := spool.New(downSpool, nil).List()
	if err != nil || len(spooled) != 1 || !strings.Contains(spooled[0].Name, "-5151-") {
		t.Errorf("down spool: %+v, %v", spooled, err)
	}
	rep, err := l.Verify(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}
