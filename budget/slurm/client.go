package slurm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
)

// Client runs Slurm's commands. Every run has a hard timeout: the command
// is killed when it expires, and its pipes are abandoned shortly after.
type Client struct {
	BinDir  string        // directory of squeue/scontrol ("" = $PATH)
	Conf    string        // SLURM_CONF for the commands ("" = inherited)
	Timeout time.Duration // per command; 0 = 10s
}

// NewClient builds a client from the config's slurm section.
func NewClient(cfg *budget.Config) *Client {
	return &Client{BinDir: cfg.Slurm.BinDir, Conf: cfg.Slurm.Conf, Timeout: cfg.Slurm.Timeout.Duration}
}

// maxOutput bounds what one command may print (a 10,000-job queue is
// ~50 MB of JSON).
const maxOutput = 512 << 20

// run runs a Slurm command with TZ=UTC, so that times printed without a
// zone are UTC and never ambiguous across a DST change.
func (c *Client) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := name
	if c.BinDir != "" {
		path = filepath.Join(c.BinDir, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	if c.Conf != "" {
		cmd.Env = append(cmd.Env, "SLURM_CONF="+c.Conf)
	}
	var stdout limitedBuffer
	var stderr bytes.Buffer
	stdout.limit = maxOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil
	// After the kill, give the pipes a moment, then stop waiting for them
	// (a grandchild holding them open must not hang the caller).
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: no answer within %s: %w", name, timeout, ctx.Err())
	}
	if stdout.over {
		return nil, fmt.Errorf("%s: output larger than %d bytes", name, maxOutput)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return stdout.Bytes(), &CommandError{Name: name, Err: err, Stderr: msg}
	}
	return stdout.Bytes(), nil
}

// CommandError is a Slurm command that ran and failed.
type CommandError struct {
	Name   string
	Err    error
	Stderr string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

type limitedBuffer struct {
	bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		b.over = true
		return 0, errors.New("output too large")
	}
	return b.Buffer.Write(p)
}

// Jobs lists every job slurmctld knows (`squeue --json --all --states=all`;
// in 22.05 --json ignores squeue's filters, so users is applied here).
// It implements budget.SlurmQuerier.
func (c *Client) Jobs(ctx context.Context, users []string) ([]budget.SlurmJob, error) {
	out, err := c.run(ctx, "squeue", "--json", "--all", "--states=all")
	if err != nil {
		return nil, err
	}
	jobs, err := ParseSqueueJSON(out)
	if err != nil || len(users) == 0 {
		return jobs, err
	}
	want := map[string]bool{}
	for _, u := range users {
		want[u] = true
	}
	kept := jobs[:0]
	for _, j := range jobs {
		if want[j.User] {
			kept = append(kept, j)
		}
	}
	return kept, nil
}

// ErrNoSuchJob is a job Slurm does not know (any more).
var ErrNoSuchJob = errors.New("slurm does not know the job")

// JobInfo is one job as Job found it.
type JobInfo struct {
	Job budget.SlurmJob
	// Trusted is set when Job came from squeue --json and so carries the
	// job's real admin_comment.
	Trusted bool
	// RawAdminComment is the AdminComment field of scontrol's text: user
	// text can forge it, so check a marker in it with
	// budget.Ledger.MarkerFits before use.
	RawAdminComment string
}

// Job describes one job (or array task) by its own job id. It reads
// `scontrol show job -o ID` (cheap: one job) and falls back to the full
// `squeue --json` listing when the text is ambiguous (user text imitating
// a field ASBB reads).
func (c *Client) Job(ctx context.Context, id uint32) (JobInfo, error) {
	out, err := c.run(ctx, "scontrol", "show", "job", "-o", strconv.FormatUint(uint64(id), 10))
	var ce *CommandError
	if errors.As(err, &ce) && strings.Contains(ce.Stderr, "Invalid job id") {
		return JobInfo{}, fmt.Errorf("job %d: %w", id, ErrNoSuchJob)
	}
	if err != nil {
		return JobInfo{}, err
	}
	info, err := pickScontrol(out, id)
	if err == nil || !errors.Is(err, ErrAmbiguous) {
		return info, err
	}
	return c.JobJSON(ctx, id)
}

// JobJSON describes one job from `squeue --json` (trusted, with its
// admin_comment).
func (c *Client) JobJSON(ctx context.Context, id uint32) (JobInfo, error) {
	jobs, err := c.Jobs(ctx, nil)
	if err != nil {
		return JobInfo{}, err
	}
	for _, j := range jobs {
		if j.JobID == id {
			return JobInfo{Job: j, Trusted: true}, nil
		}
	}
	return JobInfo{}, fmt.Errorf("job %d: %w", id, ErrNoSuchJob)
}

// pickScontrol finds the line of job id in scontrol's output (asking for
// an array's id prints every task).
func pickScontrol(out []byte, id uint32) (JobInfo, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "JobId="+strconv.FormatUint(uint64(id), 10)+" ") {
			continue
		}
		j, rec, err := ParseScontrolJob(line, time.UTC)
		return JobInfo{Job: j, RawAdminComment: rec.Fields["AdminComment"]}, err
	}
	if err := sc.Err(); err != nil {
		return JobInfo{}, fmt.Errorf("read scontrol output: %w", err)
	}
	return JobInfo{}, fmt.Errorf("job %d: %w", id, ErrNoSuchJob)
}
