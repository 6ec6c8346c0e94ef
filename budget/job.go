package budget

import (
	"fmt"
	"strconv"
	"strings"
)

// JobRequest mirrors the job_desc fields ASBB prices with. The C plugin, the
// Lua module, the HTTP API and the CLI all fill this one struct, so the
// translation of a Slurm request happens once, here.
type JobRequest struct {
	Cluster      string `json:"cluster,omitempty"`
	Account      string `json:"account,omitempty"`
	Partition    string `json:"partition,omitempty"`
	User         string `json:"user,omitempty"`
	UserID       uint32 `json:"user_id,omitempty"`
	TimeLimit    uint32 `json:"time_limit"`    // minutes; NoVal unset; Infinite
	MinNodes     uint32 `json:"min_nodes"`     // NoVal unset
	MaxNodes     uint32 `json:"max_nodes"`     // NoVal unset
	NumTasks     uint32 `json:"num_tasks"`     // NoVal unset
	CPUsPerTask  uint16 `json:"cpus_per_task"` // NoVal16 unset
	MinCPUs      uint32 `json:"min_cpus"`      // total; NoVal unset
	PnMinMemory  uint64 `json:"pn_min_memory"` // MB per node, or per CPU with MemPerCPU; NoVal64 unset
	TresPerNode  string `json:"tres_per_node,omitempty"`
	TresPerJob   string `json:"tres_per_job,omitempty"`
	ArrayInx     string `json:"array_inx,omitempty"`
	AdminComment string `json:"admin_comment,omitempty"`
	JobID        string `json:"job_id,omitempty"`
	// IdempotencyKey makes a retried admission (over HTTP) take one hold.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Actor overrides who the hold is attributed to in the ledger (the
	// HTTP service sets "token:<name>"); "" means "slurm:<user>".
	Actor string `json:"actor,omitempty"`
}

// UnsetJob returns a request with every numeric field at Slurm's "unset"
// sentinel, as job_desc has before the user's options are applied.
func UnsetJob() JobRequest {
	return JobRequest{TimeLimit: NoVal, MinNodes: NoVal, MaxNodes: NoVal, NumTasks: NoVal,
		CPUsPerTask: NoVal16, MinCPUs: NoVal, PnMinMemory: NoVal64}
}

// Resources is what a job (or one array task) is priced on.
type Resources struct {
	Nodes   uint32 `json:"nodes"`
	CPUs    uint32 `json:"cpus"`
	GPUs    uint32 `json:"gpus"`
	MemMB   uint64 `json:"mem_mb"`
	Minutes uint32 `json:"minutes"`
	Tasks   uint32 `json:"array_tasks"` // array tasks held for; 1 for a plain job
}

func set32(v uint32) bool { return v != NoVal && v != Infinite && v != 0 }

// resources derives the per-task resources of a job request. cpusPerNode
// (from the rate card) fills the CPU count of a whole-node request.
func (j JobRequest) resources(cpusPerNode uint32) (Resources, error) {
	r := Resources{Nodes: 1, Tasks: 1}
	if set32(j.MinNodes) {
		r.Nodes = j.MinNodes
	}
	if set32(j.MaxNodes) && j.MaxNodes > r.Nodes && !set32(j.MinNodes) {
		r.Nodes = j.MaxNodes
	}
	if r.Nodes > 100000 {
		return r, fmt.Errorf("%w: node count %d is not plausible", ErrInvalid, r.Nodes)
	}
	cpt := uint32(1)
	if j.CPUsPerTask != NoVal16 && j.CPUsPerTask != 0 && j.CPUsPerTask != 0xffff {
		cpt = uint32(j.CPUsPerTask)
	}
	tasks := uint32(0)
	if set32(j.NumTasks) {
		tasks = j.NumTasks
	}
	cpus := uint64(tasks) * uint64(cpt)
	if set32(j.MinCPUs) && uint64(j.MinCPUs) > cpus {
		cpus = uint64(j.MinCPUs)
	}
	if cpus == 0 {
		cpus = uint64(cpt) * uint64(r.Nodes)
	}
	if cpus > 1<<24 {
		return r, fmt.Errorf("%w: CPU count %d is not plausible", ErrInvalid, cpus)
	}
	r.CPUs = uint32(cpus)
	gpn, err := gpusIn(j.TresPerNode)
	if err != nil {
		return r, err
	}
	gpj, err := gpusIn(j.TresPerJob)
	if err != nil {
		return r, err
	}
	r.GPUs = gpn*r.Nodes + gpj
	if j.PnMinMemory != NoVal64 && j.PnMinMemory != 0 && j.PnMinMemory != Infinite64 {
		if j.PnMinMemory&MemPerCPU != 0 {
			perCPU := j.PnMinMemory &^ MemPerCPU
			r.MemMB = perCPU * cpus
		} else {
			r.MemMB = j.PnMinMemory * uint64(r.Nodes)
		}
		if r.MemMB > 1<<40 {
			return r, fmt.Errorf("%w: memory request is not plausible", ErrInvalid)
		}
	}
	_ = cpusPerNode
	return r, nil
}

// gpusIn counts GPUs in a TRES string: "gres:gpu:2", "gres/gpu:a100:2",
// "gpu:2", "gres:gpu" (= 1), comma-separated with other TRES.
func gpusIn(tres string) (uint32, error) {
	var total uint32
	for _, item := range strings.Split(tres, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		item = strings.TrimPrefix(strings.TrimPrefix(item, "gres:"), "gres/")
		if !strings.HasPrefix(item, "gpu") {
			continue
		}
		fields := strings.Split(item, ":")
		if fields[0] != "gpu" {
			continue
		}
		n := uint64(1)
		if len(fields) > 1 {
			last := fields[len(fields)-1]
			if v, err := strconv.ParseUint(last, 10, 32); err == nil {
				n = v
			} else if len(fields) > 2 {
				return 0, fmt.Errorf("%w: GPU request %q has a bad count", ErrInvalid, item)
			}
		}
		if n > 1<<16 {
			return 0, fmt.Errorf("%w: GPU request %q is not plausible", ErrInvalid, item)
		}
		total += uint32(n)
	}
	return total, nil
}

// ArrayTasks counts the tasks of an array spec such as "1-100%10",
// "0,5,7-9", "1-99:2". The throttle (%N) does not change the count: every
// task may run, so every task is held for.
func ArrayTasks(spec string) (uint32, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return 1, nil
	}
	if i := strings.IndexByte(s, '%'); i >= 0 {
		if _, err := strconv.ParseUint(s[i+1:], 10, 32); err != nil {
			return 0, fmt.Errorf("%w: array spec %q has a bad throttle", ErrInvalid, spec)
		}
		s = s[:i]
	}
	parts := strings.Split(s, ",")
	seen := map[uint64]struct{}{}
	var count uint64
	for _, part := range parts {
		rng, stepS, hasStep := strings.Cut(part, ":")
		step := uint64(1)
		if hasStep {
			v, err := strconv.ParseUint(stepS, 10, 32)
			if err != nil || v == 0 {
				return 0, fmt.Errorf("%w: array spec %q has a bad step", ErrInvalid, spec)
			}
			step = v
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: array spec %q is malformed", ErrInvalid, spec)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return 0, fmt.Errorf("%w: array spec %q is malformed", ErrInvalid, spec)
			}
		}
		if (b-a)/step >= maxArrayTasks {
			return 0, fmt.Errorf("%w: array spec %q is too large", ErrInvalid, spec)
		}
		if len(parts) == 1 {
			// The common case ("1-100%10") is counted without a set.
			count = (b-a)/step + 1
			break
		}
		for v := a; v <= b; v += step {
			seen[v] = struct{}{}
		}
		if len(seen) > maxArrayTasks {
			return 0, fmt.Errorf("%w: array spec %q is too large", ErrInvalid, spec)
		}
		count = uint64(len(seen))
	}
	return uint32(count), nil
}

// maxArrayTasks is Slurm's own ceiling on MaxArraySize.
const maxArrayTasks = 4_000_001

// HoldIDFromComment finds the "asbb:<id>" marker in an admin_comment.
func HoldIDFromComment(c string) (int64, bool) {
	var id int64
	found := false
	for _, f := range strings.FieldsFunc(c, func(r rune) bool { return r == ',' || r == ' ' || r == ';' }) {
		if v, ok := strings.CutPrefix(f, "asbb:"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				id, found = n, true // the last marker wins: a re-hold appends a new one
			}
		}
	}
	return id, found
}

// commentWithHold returns admin_comment with the marker of hold id, replacing
// an older marker rather than piling them up.
func commentWithHold(c string, id int64) string {
	var keep []string
	for _, f := range strings.Split(c, ",") {
		f = strings.TrimSpace(f)
		if f == "" || strings.HasPrefix(f, "asbb:") {
			continue
		}
		keep = append(keep, f)
	}
	keep = append(keep, "asbb:"+strconv.FormatInt(id, 10))
	return strings.Join(keep, ",")
}
