package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// A cluster is a private PostgreSQL server kept entirely inside one
// directory, so that it can be found again by any process that knows the
// directory, and removed with it:
//
//	DIR/lock          flock(2) target that serialises start and stop
//	DIR/data/         the data directory (initdb)
//	DIR/postgres.log  the server log
//	DIR/.s.PGSQL.5432 the unix socket: the server listens on no TCP port
//
// A socket in a directory of our own needs no free-port search, cannot
// collide with another cluster, and is faster than TCP on loopback.
type cluster struct {
	dir string // absolute
}

// superuser is the role initdb creates; fixed so URLs do not depend on who ran
// initdb.
const superuser = "postgres"

// port only names the socket file (.s.PGSQL.5432); nothing listens on TCP.
const port = 5432

// maxSocketPath is the portable limit on sun_path (108 bytes on Linux, less
// on some BSDs) minus the terminating NUL.
const maxSocketPath = 103

// startTimeout bounds pg_ctl's wait for the server to accept connections;
// crash recovery after an unclean stop is the slow case.
const startTimeout = 120 * time.Second

func newCluster(dir string) (cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return cluster{}, fmt.Errorf("resolve cluster directory %q: %w", dir, err)
	}
	c := cluster{dir: abs}
	if n := len(c.socketPath()); n > maxSocketPath {
		return cluster{}, fmt.Errorf("cluster directory %s is too long for a unix socket path (%d > %d bytes): choose a shorter directory", abs, n, maxSocketPath)
	}
	return c, nil
}

func (c cluster) dataDir() string    { return filepath.Join(c.dir, "data") }
func (c cluster) logFile() string    { return filepath.Join(c.dir, "postgres.log") }
func (c cluster) socketPath() string { return filepath.Join(c.dir, fmt.Sprintf(".s.PGSQL.%d", port)) }

// url is the connection URL of database db on the cluster. The port is
// spelled out so that a PGPORT in the environment cannot redirect libpq or pgx
// to another socket name.
func (c cluster) url(db string) string {
	// QueryEscape's "+" for a space is not understood by libpq (psql).
	host := strings.NewReplacer("%2F", "/", "+", "%20").Replace(url.QueryEscape(c.dir))
	return fmt.Sprintf("postgres:///%s?host=%s&port=%d&user=%s", url.PathEscape(db), host, port, superuser)
}

// start makes sure the cluster is initialised and running; it is idempotent
// and safe to call from many processes at once. wipe allows it to delete a
// data directory it cannot use (another PostgreSQL major version, a
// half-finished initdb): true for throw-away test clusters only.
func (c cluster) start(ctx context.Context, wipe bool) error {
	owner, err := serverUser()
	if err != nil {
		return err
	}
	if err := c.prepareDir(owner); err != nil {
		return err
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()

	if c.ping(ctx) == nil {
		return nil
	}
	if err := c.waitForLiveServer(ctx); err != nil {
		return err
	}
	if c.ping(ctx) == nil {
		return nil
	}
	bin, err := findBinDir()
	if err != nil {
		return err
	}
	if err := c.initIfNeeded(ctx, bin, owner, wipe); err != nil {
		return err
	}
	c.removeStaleLocks()
	out, err := c.run(ctx, bin, owner, "pg_ctl", "start", "--wait", "--silent",
		"--timeout", strconv.Itoa(int(startTimeout/time.Second)),
		"--pgdata", c.dataDir(), "--log", c.logFile())
	if err != nil {
		return fmt.Errorf("start PostgreSQL in %s: %w\n%s%s", c.dir, err, out, c.logTail())
	}
	if err := c.ping(ctx); err != nil {
		return fmt.Errorf("PostgreSQL in %s started but refuses connections: %w%s", c.dir, err, c.logTail())
	}
	return nil
}

// stop shuts the cluster down if it runs. immediate skips the shutdown
// checkpoint, which is how a crash looks to the next start.
func (c cluster) stop(ctx context.Context, immediate bool) error {
	if _, err := os.Stat(filepath.Join(c.dataDir(), "postmaster.pid")); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return c.stopLocked(ctx, immediate)
}

// stopLocked is stop for a caller that holds the cluster lock.
func (c cluster) stopLocked(ctx context.Context, immediate bool) error {
	owner, err := serverUser()
	if err != nil {
		return err
	}
	if pid := pidFromFile(filepath.Join(c.dataDir(), "postmaster.pid")); pid == 0 || !isPostgres(pid) {
		return nil // no server, or a stale pid file that the next start removes
	}
	bin, err := findBinDir()
	if err != nil {
		return err
	}
	mode := "fast" // roll back open transactions, then a clean checkpoint
	if immediate {
		mode = "immediate"
	}
	out, err := c.run(ctx, bin, owner, "pg_ctl", "stop", "--wait", "--silent",
		"--timeout", strconv.Itoa(int(startTimeout/time.Second)),
		"--pgdata", c.dataDir(), "--mode", mode)
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w\n%s", c.dir, err, out)
	}
	return nil
}

// running reports whether the cluster accepts connections.
func (c cluster) running(ctx context.Context) bool { return c.ping(ctx) == nil }

func (c cluster) ping(ctx context.Context) error {
	if _, err := os.Stat(c.socketPath()); err != nil {
		return fmt.Errorf("no socket: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}

// waitForLiveServer waits while a postmaster of this cluster exists but does
// not (yet or any more) accept connections: it may be in crash recovery, or
// another process may be stopping it. Starting a second postmaster then would
// only fail.
func (c cluster) waitForLiveServer(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	for {
		pid := pidFromFile(filepath.Join(c.dataDir(), "postmaster.pid"))
		if pid == 0 || !isPostgres(pid) || c.ping(ctx) == nil {
			return nil
		}
		if c.orphaned() {
			// Ready, yet unreachable: its socket file was deleted under
			// it (a cleaner of /tmp, a careless rm). Only a restart
			// makes it listen again.
			return c.stopLocked(ctx, false)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL (pid %d) in %s neither accepts connections nor exits%s", pid, c.dir, c.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for PostgreSQL in %s: %w", c.dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// orphaned reports whether the postmaster says it is ready but its socket
// file is gone.
func (c cluster) orphaned() bool {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return false
	}
	// Line 8 of postmaster.pid is the postmaster's status (PM_STATUS_*).
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[7]) != "ready" {
		return false
	}
	_, err = os.Stat(c.socketPath())
	return errors.Is(err, fs.ErrNotExist)
}

// prepareDir creates the cluster directory. When we are root the server runs
// as another user (PostgreSQL refuses root), and that user must own the
// directory to create its socket and log there.
func (c cluster) prepareDir(owner *osUser) error {
	// Parents are left searchable so that the server user can reach DIR.
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return fmt.Errorf("create parent of cluster directory: %w", err)
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cluster directory: %w", err)
	}
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("stat cluster directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return fmt.Errorf("cluster directory %s is not a directory", c.dir)
	}
	// A directory in a shared /tmp that belongs to someone else could be a
	// trap (their server, our trust-authenticated connections): refuse it.
	if int(st.Uid) != os.Geteuid() && (owner == nil || int(st.Uid) != owner.uid) {
		return fmt.Errorf("cluster directory %s belongs to uid %d, not to us: remove it or choose another", c.dir, st.Uid)
	}
	if owner != nil && int(st.Uid) != owner.uid {
		if err := os.Chown(c.dir, owner.uid, owner.gid); err != nil {
			return fmt.Errorf("give cluster directory to user %s: %w", owner.name, err)
		}
	}
	return nil
}

// lock takes an exclusive flock on DIR/lock. The descriptor is close-on-exec,
// so the server processes we start do not inherit (and keep) the lock.
func (c cluster) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cluster lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

var (
	pgVersionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)
	digitsRE    = regexp.MustCompile(`\d+`)
)

// initIfNeeded runs initdb unless DIR/data already holds a cluster of the
// installed major version.
func (c cluster) initIfNeeded(ctx context.Context, bin string, owner *osUser, wipe bool) error {
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return fmt.Errorf("run %s/postgres --version: %w", bin, err)
	}
	m := pgVersionRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("unrecognised postgres --version output %q", out)
	}
	want := string(m[1])
	have, err := os.ReadFile(filepath.Join(c.dataDir(), "PG_VERSION"))
	switch {
	case err == nil && strings.TrimSpace(string(have)) == want:
		return nil
	case err == nil && !wipe:
		return fmt.Errorf("%s holds a PostgreSQL %s cluster but the installed server is %s (%s): upgrade or remove it", c.dataDir(), strings.TrimSpace(string(have)), want, bin)
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(c.dataDir()); serr == nil && !wipe {
			return fmt.Errorf("%s exists but is no PostgreSQL data directory (no PG_VERSION): remove it", c.dataDir())
		}
	case err != nil:
		return fmt.Errorf("read cluster version: %w", err)
	}
	if err := os.RemoveAll(c.dataDir()); err != nil {
		return fmt.Errorf("remove unusable data directory: %w", err)
	}
	// C locale: byte-order collation is fast and the same on every machine,
	// so test results cannot depend on the host's locales.
	out, err = c.run(ctx, bin, owner, "initdb", "--pgdata", c.dataDir(),
		"--username", superuser, "--auth", "trust", "--encoding", "UTF8",
		"--locale", "C", "--no-instructions")
	if err != nil {
		hint := ""
		if owner != nil {
			hint = fmt.Sprintf("\n(as root the server runs as user %s, which must be able to reach %s: every parent directory needs o+x)", owner.name, c.dir)
		}
		return fmt.Errorf("initdb in %s: %w\n%s%s", c.dataDir(), err, out, hint)
	}
	// Appended rather than passed with -o so that a plain pg_ctl start (by
	// hand, when debugging a kept database) gets the same server.
	conf := fmt.Sprintf(`
# Added by asbb budget/pgtest: a private server on a unix socket only.
listen_addresses = ''
unix_socket_directories = '%s'
port = %d
max_connections = 300
shared_buffers = 128MB
# Durable commits, as in production: benchmarks must measure real fsyncs.
fsync = on
synchronous_commit = on
full_page_writes = on
`, strings.ReplaceAll(c.dir, "'", "''"), port)
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// removeStaleLocks deletes lock files left by a postmaster that no longer
// exists (killed, or the machine restarted while /tmp survived) whose pid now
// belongs to another process: PostgreSQL would refuse to start because of
// them, and it checks only that the pid is alive.
func (c cluster) removeStaleLocks() {
	for _, p := range []string{filepath.Join(c.dataDir(), "postmaster.pid"), c.socketPath() + ".lock"} {
		if pid := pidFromFile(p); pid != 0 && !isPostgres(pid) {
			os.Remove(p)
		}
	}
}

// run runs a PostgreSQL program as the server user, in its own session so
// that a ^C meant for `go test` does not reach the shared server.
func (c cluster) run(ctx context.Context, bin string, owner *osUser, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, prog), args...)
	cmd.Dir = c.dir // the server user may not be allowed into our working directory
	cmd.Env = serverEnv()
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if owner != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(owner.uid), Gid: uint32(owner.gid)}
	}
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	// pg_ctl leaves the server running with its output in the log file, so
	// nothing holds our pipes open after pg_ctl exits.
	err := cmd.Run()
	return buf.Bytes(), err
}

// serverEnv is our environment without libpq's PG* variables (PGDATA,
// PGPORT, PGHOST...), which would redirect pg_ctl and initdb.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// logTail returns the end of the server log, for error messages.
func (c cluster) logTail() string {
	b, err := os.ReadFile(c.logFile())
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nserver log " + c.logFile() + " ends:\n" + string(b)
}

func pidFromFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// isPostgres reports whether pid is a live PostgreSQL process. Without /proc
// (not Linux) a live pid is taken to be one.
func isPostgres(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return !dirExists("/proc/self")
	}
	name := strings.TrimSpace(string(comm))
	return name == "postgres" || name == "postmaster"
}

// osUser is the account the server runs as when we are root.
type osUser struct {
	name     string
	uid, gid int
}

// serverUser returns nil when we are not root (the server runs as us), and
// otherwise the postgres account, creating it if the machine lacks it.
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	const name = "postgres"
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return nil, fmt.Errorf("look up user %s: %w", name, err)
		}
		// Debian's postgresql-common creates this account; a server
		// installed some other way may not have.
		out, cerr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if cerr != nil {
			return nil, fmt.Errorf("PostgreSQL refuses to run as root and user %s is missing; create it: %w\n%s", name, cerr, out)
		}
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("look up user %s after creating it: %w", name, err)
		}
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return &osUser{name: name, uid: uid, gid: gid}, nil
}

var serverPrograms = []string{"initdb", "pg_ctl", "postgres"}

// findBinDir locates the PostgreSQL server programs. Distributions keep them
// off PATH (Debian: /usr/lib/postgresql/N/bin), so PATH is only one place to
// look; ASBB_PG_BINDIR overrides everything.
func findBinDir() (string, error) {
	if d := os.Getenv("ASBB_PG_BINDIR"); d != "" {
		if !hasServerPrograms(d) {
			return "", fmt.Errorf("ASBB_PG_BINDIR=%s lacks one of %v", d, serverPrograms)
		}
		return d, nil
	}
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	candidates = append(candidates, globByVersion("/usr/lib/postgresql/*/bin")...)
	if p, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(p, "--bindir").Output(); err == nil {
			candidates = append(candidates, strings.TrimSpace(string(out)))
		}
	}
	candidates = append(candidates, globByVersion("/usr/pgsql-*/bin")...)
	candidates = append(candidates, "/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")
	for _, d := range candidates {
		if hasServerPrograms(d) {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server programs (initdb, pg_ctl, postgres) found: " +
		"run tests/tools/provision.sh (apt-get install postgresql), set ASBB_PG_BINDIR, " +
		"or point ASBB_TEST_DATABASE_URL at a server")
}

// globByVersion returns the matches of pattern, highest version first.
func globByVersion(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	num := func(p string) int {
		n, _ := strconv.Atoi(digitsRE.FindString(p))
		return n
	}
	sort.Slice(m, func(i, j int) bool { return num(m[i]) > num(m[j]) })
	return m
}

func hasServerPrograms(dir string) bool {
	for _, p := range serverPrograms {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
