package budget

import (
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// Estimate is the priced worst case of a job: what a hold takes.
type Estimate struct {
	Partition   string          `json:"partition"`
	Resources   Resources       `json:"resources"`
	PerTaskCost decimal.Decimal `json:"per_task_cost"` // rate x resources x time limit, one task
	Multiplier  decimal.Decimal `json:"multiplier"`
	PerTaskHold decimal.Decimal `json:"per_task_hold"` // PerTaskCost x Multiplier (at least the minimum)
	Total       decimal.Decimal `json:"total"`         // PerTaskHold x tasks
	RateVersion string          `json:"rate_version"`
	Rate        PartitionRate   `json:"rate"`
	Currency    string          `json:"currency"`
	Explanation string          `json:"explanation"`
}

var (
	sixty   = decimal.NewFromInt(60)
	mbPerGB = decimal.NewFromInt(1024)
)

// HourlyRate is what the partition charges per hour for the resources r.
func (p PartitionRate) HourlyRate(r Resources) decimal.Decimal {
	nodes := decimal.NewFromInt(int64(r.Nodes))
	rate := p.NodeHour.Mul(nodes).
		Add(p.InstanceHour.Mul(nodes)).
		Add(p.CPUHour.Mul(decimal.NewFromInt(int64(r.CPUs)))).
		Add(p.GPUHour.Mul(decimal.NewFromInt(int64(r.GPUs)))).
		Add(p.MemGBHour.Mul(decimal.NewFromInt(int64(r.MemMB)).Div(mbPerGB)))
	return rate
}

// Cost is the exact cost of running resources r for the given seconds at
// this rate: hourly rate x seconds / 3600, at least the minimum charge.
// It is not rounded; callers round once, at the point of charging.
func (p PartitionRate) Cost(r Resources, seconds int64) decimal.Decimal {
	c := p.HourlyRate(r).Mul(decimal.NewFromInt(seconds)).Div(decimal.NewFromInt(3600))
	if seconds > 0 && c.LessThan(p.MinCharge.Decimal) {
		c = p.MinCharge.Decimal
	}
	return c
}

// explain writes how an hourly rate was made up: "2 nodes x $5.00/node-hour".
func (p PartitionRate) explain(r Resources, cur string) string {
	var parts []string
	add := func(n string, unit string, rate Money) {
		if rate.IsPositive() {
			parts = append(parts, fmt.Sprintf("%s x %s/%s", n, FormatMoney(rate.Decimal, cur), unit))
		}
	}
	plural := func(n uint64, w string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s", w)
		}
		return fmt.Sprintf("%d %ss", n, w)
	}
	add(plural(uint64(r.Nodes), "node"), "node-hour", p.NodeHour)
	if p.InstanceHour.IsPositive() {
		it := p.InstanceType
		if it == "" {
			it = "instance"
		}
		add(plural(uint64(r.Nodes), it), "hour", p.InstanceHour)
	}
	add(plural(uint64(r.CPUs), "CPU"), "CPU-hour", p.CPUHour)
	add(plural(uint64(r.GPUs), "GPU"), "GPU-hour", p.GPUHour)
	if p.MemGBHour.IsPositive() {
		gb := decimal.NewFromInt(int64(r.MemMB)).Div(mbPerGB).Round(2)
		parts = append(parts, fmt.Sprintf("%s GB x %s/GB-hour", gb, FormatMoney(p.MemGBHour.Decimal, cur)))
	}
	return strings.Join(parts, " + ")
}

// Price computes the worst-case estimate of a job on a priced partition.
// ok is false when the partition has no price (the job is free).
func (c *Config) Price(job JobRequest, partition string) (est Estimate, ok bool, err error) {
	rate, ok := c.Pricing.Partitions[partition]
	if !ok {
		if c.Pricing.RequirePrice {
			return est, false, &Denial{Code: "unpriced_partition", Partition: partition}
		}
		return est, false, nil
	}
	res, err := job.resources(rate.CPUsPerNode)
	if err != nil {
		return est, true, err
	}
	tl := TimeLimitFromSlurm(job.TimeLimit)
	if !tl.Set && rate.DefaultTime != "" {
		tl, _ = ParseTimeLimit(rate.DefaultTime)
	}
	if tl.Unlimited || !tl.Set {
		if rate.MaxTime == "" {
			return est, true, &Denial{Code: "no_time_limit", Partition: partition,
				Hint: "Priced partitions need a finite time limit so the worst case can be held."}
		}
		tl, _ = ParseTimeLimit(rate.MaxTime)
	}
	if rate.MaxTime != "" {
		max, _ := ParseTimeLimit(rate.MaxTime)
		if !max.Unlimited && tl.Minutes > max.Minutes {
			// Slurm will refuse or cap the job anyway; price the cap.
			tl = max
		}
	}
	if tl.Unlimited {
		return est, true, &Denial{Code: "no_time_limit", Partition: partition,
			Hint: "Priced partitions need a finite time limit so the worst case can be held."}
	}
	res.Minutes = tl.Minutes
	tasks, err := ArrayTasks(job.ArrayInx)
	if err != nil {
		return est, true, err
	}
	res.Tasks = tasks
	perTask := rate.Cost(res, int64(tl.Minutes)*60)
	mult := c.Submit.HoldMultiplier.Decimal
	perHold := perTask.Mul(mult).RoundUp(Scale)
	total := perHold.Mul(decimal.NewFromInt(int64(tasks)))
	if err := checkRange(total); err != nil {
		return est, true, fmt.Errorf("job estimate: %w", err)
	}
	cur := c.Pricing.Currency
	expl := fmt.Sprintf("%s x %s", rate.explain(res, cur), hoursText(tl.Minutes))
	if !mult.Equal(decimal.NewFromInt(1)) {
		expl += " x " + mult.String()
	}
	if tasks > 1 {
		expl = fmt.Sprintf("%d array tasks x (%s)", tasks, expl)
	}
	return Estimate{
		Partition: partition, Resources: res, PerTaskCost: perTask, Multiplier: mult,
		PerTaskHold: perHold, Total: total, RateVersion: c.RateVersion(), Rate: rate,
		Currency: cur, Explanation: expl,
	}, true, nil
}

func hoursText(min uint32) string {
	h := decimal.NewFromInt(int64(min)).Div(sixty)
	if h.Equal(h.Round(2)) {
		return h.Round(2).String() + " h"
	}
	return h.StringFixed(2) + " h"
}
