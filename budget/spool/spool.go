// Package spool is the durable local queue of settlement records that
// could not be posted when a job ended (database or service unreachable).
//
// A record is one file, <name>.json, holding a budget.JobEnd as JSON. Its
// name is derived from the settlement identity (cluster, job, array task,
// run start), so writing the same job twice leaves one file. Write makes
// the record durable before it returns: temp file, fsync, rename, fsync of
// the directory.
//
// Replay posts each record and removes it only after the post succeeded.
// Several replayers may run at once (two service instances, an admin's
// `asbb-admin spool replay`): a replayer claims a record by renaming it to
// <name>.json.claimed-<pid>-<nonce>, which exactly one of them can do, so
// each record is posted by one replayer (and settlement is idempotent
// anyway). A claim whose process died is taken over after StaleClaim.
// Unreadable records go to the quarantine/ subdirectory, with a log line.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/asbb/asbb/budget"
)

const (
	suffix        = ".json"
	claimInfix    = ".claimed-"
	tmpPrefix     = ".tmp-"
	quarantineDir = "quarantine"
	// maxRecord bounds a record file; a JobEnd is a few hundred bytes.
	maxRecord = 64 << 10
)

// StaleClaim is how old a claim of a live-looking process may get before
// another replayer takes the record over (one post takes seconds).
var StaleClaim = 10 * time.Minute

// Spool is a spool directory.
type Spool struct {
	dir string
	log *slog.Logger
	now func() time.Time
}

// New returns the spool in dir (created on first Write).
func New(dir string, log *slog.Logger) *Spool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Spool{dir: dir, log: log, now: time.Now}
}

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.dir }

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Name is the file name of a record: unique per (cluster, job, array task,
// run start), the settlement identity.
func Name(e budget.JobEnd) string {
	cluster := unsafeChars.ReplaceAllString(e.Cluster, "_")
	if cluster == "" {
		cluster = "_"
	}
	if len(cluster) > 64 {
		cluster = cluster[:64]
	}
	job := strconv.FormatUint(uint64(e.JobID), 10)
	task := "x"
	if e.IsArrayTask() {
		job = strconv.FormatUint(uint64(e.ArrayJobID), 10)
		task = strconv.FormatUint(uint64(e.ArrayTaskID), 10)
	}
	return fmt.Sprintf("settle-%s-%s-%s-%d%s", cluster, job, task, e.StartTime, suffix)
}

// Write stores a record durably and returns its path.
func (s *Spool) Write(e budget.JobEnd) (string, error) {
	if e.JobID == 0 || e.JobID == budget.NoVal {
		return "", fmt.Errorf("spool: %w: record without a job id", budget.ErrInvalid)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("spool: encode record: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o770); err != nil {
		return "", fmt.Errorf("spool: create %s: %w", s.dir, err)
	}
	name := Name(e)
	tmp, err := os.CreateTemp(s.dir, tmpPrefix+name+"-*")
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	tmpName := tmp.Name()
	cleanup := func() { tmp.Close(); os.Remove(tmpName) }
	if err := tmp.Chmod(0o660); err != nil {
		cleanup()
		return "", fmt.Errorf("spool: chmod %s: %w", tmpName, err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		cleanup()
		return "", fmt.Errorf("spool: write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		cleanup()
		return "", fmt.Errorf("spool: fsync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return "", fmt.Errorf("spool: close %s: %w", tmpName, err)
	}
	// A record of the same settlement may be there already (jobcomp and
	// the epilog both spool a job during an outage): the first one stays,
	// because a later copy may know less (settlement is idempotent, so
	// either settles the job once).
	path := filepath.Join(s.dir, name)
	err = os.Link(tmpName, path)
	os.Remove(tmpName)
	if errors.Is(err, fs.ErrExist) {
		s.log.Info("a record of this settlement is already spooled; keeping it", "file", path)
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return "", err
	}
	return path, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", dir, err)
	}
	return nil
}

// Entry is a record waiting in the spool.
type Entry struct {
	Name    string    `json:"name"`
	Claimed bool      `json:"claimed"` // a replayer is posting it
	ModTime time.Time `json:"spooled_at"`
	Size    int64     `json:"size"`
}

// List returns the waiting records (claimed ones included), oldest first. A
// missing directory is an empty spool.
func (s *Spool) List() ([]Entry, error) {
	des, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	var out []Entry
	for _, de := range des {
		n := de.Name()
		if de.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		claimed := strings.Contains(n, suffix+claimInfix)
		if !claimed && !strings.HasSuffix(n, suffix) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Entry{Name: n, Claimed: claimed, ModTime: info.ModTime(), Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ModTime.Equal(out[j].ModTime) {
			return out[i].ModTime.Before(out[j].ModTime)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Read decodes one record file.
func Read(path string) (budget.JobEnd, error) {
	var e budget.JobEnd
	f, err := os.Open(path)
	if err != nil {
		return e, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return e, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxRecord {
		return e, fmt.Errorf("%w: %s is larger than %d bytes", errCorrupt, path, maxRecord)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("%w: %s: %v", errCorrupt, path, err)
	}
	if e.JobID == 0 || e.JobID == budget.NoVal {
		return e, fmt.Errorf("%w: %s has no job id", errCorrupt, path)
	}
	return e, nil
}

var errCorrupt = errors.New("corrupt spool record")

// PostFunc posts one record (settles it). It must be idempotent.
type PostFunc func(ctx context.Context, e budget.JobEnd) error

// Report sums up a replay.
type Report struct {
	Posted      int      `json:"posted"`
	Failed      int      `json:"failed"`      // left in the spool for the next replay
	Quarantined int      `json:"quarantined"` // unreadable or refused as invalid
	Skipped     int      `json:"skipped"`     // claimed by another replayer
	Errors      []string `json:"errors,omitempty"`
}

// Replay posts every waiting record with post and removes each after its
// post succeeded. A record post refuses as invalid (budget.ErrInvalid), or
// that cannot be decoded, is quarantined. When post reports the database
// unavailable (budget.ErrUnavailable) the replay stops early: the rest
// would fail too. Replay never panics on bad files.
func (s *Spool) Replay(ctx context.Context, post PostFunc) (Report, error) {
	var rep Report
	s.sweepTemps()
	entries, err := s.List()
	if err != nil {
		return rep, err
	}
	for _, ent := range entries {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		claimed, ok := s.claim(ent)
		if !ok {
			rep.Skipped++
			continue
		}
		stop, err := s.replayOne(ctx, claimed, post, &rep)
		if stop {
			return rep, err
		}
	}
	return rep, nil
}

// replayOne posts one claimed file. stop ends the replay (with err).
func (s *Spool) replayOne(ctx context.Context, claimed string, post PostFunc, rep *Report) (stop bool, err error) {
	orig := originalName(filepath.Base(claimed))
	e, err := Read(claimed)
	if err != nil {
		if errors.Is(err, errCorrupt) {
			s.quarantine(claimed, orig, err)
			rep.Quarantined++
			return false, nil
		}
		s.unclaim(claimed, orig)
		rep.Failed++
		rep.Errors = append(rep.Errors, err.Error())
		return false, nil
	}
	err = safePost(ctx, post, e)
	switch {
	case err == nil:
		if rerr := os.Remove(claimed); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			// Posted, but the file stays: a later replay posts it again,
			// which settlement's idempotency turns into a no-op.
			s.log.Warn("spool: cannot remove posted record", "file", claimed, "error", rerr)
		}
		rep.Posted++
		s.log.Info("spool: record posted", "file", orig, "job_id", e.JobID)
		return false, nil
	case errors.Is(err, budget.ErrInvalid):
		s.quarantine(claimed, orig, err)
		rep.Quarantined++
		return false, nil
	}
	s.unclaim(claimed, orig)
	rep.Failed++
	rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", orig, err))
	if errors.Is(err, budget.ErrUnavailable) || ctx.Err() != nil {
		return true, fmt.Errorf("spool replay stopped: %w", err)
	}
	return false, nil
}

// safePost turns a panic in post into an error: a bad record must not
// crash the service's replay worker.
func safePost(ctx context.Context, post PostFunc, e budget.JobEnd) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("post panicked: %v", r)
		}
	}()
	return post(ctx, e)
}

// claim renames an entry to a name only this replayer holds. ok is false
// when another replayer has it.
func (s *Spool) claim(ent Entry) (string, bool) {
	src := filepath.Join(s.dir, ent.Name)
	if ent.Claimed {
		if !s.stale(ent) {
			return "", false
		}
		s.log.Warn("spool: taking over a stale claim", "file", ent.Name)
	}
	dst := filepath.Join(s.dir, originalName(ent.Name)+claimInfix+strconv.Itoa(os.Getpid())+"-"+nonce())
	if err := os.Rename(src, dst); err != nil {
		// ENOENT: another replayer claimed (or finished) it first.
		return "", false
	}
	// A claim's age is its mtime: stamp it so others see it fresh.
	now := s.now()
	_ = os.Chtimes(dst, now, now)
	return dst, true
}

// stale reports whether a claimed entry's replayer is gone: its process
// no longer exists, or the claim is older than StaleClaim.
func (s *Spool) stale(ent Entry) bool {
	if s.now().Sub(ent.ModTime) > StaleClaim {
		return true
	}
	i := strings.LastIndex(ent.Name, claimInfix)
	rest := ent.Name[i+len(claimInfix):]
	pidStr, _, _ := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return true
	}
	if pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func (s *Spool) unclaim(claimed, orig string) {
	if err := os.Rename(claimed, filepath.Join(s.dir, orig)); err != nil {
		s.log.Warn("spool: cannot release claim", "file", claimed, "error", err)
	}
}

func (s *Spool) quarantine(claimed, orig string, cause error) {
	qdir := filepath.Join(s.dir, quarantineDir)
	dst := filepath.Join(qdir, orig+"."+s.now().UTC().Format("20060102T150405")+"-"+nonce())
	err := os.MkdirAll(qdir, 0o770)
	if err == nil {
		err = os.Rename(claimed, dst)
	}
	if err != nil {
		s.log.Error("spool: cannot quarantine record", "file", claimed, "cause", cause, "error", err)
		return
	}
	s.log.Error("spool: record quarantined", "file", orig, "moved_to", dst, "cause", cause)
}

// sweepTemps removes temp files of writers that died before their rename
// (never complete records: a record exists only once renamed).
func (s *Spool) sweepTemps() {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), tmpPrefix) {
			continue
		}
		if info, err := de.Info(); err == nil && s.now().Sub(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(s.dir, de.Name()))
		}
	}
}

// originalName strips a claim suffix.
func originalName(n string) string {
	if i := strings.Index(n, suffix+claimInfix); i >= 0 {
		return n[:i+len(suffix)]
	}
	return n
}

func nonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
