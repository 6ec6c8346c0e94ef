package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// Slurm job states (job_state & JOB_STATE_BASE) that matter here.
const (
	JobPending   = 0
	JobRunning   = 1
	JobSuspended = 2
	JobComplete  = 3
	JobCancelled = 4
	JobFailed    = 5
	JobTimeout   = 6
	JobNodeFail  = 7
	JobPreempted = 8
	JobBootFail  = 9
	JobDeadline  = 10
	JobOOM       = 11
)

// JobEnd is a finished job (or array task) as jobcomp or EpilogSlurmctld
// see it.
type JobEnd struct {
	Cluster      string `json:"cluster,omitempty"`
	JobID        uint32 `json:"job_id"`
	ArrayJobID   uint32 `json:"array_job_id,omitempty"`  // 0 or NoVal when not an array task
	ArrayTaskID  uint32 `json:"array_task_id,omitempty"` // NoVal when not an array task
	Account      string `json:"account,omitempty"`
	Partition    string `json:"partition,omitempty"`
	User         string `json:"user,omitempty"`
	AdminComment string `json:"admin_comment,omitempty"`
	// UntrustedComment is an admin_comment read from text users can forge
	// (scontrol's output): its hold marker is used only when the hold's
	// account and user are the job's.
	UntrustedComment string `json:"untrusted_admin_comment,omitempty"`
	StartTime        int64  `json:"start_time"` // unix seconds; 0 = never started
	EndTime          int64  `json:"end_time"`
	State            uint32 `json:"job_state"`
	Nodes            uint32 `json:"nodes"`
	CPUs             uint32 `json:"cpus"`
	TresAlloc        string `json:"tres_alloc,omitempty"`
	Actor            string `json:"actor,omitempty"`
}

// IsArrayTask reports whether the record is one task of an array.
func (e JobEnd) IsArrayTask() bool {
	return e.ArrayTaskID != NoVal && e.ArrayTaskID != Infinite && e.ArrayJobID != 0 && e.ArrayJobID != NoVal
}

// Elapsed is the run time in seconds (0 for a job that never started).
func (e JobEnd) Elapsed() int64 {
	if e.StartTime <= 0 || e.EndTime <= e.StartTime {
		return 0
	}
	return e.EndTime - e.StartTime
}

// key is the settlement identity of the record: an array task settles
// under its array's job id and its task id, so jobcomp and the epilogs
// agree whichever per-task job id they saw.
func (e JobEnd) key() (jobID string, task int) {
	if e.IsArrayTask() {
		return strconv.FormatUint(uint64(e.ArrayJobID), 10), int(e.ArrayTaskID)
	}
	return strconv.FormatUint(uint64(e.JobID), 10), -1
}

// SettleJob charges a finished job at the prices pinned on its hold and
// releases its share of the hold. Jobs that never started are charged
// nothing and their share is released. A job with no hold on a priced
// partition (accepted during an outage) is charged at today's prices.
// Idempotent: a repeated record (a second epilog, a node epilog on each
// node) charges once.
func (l *Ledger) SettleJob(ctx context.Context, e JobEnd) (Settlement, error) {
	if e.JobID == 0 || e.JobID == NoVal {
		return Settlement{}, fmt.Errorf("%w: job end without a job id", ErrInvalid)
	}
	e.Cluster = l.cluster(e.Cluster)
	jobID, task := e.key()
	h, err := l.holdOf(ctx, e, jobID)
	if err != nil && !errors.Is(err, ErrHoldNotFound) {
		return Settlement{}, err
	}
	var rate PartitionRate
	var perTask Resources
	req := SettleRequest{Cluster: e.Cluster, JobID: jobID, ArrayTaskID: task, RunStart: e.StartTime,
		Partition: e.Partition, User: e.User, Actor: e.Actor, Account: e.Account}
	if req.Actor == "" {
		req.Actor = "slurm"
	}
	if h.ID != 0 {
		var est Estimate
		if err := json.Unmarshal(h.Pricing, &est); err != nil {
			return Settlement{}, fmt.Errorf("decode pricing of hold %d: %w", h.ID, err)
		}
		rate, perTask = est.Rate, est.Resources
		req.HoldID, req.Partition = h.ID, h.Partition
		// A record for the whole array (not one task) means the array is
		// gone: release whatever is left.
		if h.Tasks > 1 && !e.IsArrayTask() {
			req.Final = true
			req.ArrayTaskID = -1
		}
	} else {
		r, ok := l.cfg.Pricing.Partitions[e.Partition]
		if !ok || e.Account == "" {
			l.log.Debug("job end without hold on a free partition", "job_id", jobID, "partition", e.Partition)
			return Settlement{}, nil
		}
		rate = r
		req.Reason = "no hold (accepted without one); charged at current prices"
	}
	res := actualResources(e, perTask)
	cost := decimal.Zero
	if el := e.Elapsed(); el > 0 {
		cost = rate.Cost(res, el)
	}
	req.Actual = cost.RoundBank(l.cfg.Pricing.ChargeScale)
	if req.Reason == "" {
		req.Reason = fmt.Sprintf("%s for %ds (%s)", stateName(e.State), e.Elapsed(), rate.explain(res, l.cfg.Pricing.Currency))
	}
	return l.Settle(ctx, req)
}

// holdOf finds the hold a finished job settles against: the one its
// admin_comment names (following the links job_modify left when it moved
// the job), else the one bound to its id.
func (l *Ledger) holdOf(ctx context.Context, e JobEnd, jobID string) (Hold, error) {
	id, ok := HoldIDFromComment(e.AdminComment)
	if !ok {
		if uid, found := HoldIDFromComment(e.UntrustedComment); found {
			h, err := l.GetHold(ctx, uid)
			switch {
			case err == nil && l.holdFits(h, e.Account, e.User, e.Cluster):
				id, ok = uid, true
			case err == nil || errors.Is(err, ErrHoldNotFound):
				l.log.Warn("ignoring a hold marker that does not fit the job (forged in user text?)",
					"marker", uid, "job_id", jobID, "account", e.Account, "user", e.User)
			default:
				return Hold{}, err
			}
		}
	}
	if !ok {
		return l.HoldForJob(ctx, e.Cluster, jobID)
	}
	for hops := 0; hops < 16; hops++ {
		h, err := l.GetHold(ctx, id)
		if err != nil || h.ReplacedBy == nil {
			return h, err
		}
		id = *h.ReplacedBy
	}
	return Hold{}, fmt.Errorf("%w: hold %d: too many replacements", ErrConflict, id)
}

// actualResources reads what the job really had from its record, falling
// back to what its hold priced.
func actualResources(e JobEnd, est Resources) Resources {
	r := est
	r.Tasks = 1
	if e.Nodes != 0 && e.Nodes != NoVal {
		r.Nodes = e.Nodes
	}
	if e.CPUs != 0 && e.CPUs != NoVal {
		r.CPUs = e.CPUs
	}
	if e.TresAlloc != "" {
		t := ParseTRES(e.TresAlloc)
		if v, ok := t["node"]; ok && v > 0 {
			r.Nodes = uint32(v)
		}
		if v, ok := t["cpu"]; ok && v > 0 {
			r.CPUs = uint32(v)
		}
		// Without slurmdbd, Slurm's allocated TRES carry no gres/gpu and
		// (under CR_Core) no mem: keep what the hold priced unless the
		// record says otherwise.
		if v, ok := t["mem"]; ok {
			r.MemMB = v
		}
		if v, ok := t["gres/gpu"]; ok {
			r.GPUs = uint32(v)
		}
	}
	return r
}

// ParseTRES parses "cpu=4,mem=8G,node=1,billing=4,gres/gpu=2" into counts;
// memory is returned in MB.
func ParseTRES(s string) map[string]uint64 {
	out := map[string]uint64{}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		mult := uint64(1)
		if k == "mem" {
			mult = 1 // MB by default
			switch {
			case strings.HasSuffix(v, "K"):
				v, mult = strings.TrimSuffix(v, "K"), 0
			case strings.HasSuffix(v, "M"):
				v = strings.TrimSuffix(v, "M")
			case strings.HasSuffix(v, "G"):
				v, mult = strings.TrimSuffix(v, "G"), 1024
			case strings.HasSuffix(v, "T"):
				v, mult = strings.TrimSuffix(v, "T"), 1024*1024
			}
		}
		// Counts may carry a fraction ("mem=1.50G"); decimal keeps it exact.
		n, err := decimal.NewFromString(v)
		if err != nil || n.IsNegative() || n.GreaterThan(decimal.New(1, 15)) {
			continue
		}
		if mult == 0 {
			out[k] = uint64(n.Div(decimal.NewFromInt(1024)).IntPart())
			continue
		}
		out[k] = uint64(n.Mul(decimal.NewFromInt(int64(mult))).IntPart())
	}
	return out
}

func stateName(s uint32) string {
	names := map[uint32]string{JobPending: "PENDING", JobRunning: "RUNNING", JobSuspended: "SUSPENDED",
		JobComplete: "COMPLETED", JobCancelled: "CANCELLED", JobFailed: "FAILED", JobTimeout: "TIMEOUT",
		JobNodeFail: "NODE_FAIL", JobPreempted: "PREEMPTED", JobBootFail: "BOOT_FAIL", JobDeadline: "DEADLINE",
		JobOOM: "OUT_OF_MEMORY"}
	if n, ok := names[s&0xff]; ok {
		return n
	}
	return "state " + strconv.FormatUint(uint64(s), 10)
}
