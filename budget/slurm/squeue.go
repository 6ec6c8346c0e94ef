// Package slurm asks Slurm about jobs: it runs squeue and scontrol with a
// hard timeout and parses what they print into budget.SlurmJob, and it
// expands Slurm hostlists. It is what recovery, the binder inside
// slurmctld, asbb-epilog and `asbb-admin reconcile` use.
//
// Where the job's admin_comment matters (the "asbb:<hold id>" marker),
// only `squeue --json` is trusted: in `scontrol show job -o` the job name,
// command, work dir and output paths are user text printed unquoted on the
// same line, so a user can forge " AdminComment=asbb:<someone else's
// hold>" there. The text parser therefore never fills AdminComment.
package slurm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/asbb/asbb/budget"
)

// squeueDoc is the part of `squeue --json` (OpenAPI v0.0.38 in 22.05) we
// read. Numbers are kept raw: 23.02+ wraps them in {"set","number"} objects.
type squeueDoc struct {
	Errors []json.RawMessage `json:"errors"`
	Jobs   []struct {
		JobID        json.RawMessage `json:"job_id"`
		ArrayJobID   json.RawMessage `json:"array_job_id"`
		ArrayTaskID  json.RawMessage `json:"array_task_id"`
		JobState     json.RawMessage `json:"job_state"`
		AdminComment string          `json:"admin_comment"`
		Cluster      string          `json:"cluster"`
		Account      string          `json:"account"`
		Partition    string          `json:"partition"`
		UserName     string          `json:"user_name"`
		StartTime    json.RawMessage `json:"start_time"`
		EndTime      json.RawMessage `json:"end_time"`
		NodeCount    json.RawMessage `json:"node_count"`
		CPUs         json.RawMessage `json:"cpus"`
		TresAlloc    string          `json:"tres_alloc_str"`
	} `json:"jobs"`
}

// ParseSqueueJSON parses the output of `squeue --json`.
func ParseSqueueJSON(data []byte) ([]budget.SlurmJob, error) {
	var doc squeueDoc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse squeue --json: %w", err)
	}
	if doc.Jobs == nil {
		if len(doc.Errors) > 0 {
			return nil, fmt.Errorf("squeue --json reported errors: %s", doc.Errors[0])
		}
		return nil, fmt.Errorf("parse squeue --json: no \"jobs\" array")
	}
	out := make([]budget.SlurmJob, 0, len(doc.Jobs))
	for i, j := range doc.Jobs {
		id, ok := jsonUint(j.JobID)
		if !ok || id == 0 || id > 0xffffffff {
			return nil, fmt.Errorf("parse squeue --json: job %d has no valid job_id (%s)", i, j.JobID)
		}
		state, err := jsonState(j.JobState)
		if err != nil {
			return nil, fmt.Errorf("parse squeue --json: job %d: %w", id, err)
		}
		sj := budget.SlurmJob{JobID: uint32(id), ArrayTaskID: budget.NoVal, State: state,
			AdminComment: j.AdminComment, Cluster: j.Cluster, Account: j.Account, Partition: j.Partition,
			User: j.UserName, TresAlloc: j.TresAlloc}
		if v, ok := jsonUint(j.ArrayJobID); ok && v <= 0xffffffff {
			sj.ArrayJobID = uint32(v)
		}
		if v, ok := jsonUint(j.ArrayTaskID); ok && v < uint64(budget.NoVal) && sj.ArrayJobID != 0 {
			sj.ArrayTaskID = uint32(v)
		}
		if v, ok := jsonUint(j.StartTime); ok && v < 1<<40 {
			sj.StartTime = int64(v)
		}
		if v, ok := jsonUint(j.EndTime); ok && v < 1<<40 {
			sj.EndTime = int64(v)
		}
		if v, ok := jsonUint(j.NodeCount); ok && v < uint64(budget.NoVal) {
			sj.Nodes = uint32(v)
		}
		if v, ok := jsonUint(j.CPUs); ok && v < uint64(budget.NoVal) {
			sj.CPUs = uint32(v)
		}
		out = append(out, sj)
	}
	return out, nil
}

// jsonUint reads a non-negative integer written as a number or as
// {"set": true, "number": N}; null, unset and negative values are not ok.
func jsonUint(raw json.RawMessage) (uint64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, false
	}
	if raw[0] == '{' {
		var w struct {
			Set      *bool           `json:"set"`
			Infinite bool            `json:"infinite"`
			Number   json.RawMessage `json:"number"`
		}
		if json.Unmarshal(raw, &w) != nil || w.Infinite || (w.Set != nil && !*w.Set) {
			return 0, false
		}
		return jsonUint(w.Number)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return 0, false
	}
	var v uint64
	if _, err := fmt.Sscan(n.String(), &v); err != nil {
		return 0, false
	}
	return v, true
}

// jsonState reads job_state: "RUNNING" (22.05) or ["RUNNING", ...] (23.02+,
// base state first, then flags such as COMPLETING).
func jsonState(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
		// A live flag outranks the base state (COMPLETING over COMPLETED).
		for _, f := range list[1:] {
			if (budget.SlurmJob{State: f}).Live() {
				return strings.ToUpper(f), nil
			}
		}
		return list[0], nil
	}
	return "", fmt.Errorf("unreadable job_state %s", raw)
}
