package main

import (
	"context"
	"fmt"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/budget/spool"
)

func init() {
	register(command{name: "spool list", summary: "list settlement records waiting in the spool", run: runSpoolList})
	register(command{name: "spool replay", summary: "settle the spooled records (safe beside asbb-service's replayer)", run: runSpoolReplay})
}

// spoolDir is --dir or epilog.spool_dir.
func (e *env) spoolDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	cfg, err := e.config()
	if err != nil {
		return "", err
	}
	return cfg.Epilog.SpoolDir, nil
}

func runSpoolList(ctx context.Context, e *env, args []string) error {
	fs := e.flags("spool list")
	dir := fs.String("dir", "", "spool directory (default epilog.spool_dir)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	d, err := e.spoolDir(*dir)
	if err != nil {
		return err
	}
	entries, err := spool.New(d, nil).List()
	if err != nil {
		return err
	}
	if *asJSON {
		if entries == nil {
			entries = []spool.Entry{}
		}
		return e.printJSON(entries)
	}
	tw := e.table("RECORD", "SPOOLED", "STATE")
	for _, en := range entries {
		state := "waiting"
		if en.Claimed {
			state = "being replayed"
		}
		row(tw, en.Name, en.ModTime.Format("2006-01-02 15:04:05"), state)
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d record(s) in %s\n", len(entries), d)
	return nil
}

func runSpoolReplay(ctx context.Context, e *env, args []string) error {
	fs := e.flags("spool replay")
	dir := fs.String("dir", "", "spool directory (default epilog.spool_dir)")
	asJSON := fs.Bool("json", false, "print JSON")
	if done, err := e.parse(fs, args); done || err != nil {
		return err
	}
	d, err := e.spoolDir(*dir)
	if err != nil {
		return err
	}
	l, err := e.open(ctx)
	if err != nil {
		return err
	}
	who := actor()
	rep, err := spool.New(d, l.Logger()).Replay(ctx, func(ctx context.Context, end budget.JobEnd) error {
		if end.Actor == "" {
			end.Actor = who
		}
		_, err := l.SettleJob(ctx, end)
		return err
	})
	if *asJSON {
		if perr := e.printJSON(rep); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintf(e.stdout, "posted %d, failed %d (left in the spool), quarantined %d, skipped %d (another replayer has them)\n",
			rep.Posted, rep.Failed, rep.Quarantined, rep.Skipped)
		for _, m := range rep.Errors {
			fmt.Fprintf(e.stderr, "  %s\n", m)
		}
	}
	if err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d record(s) could not be settled", rep.Failed)
	}
	return nil
}
