package slurm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
)

// scontrolKeys are the keys `scontrol show job -o` prints in 22.05 (and
// neighbours). A value runs until the next " Key=" of this set; values are
// not quoted, so user text (JobName, Command, WorkDir, StdOut, Comment) can
// contain spaces and even imitate keys: see ParseScontrolJob.
var scontrolKeys = keySet(`JobId ArrayJobId ArrayTaskId ArrayTaskThrottle HetJobId HetJobOffset
	HetJobIdSet JobName UserId GroupId MCS_label Priority Nice Account QOS JobState Reason Dependency
	Requeue Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime
	EligibleTime AccrueTime StartTime EndTime Deadline PreemptEligibleTime PreemptTime SuspendTime
	SecsPreSuspend LastSchedEval Scheduler Partition AllocNode:Sid ReqNodeList ExcNodeList NodeList
	BatchHost NumNodes NumCPUs NumTasks CPUs/Task ReqB:S:C:T TRES Socks/Node NtasksPerN:B:S:C CoreSpec
	MinCPUsNode MinMemoryNode MinMemoryCPU MinTmpDiskNode Features DelayBoot OverSubscribe Contiguous
	Licenses Network Command WorkDir AdminComment SystemComment Comment StdErr StdIn StdOut Power
	Reservation TresPerNode TresPerJob TresPerTask TresBind TresFreq CpusPerTres MemPerTres
	BurstBuffer BurstBufferState CpuFreqMin CpuFreqMax CpuFreqGov Prefer Clusters ClusterFeatures
	NtasksPerTRES MailUser MailType KillOnInvalidDependent Container ContainerID Partition_QOS
	ResizeTime Cluster`)

// readKeys are the fields ParseScontrolJob uses. If user text imitates one
// of them the line is ambiguous and refused.
var readKeys = []string{"JobId", "ArrayJobId", "ArrayTaskId", "UserId", "Account", "JobState",
	"StartTime", "EndTime", "Partition", "NumNodes", "NumCPUs", "TRES"}

func keySet(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

// ScontrolRecord is one job line of `scontrol show job -o` split into its
// fields (the first occurrence of a key wins), with Counts of how often
// each key appeared.
type ScontrolRecord struct {
	Fields map[string]string
	Counts map[string]int
}

// SplitScontrolLine splits one line into its fields at every " Key=" of a
// known key.
func SplitScontrolLine(line string) ScontrolRecord {
	rec := ScontrolRecord{Fields: map[string]string{}, Counts: map[string]int{}}
	line = strings.TrimRight(line, "\r\n")
	type mark struct {
		at, val int
		key     string
	}
	var marks []mark
	for i := 0; i < len(line); i++ {
		if i > 0 && line[i-1] != ' ' {
			continue
		}
		window := line[i:min(len(line), i+32)]
		eq := strings.IndexByte(window, '=')
		if eq <= 0 {
			continue
		}
		if key := window[:eq]; scontrolKeys[key] {
			marks = append(marks, mark{i, i + eq + 1, key})
		}
	}
	for n, m := range marks {
		end := len(line)
		if n+1 < len(marks) {
			end = marks[n+1].at
		}
		rec.Counts[m.key]++
		if _, dup := rec.Fields[m.key]; dup {
			continue
		}
		rec.Fields[m.key] = strings.TrimRight(line[m.val:end], " ")
	}
	return rec
}

// ErrAmbiguous means user text on the line imitates a field ASBB reads;
// ask `squeue --json` instead.
var ErrAmbiguous = errors.New("ambiguous scontrol line")

// ParseScontrolJob turns one `scontrol show job -o` line into a job. Times
// are read in loc (Slurm prints local times without a zone: run scontrol
// with TZ=UTC and pass time.UTC to avoid DST ambiguity). AdminComment is
// never taken from this format (see the package comment): the result's
// AdminComment is "" and the raw value, untrusted, is in the record. A line
// on which user text imitates a field ASBB reads fails with ErrAmbiguous.
func ParseScontrolJob(line string, loc *time.Location) (budget.SlurmJob, ScontrolRecord, error) {
	r := SplitScontrolLine(line)
	j := budget.SlurmJob{ArrayTaskID: budget.NoVal}
	for _, k := range readKeys {
		if r.Counts[k] > 1 {
			return j, r, fmt.Errorf("%w: %s appears %d times (user text imitates it)", ErrAmbiguous, k, r.Counts[k])
		}
	}
	rec := r.Fields
	id, err := parseU32(rec["JobId"])
	if err != nil || id == 0 {
		return j, r, fmt.Errorf("scontrol line has no valid JobId (%q)", rec["JobId"])
	}
	j.JobID = id
	if v, ok := rec["ArrayJobId"]; ok {
		if j.ArrayJobID, err = parseU32(v); err != nil {
			return j, r, fmt.Errorf("job %d: ArrayJobId %q: %w", id, v, err)
		}
		// "1-3" or "4-100%10" is the pending rest of the array.
		if t, err := parseU32(rec["ArrayTaskId"]); err == nil {
			j.ArrayTaskID = t
		}
	}
	j.State = rec["JobState"]
	if j.State == "" {
		return j, r, fmt.Errorf("job %d: no JobState", id)
	}
	j.Account = nullStr(rec["Account"])
	j.Partition = nullStr(rec["Partition"])
	if u := rec["UserId"]; u != "" {
		j.User, _, _ = strings.Cut(u, "(")
	}
	if j.StartTime, err = parseSlurmTime(rec["StartTime"], loc); err != nil {
		return j, r, fmt.Errorf("job %d: StartTime: %w", id, err)
	}
	if j.EndTime, err = parseSlurmTime(rec["EndTime"], loc); err != nil {
		return j, r, fmt.Errorf("job %d: EndTime: %w", id, err)
	}
	if v := rec["NumNodes"]; v != "" {
		// "2" or "1-2" (a range while pending): the first number.
		lo, _, _ := strings.Cut(v, "-")
		if n, err := parseU32(lo); err == nil {
			j.Nodes = n
		}
	}
	if v := rec["NumCPUs"]; v != "" {
		lo, _, _ := strings.Cut(v, "-")
		if n, err := parseU32(lo); err == nil {
			j.CPUs = n
		}
	}
	j.TresAlloc = nullStr(rec["TRES"])
	return j, r, nil
}

func nullStr(s string) string {
	if s == "(null)" || s == "N/A" {
		return ""
	}
	return s
}

func parseU32(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return uint32(v), err
}

// parseSlurmTime reads "2026-11-27T21:09:16" in loc; "Unknown", "None",
// "N/A" and "" are 0 (not set).
func parseSlurmTime(s string, loc *time.Location) (int64, error) {
	switch s {
	case "", "Unknown", "None", "N/A", "(null)":
		return 0, nil
	}
	if loc == nil {
		loc = time.Local
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, loc)
	if err != nil {
		return 0, fmt.Errorf("%q is not a Slurm time like 2026-11-27T21:09:16", s)
	}
	return t.Unix(), nil
}
