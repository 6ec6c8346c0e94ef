package budget_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/asbb/asbb/budget"
	"github.com/asbb/asbb/etc"
)

func TestParseTimeLimitAcceptsEverySlurmForm(t *testing.T) {
	cases := map[string]uint32{
		"90":          90,
		"5:30":        6, // seconds round up
		"5:00":        5,
		"01:30:00":    90,
		"1:00:01":     61,
		"2-12":        2*1440 + 12*60,
		"2-12:30":     2*1440 + 12*60 + 30,
		"2-12:30:15":  2*1440 + 12*60 + 31,
		"0-00:01":     1,
		" 10 ":        10,
		"365-00:00:0": 365 * 1440,
	}
	for in, want := range cases {
		got, err := budget.ParseTimeLimit(in)
		if err != nil || !got.Set || got.Unlimited || got.Minutes != want {
			t.Errorf("ParseTimeLimit(%q) = %+v, %v; want %d minutes", in, got, err, want)
		}
	}
	for _, in := range []string{"UNLIMITED", "infinite", "-1"} {
		got, err := budget.ParseTimeLimit(in)
		if err != nil || !got.Unlimited {
			t.Errorf("ParseTimeLimit(%q) = %+v, %v; want unlimited", in, got, err)
		}
	}
	for _, in := range []string{"", "abc", "1:2:3:4", "-5", "1-", "-1-2", "1--2", "1-2-3", "1:-2", "0", "0:00",
		"1.5", "1e3", "999999999999", "400-00:00:00", "1-2:3:4:5", "١٢", "12h", "1:60:00x", "; DROP TABLE"} {
		if got, err := budget.ParseTimeLimit(in); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("ParseTimeLimit(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	if got := budget.TimeLimitFromSlurm(budget.NoVal); got.Set {
		t.Errorf("NO_VAL is set: %+v", got)
	}
	if got := budget.TimeLimitFromSlurm(budget.Infinite); !got.Unlimited {
		t.Errorf("INFINITE is limited: %+v", got)
	}
}

func TestParseAmount(t *testing.T) {
	good := map[string]string{"5": "5", "5.25": "5.25", "$1000": "1000", "0.000001": "0.000001", " 12.5 ": "12.5", "9999999999999.999999": "9999999999999.999999"}
	for in, want := range good {
		got, err := budget.ParseAmount(in)
		if err != nil || !got.Equal(dec(want)) {
			t.Errorf("ParseAmount(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "-0.5", "NaN", "nan", "Inf", "+Inf", "1e3", "0x10", "1,000", "1.2.3",
		"0.0000001", "10000000000000", "1e400", ".", "$", "12abc", "१२", "1 000"} {
		if got, err := budget.ParseAmount(in); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("ParseAmount(%q) = %s, %v; want ErrInvalid", in, got, err)
		}
	}
	if d, err := budget.ParseNonNegative("0"); err != nil || !d.IsZero() {
		t.Errorf("ParseNonNegative(0) = %s, %v", d, err)
	}
}

func TestFormatMoney(t *testing.T) {
	cases := map[string]string{"0": "$0.00", "1234567.5": "$1,234,567.50", "-12.4": "-$12.40", "0.125": "$0.125", "100": "$100.00"}
	for in, want := range cases {
		if got := budget.FormatMoney(dec(in), "USD"); got != want {
			t.Errorf("FormatMoney(%s) = %q, want %q", in, got, want)
		}
	}
	if got := budget.FormatMoney(dec("5"), "EUR"); got != "5.00 EUR" {
		t.Errorf("EUR: %q", got)
	}
}

func TestArrayTasks(t *testing.T) {
	cases := map[string]uint32{"": 1, "1-100%10": 100, "0-9": 10, "1,3,5": 3, "1-10:2": 5, "1-5,3-7": 7, "7": 1, "0-3999999": 4000000}
	for in, want := range cases {
		if got, err := budget.ArrayTasks(in); err != nil || got != want {
			t.Errorf("ArrayTasks(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"1-x", "5-1", "1-10:0", "1-10%x", "a", "-", "0-4000001", "1,,2"} {
		if _, err := budget.ArrayTasks(in); !errors.Is(err, budget.ErrInvalid) {
			t.Errorf("ArrayTasks(%q): %v, want ErrInvalid", in, err)
		}
	}
}

func TestPricing(t *testing.T) {
	cfg, err := budget.ParseConfig(`
[pricing.partitions.node]
node_hour = "5.00"
max_time = "1-00:00:00"
[pricing.partitions.mix]
cpu_hour = "0.05"
gpu_hour = "2.50"
mem_gb_hour = "0.01"
min_charge = "1"
default_time = "2:00:00"
[pricing.partitions.aws]
instance_type = "p3.2xlarge"
instance_hour = "3.06"
`)
	if err != nil {
		t.Fatal(err)
	}
	j := func(f func(*budget.JobRequest)) budget.JobRequest {
		x := budget.UnsetJob()
		f(&x)
		return x
	}
	cases := []struct {
		name, partition string
		job             budget.JobRequest
		total           string
	}{
		{"2 nodes 4h", "node", j(func(x *budget.JobRequest) { x.MinNodes, x.TimeLimit = 2, 240 }), "48"},
		{"unlimited prices max_time", "node", j(func(x *budget.JobRequest) { x.TimeLimit = budget.Infinite }), "144"},
		{"longer than max_time is capped", "node", j(func(x *budget.JobRequest) { x.TimeLimit = 10000 }), "144"},
		{"unset time uses max_time", "node", j(func(x *budget.JobRequest) {}), "144"},
		{"cpus gpus mem, default time", "mix", j(func(x *budget.JobRequest) {
			x.NumTasks, x.CPUsPerTask, x.TresPerNode, x.PnMinMemory = 4, 2, "gres:gpu:2", 16384
		}), "13.344"}, // (8x0.05 + 2x2.50 + 16x0.01) x 2 h x 1.2 = 5.56 x 2.4
		{"mem per cpu", "mix", j(func(x *budget.JobRequest) {
			x.MinCPUs, x.PnMinMemory, x.TimeLimit = 4, 1024|budget.MemPerCPU, 60
		}), "1.2"}, // (4x0.05 + 4x0.01) = 0.24 < min 1 -> 1 x 1.2
		{"aws instance", "aws", j(func(x *budget.JobRequest) { x.MinNodes, x.TimeLimit = 3, 30 }), "5.508"},
		{"array", "node", j(func(x *budget.JobRequest) { x.TimeLimit, x.ArrayInx = 60, "1-10%2" }), "60"},
	}
	for _, c := range cases {
		est, priced, err := cfg.Price(c.job, c.partition)
		if err != nil || !priced || !est.Total.Equal(dec(c.total)) {
			t.Errorf("%s: total %s (%s) priced=%v err=%v, want %s", c.name, est.Total, est.Explanation, priced, err, c.total)
		}
	}
	if _, priced, err := cfg.Price(budget.UnsetJob(), "free"); priced || err != nil {
		t.Errorf("unpriced partition: priced=%v err=%v", priced, err)
	}
	est, _, _ := cfg.Price(cases[0].job, "node")
	if !strings.Contains(est.Explanation, "2 nodes x $5.00/node-hour x 4 h x 1.2") {
		t.Errorf("explanation %q", est.Explanation)
	}
	if est.RateVersion == "" || est.RateVersion != cfg.RateVersion() {
		t.Errorf("rate version %q", est.RateVersion)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"[submit]\ntimeout = \"fast\"":                                      "timeout",
		"[submit]\non_db_error = \"maybe\"":                                 "submit.on_db_error",
		"[submit]\nhold_multiplier = \"0.5\"":                               "submit.hold_multiplier",
		"[pricing.partitions.x]\nnode_hour = 5.5":                           "node_hour",
		"[pricing.partitions.x]\nnode_hour = \"-1\"":                        "node_hour",
		"[pricing.partitions.x]\nmin_charge = \"1\"":                        "pricing.partitions.x",
		"[pricing.partitions.x]\nnode_hour = \"1\"\nmax_time = \"1:2:3:4\"": "pricing.partitions.x.max_time",
		"[pricing]\ncurrency = \"dollars\"":                                 "pricing.currency",
		"[pricing]\ntimezone = \"Mars/Olympus\"":                            "pricing.timezone",
		"[database]\nmax_conns = 0":                                         "database.max_conns",
		"[sbumit]\ntimeout = \"1s\"":                                        "sbumit",
		"[log]\nlevel = \"loud\"":                                           "log.level",
	}
	for text, key := range cases {
		_, err := budget.ParseConfig(text)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("config %q: error %v does not name %q", text, err, key)
		}
	}
}

func TestExampleConfigIsValidAndDocumentsEveryKey(t *testing.T) {
	cfg, err := budget.ParseConfig(etc.Example)
	if err != nil {
		t.Fatalf("etc/asbb.toml.example: %v", err)
	}
	def := budget.DefaultConfig()
	if cfg.Submit.Timeout != def.Submit.Timeout || cfg.Database.URL != def.Database.URL {
		t.Fatalf("the example's values differ from the defaults")
	}
	for _, key := range budget.ConfigKeys() {
		if !strings.Contains(etc.Example, "\n"+key+" =") && !strings.Contains(etc.Example, "# "+key+" =") {
			t.Errorf("etc/asbb.toml.example does not document %q", key)
		}
	}
}

func TestLoadConfigUsesEnvironment(t *testing.T) {
	t.Setenv("ASBB_CONFIG", "")
	t.Setenv("ASBB_DATABASE_URL", "postgres://example/asbb")
	cfg, err := budget.LoadConfig(t.TempDir() + "/absent-but-default.toml")
	if err == nil {
		t.Fatalf("a named missing file must be an error, got %+v", cfg.Database)
	}
	t.Setenv("ASBB_CONFIG", "")
	cfg, err = budget.LoadConfig("")
	if err != nil || cfg.Database.URL != "postgres://example/asbb" {
		t.Fatalf("env override: %v %+v", err, cfg)
	}
}

func FuzzParseTimeLimit(f *testing.F) {
	for _, s := range []string{"90", "5:30", "1-2:3:4", "UNLIMITED", "", "-", "1-", "99999999:99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tl, err := budget.ParseTimeLimit(s)
		if err != nil {
			if !errors.Is(err, budget.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !tl.Unlimited && (tl.Minutes == 0 || tl.Minutes > 366*24*60) {
			t.Fatalf("%q parsed to %d minutes", s, tl.Minutes)
		}
	})
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"5", "0.01", "-1", "NaN", "1e9", "$5", "9999999999999.999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := budget.ParseAmount(s)
		if err != nil {
			if !errors.Is(err, budget.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !d.IsPositive() || budget.CheckAmount(d) != nil {
			t.Fatalf("%q parsed to %s, which CheckAmount refuses", s, d)
		}
	})
}
