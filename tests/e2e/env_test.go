// Package e2e runs ASBB inside a real Slurm 22.05: a private single-node
// cluster (cluster.sh) whose slurmctld loads libasbb.so through the
// job_submit/asbb C plugin or job_submit.lua, settles through jobcomp.lua
// and spools through EpilogSlurmctld=asbb-epilog, against a private
// PostgreSQL (pgtest.NewInstance) that the tests stop and start.
//
// Nothing here is skipped: a missing package, a failed build or a cluster
// that does not come up fails the test, in CI and locally. ASBB_E2E=0 (set
// explicitly) skips the package with a loud message, for quick local unit
// runs only.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/pgtest"
)

// Prices of the test rate card: $36/CPU-hour is exactly one cent per
// CPU-second, so every charge is a whole number of cents.
const (
	cpuHour        = "36"
	gpuHour        = "72"
	holdMultiplier = "1.2"
	// submitTimeout is submit.timeout: the deadline of the admission path.
	submitTimeout = 500 * time.Millisecond
)

var centPerCPUSecond = decimal.RequireFromString("0.01")

// nobody is the unprivileged user jobs are submitted and modified as:
// slurmctld treats root's job_modify differently (admins may set
// admin_comment, raise limits, ...).
const nobodyUID = 65534

// repoRoot is the module root (tests run in tests/e2e).
func repoRoot(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("getwd: %v", err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		tb.Fatalf("module root not found from %s: %v", wd, err)
	}
	return root
}

// requireE2E skips only when ASBB_E2E=0 was set on purpose, and says so
// loudly; everything else that is missing is a failure.
func requireE2E(tb testing.TB) {
	tb.Helper()
	if os.Getenv("ASBB_E2E") == "0" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("ASBB_E2E=0 under CI=true: CI must run the Slurm end-to-end suite")
		}
		msg := "ASBB_E2E=0: THE SLURM END-TO-END SUITE DID NOT RUN (unset ASBB_E2E to run it; CI always does)"
		fmt.Fprintln(os.Stderr, "e2e: "+msg)
		tb.Skip(msg)
	}
	if runtime.GOOS != "linux" {
		tb.Fatalf("the Slurm end-to-end suite needs Linux (Debian 12), not %s", runtime.GOOS)
	}
	if os.Getuid() != 0 {
		tb.Fatalf("the Slurm end-to-end suite runs slurmctld, slurmd and munged and submits as 'nobody': run it as root (CI does), or set ASBB_E2E=0 to skip it loudly")
	}
}

// artifacts is what is built once per test binary.
type artifacts struct {
	dir     string // holds libasbb.so, job_submit_asbb.so, asbb.so, the binaries
	admin   string // asbb-admin
	epilog  string // asbb-epilog
	plugins string // PluginDir entry of job_submit_asbb.so (== dir)
	lua     string // directory of asbb.so (for LUA_CPATH)
	hooks   string // slurmhooks/lua (job_submit.lua, jobcomp.lua)
	root    string // module root
}

var (
	buildOnce sync.Once
	built     *artifacts
	buildErr  error
	buildDir  string
)

// liveClusters are the clusters started and not yet stopped, by directory:
// TestMain stops any that a test left behind (a benchmark goroutine that
// the framework abandoned, a panic), so that no daemon outlives the binary.
var liveClusters sync.Map

func TestMain(m *testing.M) {
	code := m.Run()
	liveClusters.Range(func(k, v any) bool {
		c := v.(*cluster)
		if out, err := c.run(3*time.Minute, "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stop the cluster in %s: %v\n%s", k, err, out)
		}
		return true
	})
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build provisions the machine (tests/e2e/provision.sh, idempotent) and
// builds libasbb.so, the C plugin, the Lua module, asbb-admin and
// asbb-epilog into one temporary directory, once per test binary.
func build(tb testing.TB) *artifacts {
	tb.Helper()
	requireE2E(tb)
	root := repoRoot(tb)
	buildOnce.Do(func() {
		built, buildErr = doBuild(root)
	})
	if buildErr != nil {
		tb.Fatalf("e2e build: %v", buildErr)
	}
	return built
}

func doBuild(root string) (*artifacts, error) {
	start := time.Now()
	if out, err := runCmd(root, nil, 15*time.Minute, "tests/e2e/provision.sh"); err != nil {
		return nil, fmt.Errorf("tests/e2e/provision.sh: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "asbb-e2e-build-")
	if err != nil {
		return nil, err
	}
	buildDir = dir
	// slurmctld (root) and asbb-epilog read these; make them reachable.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	a := &artifacts{dir: dir, admin: filepath.Join(dir, "asbb-admin"), epilog: filepath.Join(dir, "asbb-epilog"),
		plugins: dir, lua: dir, hooks: filepath.Join(root, "slurmhooks", "lua"), root: root}
	for _, p := range []string{"cgo", "cmd/asbb-admin", "cmd/asbb-epilog"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			return nil, fmt.Errorf("%s is missing: the end-to-end suite needs it", p)
		}
	}
	steps := [][]string{
		{"go", "build", "-buildmode=c-shared", "-ldflags", "-extldflags -Wl,-soname,libasbb.so",
			"-o", filepath.Join(dir, "libasbb.so"), "./cgo"},
		{"go", "build", "-o", a.admin, "./cmd/asbb-admin"},
		{"go", "build", "-o", a.epilog, "./cmd/asbb-epilog"},
		{"make", "--no-print-directory", "-C", "slurmhooks", "LIBDIR=" + dir, "HOOKS_OUT=" + dir, "hooks"},
	}
	// CGO_ENABLED: the c-shared build needs cgo even if the caller's
	// environment turned it off.
	env := []string{"CGO_ENABLED=1"}
	for _, s := range steps {
		if out, err := runCmd(root, env, 15*time.Minute, s...); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	for _, f := range []string{"libasbb.so", "job_submit_asbb.so", "asbb.so", "asbb-admin", "asbb-epilog"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("build produced no %s: %v", f, err)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: built libasbb.so, the hooks, asbb-admin and asbb-epilog in %s (%.1fs)\n", dir, time.Since(start).Seconds())
	return a, nil
}

// runCmd runs a command with a deadline and returns its combined output.
func runCmd(dir string, env []string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return string(out), err
}

// Path is a way slurmctld calls libasbb.so at submit time.
type Path struct {
	Name    string // subtest name
	Short   string // prefix of the test's account names
	Plugins string // JobSubmitPlugins
	// Marker is a line slurmctld logs when this path loads, which proves
	// that the submissions after it went through it.
	Marker string
}

var (
	cPlugin = Path{Name: "job_submit_asbb C plugin", Short: "c", Plugins: "asbb",
		Marker: "job_submit/asbb: loaded"}
	luaPath = Path{Name: "job_submit.lua", Short: "lua", Plugins: "lua",
		Marker: "asbb: job_submit.lua initialized"}
)

// env is one suite's world: a PostgreSQL, a config, a ledger on it and a
// cluster whose slurmctld uses the config.
type env struct {
	a       *artifacts
	root    string // private temporary directory (0755: nobody reads slurm.conf)
	cfgPath string
	cfg     *budget.Config
	pg      *pgtest.Instance
	ledger  *budget.Ledger
	cluster *cluster
	spool   string
	asbbLog string
}

type envOptions struct {
	// slurmConf are extra slurm.conf lines (after the path's).
	slurmConf []string
	// minJobAge keeps finished jobs visible to squeue (seconds).
	minJobAge int
	// bindInterval is slurm.bind_interval ("" = 1s, "0s" = no binder).
	bindInterval string
}

// newEnv builds everything and starts the cluster with path's hook.
func newEnv(tb testing.TB, path Path, opts envOptions) *env {
	tb.Helper()
	a := build(tb)
	root, err := os.MkdirTemp("", "asbb-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		tb.Fatal(err)
	}
	e := &env{a: a, root: root, spool: filepath.Join(root, "spool"), asbbLog: filepath.Join(root, "log", "asbb.log")}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("e2e: kept %s (slurm logs in c/log, the library's in log/asbb.log)", root)
			return
		}
		os.RemoveAll(root)
	})
	e.pg = pgtest.NewInstance(tb, "")
	if err := os.MkdirAll(filepath.Join(root, "log"), 0o755); err != nil {
		tb.Fatal(err)
	}
	e.cfgPath = filepath.Join(root, "asbb.toml")
	clusterDir := filepath.Join(root, "c")
	bind := opts.bindInterval
	if bind == "" {
		bind = "1s"
	}
	if err := os.WriteFile(e.cfgPath, []byte(e.configText(clusterDir, bind)), 0o644); err != nil {
		tb.Fatal(err)
	}
	e.cfg, err = budget.LoadConfig(e.cfgPath)
	if err != nil {
		tb.Fatalf("load the test config: %v", err)
	}
	// The schema: pgtest migrated it; asbb-admin must agree it is current.
	e.admin(tb, "database", "migrate")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.ledger, err = budget.Open(ctx, e.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("open the ledger: %v", err)
	}
	tb.Cleanup(e.ledger.Close)

	// EpilogSlurmctld runs with Slurm's environment only: a wrapper gives
	// asbb-epilog its config.
	wrapper := filepath.Join(root, "epilog.sh")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --config %s\n", a.epilog, e.cfgPath)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
	e.cluster = newCluster(tb, e, clusterDir, wrapper, opts)
	e.cluster.start(tb, path)
	return e
}

func (e *env) configText(clusterDir, bindInterval string) string {
	return fmt.Sprintf(`# Written by the end-to-end tests.
[database]
url = %q
max_conns = 8
connect_timeout = "1s"

[log]
file = %q
level = "debug"

[submit]
timeout = %q
enforce = true
on_db_error = "reject"
hold_multiplier = %q
default_partition = "cpu-aws"

# gpu-aws accepts jobs while the database is down; cpu-aws refuses them.
[submit.partitions.gpu-aws]
on_db_error = "accept"

[pricing]
currency = "USD"
charge_scale = 2

[pricing.partitions.cpu-aws]
cpu_hour = %q
max_time = "1-00:00:00"

[pricing.partitions.gpu-aws]
cpu_hour = %q
gpu_hour = %q
max_time = "1-00:00:00"

[slurm]
bin_dir = "/usr/bin"
conf = %q
timeout = "5s"
bind_interval = %q
bind_window = "10m"
settle_timeout = "1s"

[epilog]
spool_dir = %q
timeout = "3s"
`, e.pg.URL(), e.asbbLog, submitTimeout.String(), holdMultiplier, cpuHour, cpuHour, gpuHour,
		filepath.Join(clusterDir, "etc", "slurm.conf"), bindInterval, e.spool)
}

// restartPG starts the suite's PostgreSQL again. The test's own pool drops
// its connections, which died with the server (slurmctld's pool is left
// alone: how it copes is under test).
func (e *env) restartPG(tb testing.TB) {
	tb.Helper()
	e.pg.Start()
	e.ledger.Pool().Reset()
}

// freezePG stops every process of the suite's PostgreSQL with SIGSTOP: a
// hung server, whose connections stay open and never answer, unlike a
// stopped one (refused at once). thaw resumes it; it also runs at cleanup.
func (e *env) freezePG(tb testing.TB) (thaw func()) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(e.pg.Dir(), "data", "postmaster.pid"))
	if err != nil {
		tb.Fatalf("postmaster.pid: %v", err)
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		tb.Fatalf("postmaster.pid: %v", err)
	}
	// The postmaster first, so that it forks no new backend meanwhile.
	pids := []int{pm}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		tb.Fatalf("SIGSTOP postmaster %d: %v", pm, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range procs {
		st, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(st[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pm) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			pids = append(pids, pid)
		}
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGCONT) //nolint:errcheck // a backend may have exited
			}
		})
	}
	tb.Cleanup(thaw)
	return thaw
}

// admin runs asbb-admin with the suite's config and fails the test on error.
func (e *env) admin(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := e.adminErr(args...)
	if err != nil {
		tb.Fatalf("asbb-admin %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) adminErr(args ...string) (string, error) {
	full := append([]string{e.a.admin}, args...)
	full = append(full, "--config", e.cfgPath)
	return runCmd(e.root, nil, 2*time.Minute, full...)
}

// account creates a Slurm account's budget through asbb-admin.
func (e *env) account(tb testing.TB, name, amount string) {
	tb.Helper()
	e.admin(tb, "account", "create", "--account", name, "--budget", amount)
}

// verify runs the ledger's self-check through asbb-admin and the package.
func (e *env) verify(tb testing.TB) {
	tb.Helper()
	e.admin(tb, "verify")
	ctx, cancel := dbCtx(30 * time.Second)
	rep, err := e.ledger.Verify(ctx)
	cancel()
	if err != nil {
		tb.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		tb.Fatalf("verify found problems: %+v", rep.Problems)
	}
}

// dbCtx bounds one ledger query made by the test itself.
func dbCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// getAccount reads an account's totals.
func (e *env) getAccount(tb testing.TB, name string) budget.Account {
	tb.Helper()
	ctx, cancel := dbCtx(10 * time.Second)
	a, err := e.ledger.GetAccount(ctx, "", name)
	cancel()
	if err != nil {
		tb.Fatalf("account %s: %v", name, err)
	}
	return a
}

// entries lists an account's ledger rows of one type ("" = all), oldest first.
func (e *env) entries(tb testing.TB, account, typ string) []budget.Entry {
	tb.Helper()
	ctx, cancel := dbCtx(10 * time.Second)
	es, err := e.ledger.ListEntries(ctx, budget.EntryFilter{Account: account, Type: typ, Asc: true, Limit: 10000})
	cancel()
	if err != nil {
		tb.Fatalf("entries of %s: %v", account, err)
	}
	return es
}

func (e *env) hold(tb testing.TB, id int64) budget.Hold {
	tb.Helper()
	ctx, cancel := dbCtx(10 * time.Second)
	h, err := e.ledger.GetHold(ctx, id)
	cancel()
	if err != nil {
		tb.Fatalf("hold %d: %v", id, err)
	}
	return h
}

// --- the cluster -----------------------------------------------------------

type cluster struct {
	e       *env
	dir     string
	script  string
	conf    string
	env     []string // for cluster.sh and the Slurm clients
	base    []string // slurm.conf lines common to every path
	path    Path
	logFrom int64 // slurmctld.log offset when the current path was set
}

func freePort(tb testing.TB) int {
	tb.Helper()
	for i := 0; i < 200; i++ {
		p := 20000 + rand.IntN(20000)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	tb.Fatal("no free TCP port for slurmctld/slurmd")
	return 0
}

func newCluster(tb testing.TB, e *env, dir, epilog string, opts envOptions) *cluster {
	ctld := freePort(tb)
	slurmd := freePort(tb)
	for slurmd == ctld {
		slurmd = freePort(tb)
	}
	minAge := opts.minJobAge
	if minAge == 0 {
		minAge = 600
	}
	c := &cluster{e: e, dir: dir, script: filepath.Join(e.a.root, "tests", "e2e", "cluster.sh"),
		conf: filepath.Join(dir, "etc", "slurm.conf")}
	c.env = []string{
		"SLURM_CONF=" + c.conf,
		"ASBB_CONFIG=" + e.cfgPath,
		"LUA_CPATH=" + e.a.lua + "/?.so;;",
		"ASBB_SLURMCTLD_PORT=" + strconv.Itoa(ctld),
		"ASBB_SLURMD_PORT=" + strconv.Itoa(slurmd),
		"ASBB_SLURM_MIN_JOB_AGE=" + strconv.Itoa(minAge),
		"ASBB_SLURM_STOP_TIMEOUT=15",
		"ASBB_SLURM_ETC_FILES=" + filepath.Join(e.a.hooks, "job_submit.lua") + " " + filepath.Join(e.a.hooks, "jobcomp.lua"),
		// provision.sh ran in build().
		"ASBB_SLURM_NO_PROVISION=1",
	}
	c.base = append([]string{
		"PluginDir=/usr/lib/x86_64-linux-gnu/slurm-wlm:" + e.a.plugins,
		"JobCompType=jobcomp/lua",
		"EpilogSlurmctld=" + epilog,
	}, opts.slurmConf...)
	tb.Cleanup(func() {
		if tb.Failed() {
			c.dumpLogs(tb)
		}
		if out, err := c.run(3*time.Minute, "stop"); err != nil {
			tb.Errorf("cluster.sh stop: %v\n%s", err, out)
			return
		}
		liveClusters.Delete(c.dir)
	})
	return c
}

// extraLines are the slurm.conf lines for a path ("" plugins = none).
func (c *cluster) extraLines(p Path) string {
	lines := append([]string{}, c.base...)
	if p.Plugins != "" {
		lines = append(lines, "JobSubmitPlugins="+p.Plugins)
	} else {
		lines = append(lines, "# JobSubmitPlugins: none")
	}
	return strings.Join(lines, "\n")
}

func (c *cluster) run(timeout time.Duration, action string, extra ...string) (string, error) {
	env := append(append([]string{}, c.env...), extra...)
	return runCmd(c.e.root, env, timeout, c.script, action, c.dir)
}

// start brings the cluster up with p's job_submit hook.
func (c *cluster) start(tb testing.TB, p Path) {
	tb.Helper()
	c.logFrom = c.logSize()
	liveClusters.Store(c.dir, c)
	out, err := c.run(4*time.Minute, "start", "ASBB_SLURM_EXTRA_LINES="+c.extraLines(p))
	if err != nil {
		tb.Fatalf("cluster.sh start: %v\n%s", err, out)
	}
	c.path = p
}

// use switches the job_submit hook with `scontrol reconfigure` (which
// JobSubmitPlugins needs; JobCompType stays the same).
func (c *cluster) use(tb testing.TB, p Path) {
	tb.Helper()
	c.logFrom = c.logSize()
	out, err := c.run(2*time.Minute, "reconfigure", "ASBB_SLURM_EXTRA_LINES="+c.extraLines(p))
	if err != nil {
		tb.Fatalf("cluster.sh reconfigure: %v\n%s", err, out)
	}
	c.path = p
	// The reconfigure is asynchronous to the RPCs that follow; wait until
	// slurmctld answers again.
	eventually(tb, 30*time.Second, "slurmctld answers after reconfigure", func() (bool, string) {
		out, err := c.slurm(10*time.Second, "sinfo", "-h", "-o", "%T")
		return err == nil, out
	})
}

// requireMarker checks that slurmctld loaded the current path since it was
// set: proof that the submissions went through it.
func (c *cluster) requireMarker(tb testing.TB) {
	tb.Helper()
	if c.path.Marker == "" {
		return
	}
	eventually(tb, 10*time.Second, "slurmctld logs "+c.path.Marker, func() (bool, string) {
		return strings.Contains(c.logSince(c.logFrom), c.path.Marker), ""
	})
}

func (c *cluster) ctldLog() string { return filepath.Join(c.dir, "log", "slurmctld.log") }

func (c *cluster) logSize() int64 {
	st, err := os.Stat(c.ctldLog())
	if err != nil {
		return 0
	}
	return st.Size()
}

func (c *cluster) logSince(off int64) string {
	f, err := os.Open(c.ctldLog())
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// ctldPID is slurmctld's pid from its pid file.
func (c *cluster) ctldPID(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "run", "slurmctld.pid"))
	if err != nil {
		tb.Fatalf("slurmctld pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("slurmctld pid file: %v", err)
	}
	return pid
}

// requireAlive fails unless slurmctld is the same live process and serves
// sinfo and squeue.
func (c *cluster) requireAlive(tb testing.TB, pid int) {
	tb.Helper()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "slurmctld" {
		tb.Fatalf("slurmctld (pid %d) is gone (comm %q, %v)", pid, comm, err)
	}
	for _, args := range [][]string{{"sinfo", "-h"}, {"squeue", "-h"}} {
		if out, err := c.slurm(30*time.Second, args...); err != nil {
			tb.Fatalf("%s after the scenario: %v\n%s", args[0], err, out)
		}
	}
}

func (c *cluster) dumpLogs(tb testing.TB) {
	tail := func(path string, n int) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return err.Error()
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		return strings.Join(lines, "\n")
	}
	tb.Logf("--- slurmctld.log (tail) ---\n%s", tail(c.ctldLog(), 60))
	tb.Logf("--- asbb.log (tail) ---\n%s", tail(c.e.asbbLog, 40))
}

// slurm runs a Slurm client as root.
func (c *cluster) slurm(timeout time.Duration, args ...string) (string, error) {
	return c.exec(timeout, false, args...)
}

// result is a client command's outcome.
type result struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

// exec runs a Slurm client, as nobody when asNobody; stdout only.
func (c *cluster) exec(timeout time.Duration, asNobody bool, args ...string) (string, error) {
	r := c.execFull(timeout, asNobody, args...)
	if r.err != nil {
		return r.stdout + r.stderr, r.err
	}
	return r.stdout, nil
}

func (c *cluster) execFull(timeout time.Duration, asNobody bool, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if asNobody {
		args = append([]string{"setpriv", "--reuid=" + strconv.Itoa(nobodyUID), "--regid=" + strconv.Itoa(nobodyUID),
			"--clear-groups", "--"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = "/tmp" // nobody's jobs need a working directory they can enter
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF=" + c.conf, "LANG=C"}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	t0 := time.Now()
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String(), err: err, took: time.Since(t0)}
	if ctx.Err() != nil {
		r.err = fmt.Errorf("%s timed out after %s", args[0], timeout)
	}
	return r
}

// sbatch submits as nobody; it returns the job id, or fails the test.
func (c *cluster) sbatch(tb testing.TB, args ...string) uint32 {
	tb.Helper()
	r := c.sbatchFull(args...)
	if r.err != nil {
		tb.Fatalf("sbatch %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return parseJobID(tb, r.stdout)
}

func (c *cluster) sbatchFull(args ...string) result {
	full := append([]string{"sbatch", "--parsable", "-o", "/dev/null", "-e", "/dev/null"}, args...)
	return c.execFull(60*time.Second, true, full...)
}

func parseJobID(tb testing.TB, out string) uint32 {
	tb.Helper()
	s := strings.TrimSpace(out)
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		tb.Fatalf("sbatch printed %q, not a job id", out)
	}
	return uint32(id)
}

// slurmJob is a job record from squeue --json (22.05: times in unix
// seconds, time_limit in minutes).
type slurmJob struct {
	JobID        uint32 `json:"job_id"`
	ArrayJobID   uint32 `json:"array_job_id"`
	ArrayTaskID  *int64 `json:"array_task_id"`
	State        string `json:"job_state"`
	StartTime    int64  `json:"start_time"`
	EndTime      int64  `json:"end_time"`
	TimeLimit    uint32 `json:"time_limit"`
	CPUs         uint32 `json:"cpus"`
	Nodes        uint32 `json:"node_count"`
	AdminComment string `json:"admin_comment"`
	Account      string `json:"account"`
	Partition    string `json:"partition"`
	User         string `json:"user_name"`
}

// jobs returns the records of job id (every task of an array), in any state.
func (c *cluster) jobs(tb testing.TB, id uint32) []slurmJob {
	tb.Helper()
	out, err := c.slurm(30*time.Second, "squeue", "--json", "--states=all", "--jobs="+strconv.FormatUint(uint64(id), 10))
	if err != nil {
		tb.Fatalf("squeue --json -j %d: %v\n%s", id, err, out)
	}
	var doc struct {
		Jobs []slurmJob `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		tb.Fatalf("squeue --json: %v", err)
	}
	// squeue --json of 22.05 ignores --jobs (and most filters): it prints
	// every job.
	var js []slurmJob
	for _, j := range doc.Jobs {
		if j.JobID == id || j.ArrayJobID == id {
			js = append(js, j)
		}
	}
	return js
}

func (c *cluster) job(tb testing.TB, id uint32) slurmJob {
	tb.Helper()
	js := c.jobs(tb, id)
	for _, j := range js {
		if j.JobID == id {
			return j
		}
	}
	tb.Fatalf("job %d not in squeue (%d records)", id, len(js))
	return slurmJob{}
}

// holdOfJob reads the hold id from the job's admin_comment (asbb:<id>).
func holdOfJob(tb testing.TB, j slurmJob) int64 {
	tb.Helper()
	id, ok := budget.HoldIDFromComment(j.AdminComment)
	if !ok {
		tb.Fatalf("job %d has no asbb:<hold id> in its admin_comment %q", j.JobID, j.AdminComment)
	}
	return id
}

// eventually polls cond until it holds or the timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		if time.Now().After(deadline) {
			tb.Fatalf("after %s, still waiting for: %s (last: %s)", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitHoldClosed waits until a hold is no longer active.
func (e *env) waitHoldClosed(tb testing.TB, id int64, timeout time.Duration) budget.Hold {
	tb.Helper()
	var h budget.Hold
	eventually(tb, timeout, fmt.Sprintf("hold %d closed", id), func() (bool, string) {
		var err error
		ctx, cancel := dbCtx(10 * time.Second)
		h, err = e.ledger.GetHold(ctx, id)
		cancel()
		if err != nil {
			return false, err.Error()
		}
		return h.Status != "active", fmt.Sprintf("status %s, remaining %s, settled tasks %d/%d", h.Status, h.Remaining, h.SettledTasks, h.Tasks)
	})
	return h
}

// waitJobsDone waits until none of the jobs is pending, running or
// completing.
func (c *cluster) waitJobsDone(tb testing.TB, id uint32, timeout time.Duration) []slurmJob {
	tb.Helper()
	var js []slurmJob
	eventually(tb, timeout, fmt.Sprintf("job %d finished", id), func() (bool, string) {
		js = c.jobs(tb, id)
		for _, j := range js {
			switch j.State {
			case "PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED":
				return false, fmt.Sprintf("job %d is %s", j.JobID, j.State)
			}
		}
		return len(js) > 0, fmt.Sprintf("%d records", len(js))
	})
	return js
}

// charge is what ASBB must charge for a finished job record: one cent per
// CPU-second of the run as slurmctld recorded it.
func charge(j slurmJob) decimal.Decimal {
	if j.StartTime <= 0 || j.EndTime <= j.StartTime || j.Nodes == 0 {
		return decimal.Zero
	}
	return centPerCPUSecond.Mul(decimal.NewFromInt(int64(j.CPUs) * (j.EndTime - j.StartTime)))
}

// holdFor is the hold of a job of cpus CPUs and minutes time limit.
func holdFor(cpus, minutes int64) decimal.Decimal {
	return centPerCPUSecond.Mul(decimal.NewFromInt(cpus * minutes * 60)).Mul(decimal.RequireFromString(holdMultiplier))
}

func requireMoney(tb testing.TB, what string, got, want decimal.Decimal) {
	tb.Helper()
	if !got.Equal(want) {
		tb.Fatalf("%s = %s, want %s", what, got, want)
	}
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
