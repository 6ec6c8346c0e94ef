// Command asbb-demo walks a small cluster's day through the real ASBB core
// against a real PostgreSQL: accounts and deposits, a rate card, a stream
// of job submissions through the admission function, and their settlement,
// printing what a user, a PI and an administrator would see. `make demo`
// runs it against a private PostgreSQL under .asbb-dev/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/shopspring/decimal"
)

const rateCard = `
[submit]
default_partition = "cpu-aws"
timeout = "5s"

[pricing.partitions.cpu-aws]
node_hour = "5.00"
max_time = "2-00:00:00"

[pricing.partitions.gpu-aws]
instance_type = "p3.2xlarge"
instance_hour = "3.06"
max_time = "1-00:00:00"
`

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "asbb-demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	l      *budget.Ledger
	suffix string
	out    *tabwriter.Writer
	jobID  uint32
}

func run(ctx context.Context) error {
	cfg, err := budget.ParseConfig(rateCard)
	if err != nil {
		return err
	}
	url := os.Getenv("ASBB_DATABASE_URL")
	if url == "" {
		return errors.New("set ASBB_DATABASE_URL (make demo does)")
	}
	cfg.Database.URL = url
	l, err := budget.Open(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Ping(ctx); err != nil {
		return err
	}
	d := &demo{l: l, jobID: uint32(time.Now().Unix() % 100000 * 10)}
	// Accounts live forever (the ledger is append-only), so a second run
	// makes a second set rather than touching the first.
	for n := 1; ; n++ {
		d.suffix = ""
		if n > 1 {
			d.suffix = fmt.Sprintf("-run%d", n)
		}
		if _, err := l.GetAccount(ctx, "", "physics"+d.suffix); errors.Is(err, budget.ErrAccountNotFound) {
			break
		} else if err != nil {
			return err
		}
	}
	return d.story(ctx)
}

func (d *demo) name(s string) string { return s + d.suffix }

func heading(s string) { fmt.Printf("\n== %s ==\n\n", s) }

func (d *demo) story(ctx context.Context) error {
	l := d.l
	heading("Rate card (asbb.toml)")
	fmt.Println("  cpu-aws : $5.00 per node-hour, worst case held x 1.2")
	fmt.Println("  gpu-aws : p3.2xlarge at $3.06 per instance-hour, worst case held x 1.2")
	fmt.Println("  local   : not priced (free)")

	heading("Accounts")
	usd := func(s string) decimal.Decimal { return decimal.RequireFromString(s) }
	perJob, perMonth := usd("40"), usd("100")
	steps := []budget.AccountSpec{
		{SlurmAccount: d.name("physics"), Name: "Physics Department", Budget: usd("2000")},
		{SlurmAccount: d.name("ml-proj"), Name: "ML Research Project", Parent: d.name("physics"), Budget: usd("500")},
		{SlurmAccount: d.name("astro"), Name: "Astro Survey", Parent: d.name("physics"), Budget: usd("150")},
	}
	for _, s := range steps {
		s.Actor = "demo"
		if _, err := l.CreateAccount(ctx, s); err != nil {
			return err
		}
	}
	if err := l.SetPartitionLimit(ctx, "", d.name("astro"), "gpu-aws", &perJob, &perMonth); err != nil {
		return err
	}
	fmt.Printf("  created %s ($2,000) with children %s ($500) and %s ($150)\n", d.name("physics"), d.name("ml-proj"), d.name("astro"))
	fmt.Printf("  %s may spend at most $40 per job and $100 per month on gpu-aws\n", d.name("astro"))
	if err := d.balances(ctx); err != nil {
		return err
	}

	heading("Submissions (what sbatch users see)")
	type sub struct {
		cmd string
		job budget.JobRequest
	}
	j := func(acct, part string, nodes, minutes uint32, array string) budget.JobRequest {
		x := budget.UnsetJob()
		x.Account, x.Partition, x.MinNodes, x.TimeLimit, x.ArrayInx, x.User = acct, part, nodes, minutes, array, "alice"
		if acct != "" {
			x.Account = d.name(acct)
		}
		return x
	}
	subs := []sub{
		{"sbatch -A ml-proj -p cpu-aws -N 2 -t 4:00:00 train.sh", j("ml-proj", "cpu-aws", 2, 240, "")},
		{"sbatch -A ml-proj -p cpu-aws -t 30 --array=1-10 sweep.sh", j("ml-proj", "cpu-aws", 1, 30, "1-10")},
		{"sbatch -A astro -p gpu-aws -t 8:00:00 reduce.sh", j("astro", "gpu-aws", 1, 480, "")},
		{"sbatch -A astro -p gpu-aws -t 16:00:00 reduce-all.sh", j("astro", "gpu-aws", 1, 960, "")},
		{"sbatch -A astro -p cpu-aws -N 4 -t 1-00:00:00 mosaic.sh", j("astro", "cpu-aws", 4, 1440, "")},
		{"sbatch -A astro -p local -t 2:00:00 plot.sh", j("astro", "local", 1, 120, "")},
		{"sbatch -p cpu-aws -t 1:00:00 forgot-account.sh", j("", "cpu-aws", 1, 60, "")},
		{"sbatch -A ml-proj -p cpu-aws --hold -t 2:00:00 later.sh", j("ml-proj", "cpu-aws", 1, 120, "")},
	}
	decisions := make([]budget.Decision, len(subs))
	for i, s := range subs {
		dec, err := l.Admit(ctx, s.job)
		if err != nil && dec.Kind != budget.KindRefused {
			return err
		}
		decisions[i] = dec
		fmt.Printf("$ %s\n", strings.ReplaceAll(strings.ReplaceAll(s.cmd, "ml-proj", d.name("ml-proj")), "astro", d.name("astro")))
		switch dec.Kind {
		case budget.KindHeld:
			fmt.Printf("  accepted: hold %d of %s (%s)\n\n", dec.HoldID, money(dec.Amount), dec.Estimate.Explanation)
		case budget.KindFree:
			fmt.Printf("  accepted: partition %s is not priced; no hold\n\n", dec.Partition)
		default:
			fmt.Printf("  sbatch: error: %s\n\n", dec.Message)
		}
	}
	if err := d.balances(ctx); err != nil {
		return err
	}

	heading("Jobs end (jobcomp settles each one)")
	now := time.Now().Unix()
	end := func(i int, e budget.JobEnd, what string) error {
		d.jobID++
		if e.JobID == 0 {
			e.JobID = d.jobID
		}
		e.AdminComment = decisions[i].AdminComment
		s, err := l.SettleJob(ctx, e)
		if err != nil {
			return err
		}
		if s.Duplicate {
			fmt.Printf("  %-52s already settled (charge %d): nothing changes\n", what, s.ChargeID)
			return nil
		}
		fmt.Printf("  %-52s charged %-9s released %s\n", what, money(s.Actual), money(s.Released))
		return nil
	}
	trainID := d.jobID + 1
	if err := end(0, budget.JobEnd{JobID: trainID, StartTime: now - 11700, EndTime: now, Nodes: 2, State: budget.JobComplete},
		"train.sh ran 3h15m on 2 nodes"); err != nil {
		return err
	}
	d.jobID++
	arrayID := d.jobID
	for task := uint32(1); task <= 10; task++ {
		mins := int64(12 + task)
		if err := end(1, budget.JobEnd{JobID: arrayID + task, ArrayJobID: arrayID, ArrayTaskID: task, StartTime: now - mins*60,
			EndTime: now, Nodes: 1, State: budget.JobComplete}, fmt.Sprintf("sweep.sh task %d ran %d min", task, mins)); err != nil {
			return err
		}
	}
	if err := end(2, budget.JobEnd{StartTime: now - 5*3600, EndTime: now, Nodes: 1, State: budget.JobComplete},
		"reduce.sh ran 5h on a p3.2xlarge"); err != nil {
		return err
	}
	if err := end(7, budget.JobEnd{StartTime: 0, EndTime: now, State: budget.JobCancelled},
		"later.sh cancelled while pending"); err != nil {
		return err
	}
	// A second report of the same job (a per-node epilog, say) is harmless.
	if err := end(0, budget.JobEnd{JobID: trainID, StartTime: now - 11700, EndTime: now, Nodes: 2, State: budget.JobComplete},
		"train.sh reported again by an epilog (no effect)"); err != nil {
		return err
	}
	if err := d.balances(ctx); err != nil {
		return err
	}

	heading(fmt.Sprintf("Ledger of %s (newest first)", d.name("ml-proj")))
	es, err := l.ListEntries(ctx, budget.EntryFilter{Account: d.name("ml-proj"), Limit: 14})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tAMOUNT\tHELD AFTER\tSPENT AFTER\tJOB\tREASON")
	for _, e := range es {
		job := "-"
		if e.JobID != nil {
			job = *e.JobID
			if e.ArrayTaskID != nil {
				job = fmt.Sprintf("%s_%d", job, *e.ArrayTaskID)
			}
		}
		reason := e.Reason
		if len(reason) > 58 {
			reason = reason[:55] + "..."
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Type, money(e.Amount), money(e.HeldAfter), money(e.SpentAfter), job, reason)
	}
	tw.Flush()

	heading("Verify")
	rep, err := l.Verify(ctx)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("ledger verification failed: %+v", rep.Problems)
	}
	fmt.Printf("  ledger OK: %d accounts, %d entries, %d holds; every account's totals equal its ledger sums\n",
		rep.Accounts, rep.Entries, rep.Holds)
	fmt.Println("\nNext: go run ./cmd/asbb-admin account list   (ASBB_DATABASE_URL is printed above)")
	return nil
}

func money(x decimal.Decimal) string { return budget.FormatMoney(x, "USD") }

func (d *demo) balances(ctx context.Context) error {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ACCOUNT\tDEPOSITED\tSPENT\tHELD\tAVAILABLE")
	for _, n := range []string{"physics", "ml-proj", "astro"} {
		a, err := d.l.GetAccount(ctx, "", d.name(n))
		if err != nil {
			return err
		}
		name := a.SlurmAccount
		if a.Parent != "" {
			name = "  " + name
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", name, money(a.Deposited), money(a.Spent), money(a.Held), money(a.Available))
	}
	return tw.Flush()
}
