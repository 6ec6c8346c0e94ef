package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// submitUsecRE matches slurmctld's own timing of a batch submission, logged
// at info level (the default SlurmctldDebug) in 22.05. It covers the whole
// RPC, job_submit plugin included.
var submitUsecRE = regexp.MustCompile(`_slurm_rpc_submit_batch_job: JobId=(\d+) InitPrio=\d+ usec=(\d+)`)

// benchVariant is one configuration measured by BenchmarkSlurmctldSubmit.
type benchVariant struct {
	name      string
	plugins   string // JobSubmitPlugins ("" = none)
	partition string
	usec      []float64 // slurmctld's usec= per submission
	wall      time.Duration
	n         int
}

// BenchmarkSlurmctldSubmit measures what the job_submit/asbb plugin costs
// slurmctld per submission: the usec= slurmctld logs for
// _slurm_rpc_submit_batch_job, with no plugin, with the plugin on an
// unpriced partition (no database round trip) and with the plugin taking a
// durable hold, plus sequential sbatch throughput per variant. The variants
// alternate in rounds of 50 submissions (their order rotating) in one
// sitting, so load from other tenants spreads over all of them.
//
// It runs once whatever b.N is: `make bench-slurm` (BENCH_SUBMITS, default
// 600 per variant; ASBB_BENCH_SUBMITS here).
func BenchmarkSlurmctldSubmit(b *testing.B) {
	perVariant := 600
	if s := os.Getenv("ASBB_BENCH_SUBMITS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			b.Fatalf("ASBB_BENCH_SUBMITS=%q: want a number >= 10", s)
		}
		perVariant = n
	}
	const batch = 50
	const warmup = 3 // after each switch: thread and connection warm-up

	e := newEnv(b, cPlugin, envOptions{})
	e.account(b, "bench", "10000000.00")
	vs := []*benchVariant{
		{name: "none", plugins: "", partition: "cpu-aws"},
		{name: "plugin-free", plugins: "asbb", partition: "local"},
		{name: "plugin-held", plugins: "asbb", partition: "cpu-aws"},
	}
	current := "asbb"
	setPlugins := func(p string) {
		if p == current {
			return
		}
		path := Path{Name: p, Plugins: p}
		e.cluster.use(b, path)
		current = p
	}
	submit := func(v *benchVariant) (uint32, error) {
		r := e.cluster.execFull(60*time.Second, false, "sbatch", "--parsable", "--hold", "-o", "/dev/null",
			"-A", "bench", "-p", v.partition, "--time=1", "--wrap", "true")
		if r.err != nil {
			return 0, fmt.Errorf("%v: %s", r.err, r.stderr)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 32)
		return uint32(id), err
	}

	b.ResetTimer()
	start := time.Now()
	for round := 0; vs[0].n < perVariant; round++ {
		for k := range vs {
			v := vs[(round+k)%len(vs)]
			setPlugins(v.plugins)
			for i := 0; i < warmup; i++ {
				if _, err := submit(v); err != nil {
					b.Fatalf("%s warm-up: %v", v.name, err)
				}
			}
			off := e.cluster.logSize()
			n := min(batch, perVariant-v.n)
			ids := map[uint32]bool{}
			t0 := time.Now()
			for i := 0; i < n; i++ {
				id, err := submit(v)
				if err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
				ids[id] = true
			}
			v.wall += time.Since(t0)
			v.n += n
			got := 0
			// slurmctld logs the line before it answers, but the log is
			// buffered by stdio; wait for the batch's lines.
			eventually(b, 10*time.Second, fmt.Sprintf("slurmctld's usec= for %d submissions", n), func() (bool, string) {
				found := 0
				for _, m := range submitUsecRE.FindAllStringSubmatch(e.cluster.logSince(off), -1) {
					id, _ := strconv.ParseUint(m[1], 10, 32)
					if ids[uint32(id)] {
						found++
					}
				}
				return found == n, fmt.Sprintf("%d of %d", found, n)
			})
			for _, m := range submitUsecRE.FindAllStringSubmatch(e.cluster.logSince(off), -1) {
				id, _ := strconv.ParseUint(m[1], 10, 32)
				if !ids[uint32(id)] {
					continue
				}
				us, _ := strconv.ParseFloat(m[2], 64)
				v.usec = append(v.usec, us)
				got++
			}
			if got != n {
				b.Fatalf("%s: %d usec= lines for %d submissions", v.name, got, n)
			}
		}
		// Keep the queue short: cancel the round's jobs and let jobcomp
		// release their holds before the next round.
		if out, err := e.cluster.slurm(2*time.Minute, "scancel", "--account=bench"); err != nil {
			b.Fatalf("scancel: %v\n%s", err, out)
		}
		eventually(b, 3*time.Minute, "the round's jobs gone and holds released", func() (bool, string) {
			out, err := e.cluster.slurm(30*time.Second, "squeue", "-h", "-t", "PD,R,CG", "-o", "%i")
			held := e.getAccount(b, "bench").Held
			return err == nil && strings.TrimSpace(out) == "" && held.IsZero(), "held " + held.String()
		})
	}
	b.StopTimer()

	base := vs[0]
	baseMed, baseP99 := median(base.usec), pct(base.usec, 99)
	baseRate := float64(base.n) / base.wall.Seconds()
	var report strings.Builder
	fmt.Fprintf(&report, "slurmctld _slurm_rpc_submit_batch_job usec= over %d submissions per variant (%s, %d-submission rounds, variants alternating):\n",
		perVariant, time.Since(start).Round(time.Second), batch)
	fmt.Fprintf(&report, "  %-12s %10s %10s %10s %12s %12s %12s\n", "variant", "median_us", "p99_us", "mean_us", "sbatch/s", "d_median_us", "d_p99_us")
	for _, v := range vs {
		med, p99 := median(v.usec), pct(v.usec, 99)
		rate := float64(v.n) / v.wall.Seconds()
		fmt.Fprintf(&report, "  %-12s %10.0f %10.0f %10.0f %12.1f %12.0f %12.0f\n", v.name, med, p99, mean(v.usec), rate, med-baseMed, p99-baseP99)
		b.ReportMetric(med, v.name+"-median-us")
		b.ReportMetric(p99, v.name+"-p99-us")
		b.ReportMetric(rate, v.name+"-sbatch/s")
	}
	for _, v := range vs[1:] {
		dMed, dP99 := median(v.usec)-baseMed, pct(v.usec, 99)-baseP99
		ratio := (float64(v.n) / v.wall.Seconds()) / baseRate
		fmt.Fprintf(&report, "  %s - none: median %+.0f us (target <= +1000: %s), p99 %+.0f us (target <= +5000: %s), throughput x%.2f (target >= 0.85: %s)\n",
			v.name, dMed, verdict(dMed <= 1000), dP99, verdict(dP99 <= 5000), ratio, verdict(ratio >= 0.85))
		b.ReportMetric(ratio, v.name+"-throughput-ratio")
	}
	l1, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&report, "  load average at the end: %s", l1)
	b.Log("\n" + report.String())
	fmt.Fprint(os.Stderr, report.String())
	e.verify(b)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func median(xs []float64) float64 { return pct(xs, 50) }

// pct is the p-th percentile (nearest rank).
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}
