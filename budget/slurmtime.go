package budget

import (
	"fmt"
	"strconv"
	"strings"
)

// Slurm's "not set" and "no limit" sentinels, as job_desc carries them.
const (
	NoVal      uint32 = 0xfffffffe
	Infinite   uint32 = 0xffffffff
	NoVal16    uint16 = 0xfffe
	NoVal64    uint64 = 0xfffffffffffffffe
	Infinite64 uint64 = 0xffffffffffffffff
	// MemPerCPU is the flag bit of pn_min_memory meaning "per CPU".
	MemPerCPU uint64 = 0x8000000000000000
)

// maxMinutes bounds a time limit: a year is far past any real MaxTime, and
// anything bigger is a mistake (or an overflow attempt).
const maxMinutes = 366 * 24 * 60

// TimeLimit is a job time limit in whole minutes as Slurm stores it
// (seconds round up). Unlimited is Slurm's INFINITE.
type TimeLimit struct {
	Minutes   uint32
	Unlimited bool
	Set       bool
}

func (t TimeLimit) String() string {
	switch {
	case !t.Set:
		return "unset"
	case t.Unlimited:
		return "UNLIMITED"
	}
	d, h, m := t.Minutes/1440, (t.Minutes%1440)/60, t.Minutes%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:00", d, h, m)
	}
	return fmt.Sprintf("%02d:%02d:00", h, m)
}

// TimeLimitFromSlurm interprets job_desc.time_limit (minutes, NO_VAL,
// INFINITE).
func TimeLimitFromSlurm(v uint32) TimeLimit {
	switch v {
	case NoVal:
		return TimeLimit{}
	case Infinite:
		return TimeLimit{Unlimited: true, Set: true}
	}
	return TimeLimit{Minutes: v, Set: true}
}

// ParseTimeLimit parses every form sbatch --time accepts: "MM", "MM:SS",
// "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", and "UNLIMITED"/"INFINITE"
// (also "-1"). Seconds round up to the next minute, as Slurm does.
func ParseTimeLimit(s string) (TimeLimit, error) {
	t := strings.TrimSpace(s)
	switch strings.ToUpper(t) {
	case "UNLIMITED", "INFINITE", "-1":
		return TimeLimit{Unlimited: true, Set: true}, nil
	case "":
		return TimeLimit{}, fmt.Errorf("%w: time limit is empty", ErrInvalid)
	}
	bad := func(why string) (TimeLimit, error) {
		return TimeLimit{}, fmt.Errorf("%w: time limit %q %s; use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS", ErrInvalid, s, why)
	}
	var days, hours, mins, secs uint64
	rest := t
	hasDays := false
	if d, r, ok := strings.Cut(t, "-"); ok {
		n, err := parseField(d)
		if err != nil {
			return bad("has a bad day count")
		}
		days, rest, hasDays = n, r, true
	}
	parts := strings.Split(rest, ":")
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := parseField(p)
		if err != nil {
			return bad("has a bad field")
		}
		nums[i] = n
	}
	switch {
	case hasDays && len(nums) == 1:
		hours = nums[0]
	case hasDays && len(nums) == 2:
		hours, mins = nums[0], nums[1]
	case hasDays && len(nums) == 3:
		hours, mins, secs = nums[0], nums[1], nums[2]
	case len(nums) == 1:
		mins = nums[0]
	case len(nums) == 2:
		mins, secs = nums[0], nums[1]
	case len(nums) == 3:
		hours, mins, secs = nums[0], nums[1], nums[2]
	default:
		return bad("has too many fields")
	}
	if days > maxMinutes || hours > maxMinutes || mins > maxMinutes || secs > 60*maxMinutes {
		return bad("is too long")
	}
	total := days*1440 + hours*60 + mins + (secs+59)/60
	if total > maxMinutes {
		return bad("is longer than a year")
	}
	if total == 0 {
		return bad("is zero")
	}
	return TimeLimit{Minutes: uint32(total), Set: true}, nil
}

func parseField(p string) (uint64, error) {
	if p == "" || len(p) > 9 {
		return 0, fmt.Errorf("bad field")
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad field")
		}
	}
	return strconv.ParseUint(p, 10, 64)
}
