package budget

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/shopspring/decimal"
)

// DefaultConfigPath is where binaries look for the config without ASBB_CONFIG.
const DefaultConfigPath = "/etc/asbb/asbb.toml"

// Config is the whole of asbb.toml. Every key is documented, with its
// default, in etc/asbb.toml.example.
type Config struct {
	Database    DatabaseConfig    `toml:"database"`
	Log         LogConfig         `toml:"log"`
	Cluster     ClusterConfig     `toml:"cluster"`
	Submit      SubmitConfig      `toml:"submit"`
	Accounts    AccountsConfig    `toml:"accounts"`
	Pricing     PricingConfig     `toml:"pricing"`
	Recovery    RecoveryConfig    `toml:"recovery"`
	Slurm       SlurmConfig       `toml:"slurm"`
	Epilog      EpilogConfig      `toml:"epilog"`
	Service     ServiceConfig     `toml:"service"`
	Allocations AllocationsConfig `toml:"allocations"`
	Alerts      AlertsConfig      `toml:"alerts"`

	// Path is the file the config was read from ("" for defaults only).
	Path string `toml:"-"`
}

type DatabaseConfig struct {
	URL            string   `toml:"url"`
	MaxConns       int32    `toml:"max_conns"`
	ConnectTimeout Duration `toml:"connect_timeout"`
}

type LogConfig struct {
	File  string `toml:"file"`
	Level string `toml:"level"`
}

type ClusterConfig struct {
	// Name scopes accounts; "*" means accounts are shared by all clusters.
	Name string `toml:"name"`
}

type SubmitConfig struct {
	Timeout          Duration                   `toml:"timeout"`
	Enforce          bool                       `toml:"enforce"`
	OnDBError        string                     `toml:"on_db_error"`
	HoldMultiplier   Money                      `toml:"hold_multiplier"`
	DefaultPartition string                     `toml:"default_partition"`
	Partitions       map[string]SubmitOverrides `toml:"partitions"`
}

// SubmitOverrides lets a partition differ from the global submit policy.
type SubmitOverrides struct {
	Enforce   *bool  `toml:"enforce"`
	OnDBError string `toml:"on_db_error"`
}

type AccountsConfig struct {
	// Default is charged for jobs submitted without --account; "" refuses them.
	Default string `toml:"default"`
}

type PricingConfig struct {
	Currency     string                   `toml:"currency"`
	RequirePrice bool                     `toml:"require_price"`
	ChargeScale  int32                    `toml:"charge_scale"`
	Timezone     string                   `toml:"timezone"`
	Partitions   map[string]PartitionRate `toml:"partitions"`
}

// PartitionRate prices one partition. Any combination of the per-resource
// rates adds up; InstanceHour prices a node-hour of an AWS instance type.
type PartitionRate struct {
	NodeHour     Money  `toml:"node_hour"`
	CPUHour      Money  `toml:"cpu_hour"`
	GPUHour      Money  `toml:"gpu_hour"`
	MemGBHour    Money  `toml:"mem_gb_hour"`
	InstanceType string `toml:"instance_type"`
	InstanceHour Money  `toml:"instance_hour"`
	MinCharge    Money  `toml:"min_charge"`
	DefaultTime  string `toml:"default_time"`
	MaxTime      string `toml:"max_time"`
	CPUsPerNode  uint32 `toml:"cpus_per_node"`
}

type RecoveryConfig struct {
	ReconciliationTimeout Duration `toml:"reconciliation_timeout"`
	Interval              Duration `toml:"interval"`
	MinHoldAge            Duration `toml:"min_hold_age"`
}

type SlurmConfig struct {
	BinDir string `toml:"bin_dir"`
	Conf   string `toml:"conf"`
	// Timeout bounds every squeue/scontrol run (recovery, binder, epilog).
	Timeout Duration `toml:"timeout"`
	// BindInterval is how often libasbb.so's binder (inside slurmctld)
	// binds new holds to their job ids; 0 disables it.
	BindInterval Duration `toml:"bind_interval"`
	// BindWindow is how far back the binder looks for unbound holds.
	BindWindow Duration `toml:"bind_window"`
	// SettleTimeout bounds asbb_settle (jobcomp/lua inside slurmctld).
	SettleTimeout Duration `toml:"settle_timeout"`
}

type EpilogConfig struct {
	SpoolDir   string   `toml:"spool_dir"`
	ServiceURL string   `toml:"service_url"`
	Token      string   `toml:"token"`
	Timeout    Duration `toml:"timeout"`
}

type ServiceConfig struct {
	ListenAddr      string   `toml:"listen_addr"`
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`
	MetricsAuth     bool     `toml:"metrics_auth"`
	MaxBodyBytes    int64    `toml:"max_body_bytes"`
	ASBXSpoolDir    string   `toml:"asbx_spool_dir"`
	ASBXInterval    Duration `toml:"asbx_interval"`
	SpoolInterval   Duration `toml:"spool_interval"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// TokenCacheTTL is how long a verified bearer token is trusted without
	// asking the database again (so a revocation takes effect within it).
	TokenCacheTTL Duration `toml:"token_cache_ttl"`
}

type AllocationsConfig struct {
	AutoProcess     bool     `toml:"auto_process"`
	ProcessInterval Duration `toml:"process_interval"`
	// Timezone is the calendar of schedules and grant periods ("" =
	// pricing.timezone). Each schedule and grant records the zone it was
	// created in, so changing this later does not move existing dates.
	Timezone string `toml:"timezone"`
}

type AlertsConfig struct {
	Interval        Duration `toml:"interval"`
	Thresholds      []int    `toml:"thresholds"`
	VariancePercent int      `toml:"variance_percent"`
	WebhookURL      string   `toml:"webhook_url"`
	// Window is the burn-rate window alerts and health scores use ("30d").
	Window string `toml:"window"`
	// Rules lists the alert rules evaluated (all of AlertRules by default).
	Rules []string `toml:"rules"`
	// OverrunLookback is how long an overrun charge keeps its alert open.
	OverrunLookback Duration `toml:"overrun_lookback"`
	// WebhookTimeout bounds one webhook delivery, retries included.
	WebhookTimeout Duration `toml:"webhook_timeout"`
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() *Config {
	return &Config{
		Database: DatabaseConfig{
			URL:            "postgres:///asbb?host=/var/run/postgresql",
			MaxConns:       8,
			ConnectTimeout: Duration{2 * time.Second},
		},
		Log:     LogConfig{Level: "info"},
		Cluster: ClusterConfig{Name: "*"},
		Submit: SubmitConfig{
			Timeout:        Duration{300 * time.Millisecond},
			Enforce:        true,
			OnDBError:      "reject",
			HoldMultiplier: Money{decimal.RequireFromString("1.2")},
		},
		Pricing: PricingConfig{Currency: "USD", ChargeScale: 2, Timezone: "UTC"},
		Recovery: RecoveryConfig{
			ReconciliationTimeout: Duration{7 * 24 * time.Hour},
			Interval:              Duration{5 * time.Minute},
			MinHoldAge:            Duration{2 * time.Minute},
		},
		Slurm: SlurmConfig{BinDir: "/usr/bin", Timeout: Duration{10 * time.Second}, BindInterval: Duration{2 * time.Second},
			BindWindow: Duration{10 * time.Minute}, SettleTimeout: Duration{5 * time.Second}},
		Epilog: EpilogConfig{SpoolDir: "/var/spool/asbb/settle", Timeout: Duration{10 * time.Second}},
		Service: ServiceConfig{
			ListenAddr:      "127.0.0.1:8080",
			MaxBodyBytes:    1 << 20,
			ASBXSpoolDir:    "/var/spool/asbb/costs",
			ASBXInterval:    Duration{time.Minute},
			SpoolInterval:   Duration{time.Minute},
			ShutdownTimeout: Duration{15 * time.Second},
			TokenCacheTTL:   Duration{5 * time.Second},
		},
		Allocations: AllocationsConfig{ProcessInterval: Duration{time.Hour}},
		Alerts: AlertsConfig{Interval: Duration{5 * time.Minute}, Thresholds: []int{50, 75, 90, 100}, VariancePercent: 25,
			Window: "30d", OverrunLookback: Duration{7 * 24 * time.Hour}, WebhookTimeout: Duration{10 * time.Second}},
	}
}

// LoadConfig reads the config file named by path, or by ASBB_CONFIG, or
// DefaultConfigPath. A missing file is an error only when it was named
// explicitly; otherwise defaults apply (so ASBB_DATABASE_URL alone is
// enough to run). ASBB_DATABASE_URL always overrides database.url.
func LoadConfig(path string) (*Config, error) {
	explicit := path != ""
	if path == "" {
		if p := os.Getenv("ASBB_CONFIG"); p != "" {
			path, explicit = p, true
		} else {
			path = DefaultConfigPath
		}
	}
	cfg := DefaultConfig()
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := cfg.parse(string(data)); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		cfg.Path = path
	case errors.Is(err, os.ErrNotExist) && !explicit:
	default:
		return nil, fmt.Errorf("read config: %w", err)
	}
	if u := os.Getenv("ASBB_DATABASE_URL"); u != "" {
		cfg.Database.URL = u
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.describePath(), err)
	}
	return cfg, nil
}

// ParseConfig parses TOML text over the defaults and validates it.
func ParseConfig(text string) (*Config, error) {
	cfg := DefaultConfig()
	if err := cfg.parse(text); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) describePath() string {
	if c.Path == "" {
		return "(defaults)"
	}
	return c.Path
}

func (c *Config) parse(text string) error {
	md, err := toml.Decode(text, c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%s", perr.ErrorWithPosition())
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return nil
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	if c.Database.URL == "" {
		return errors.New("database.url: must be set (or set ASBB_DATABASE_URL)")
	}
	if c.Database.MaxConns < 1 || c.Database.MaxConns > 1000 {
		return fmt.Errorf("database.max_conns: %d is outside 1..1000", c.Database.MaxConns)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Submit.Timeout.Duration <= 0 || c.Submit.Timeout.Duration > 10*time.Second {
		return fmt.Errorf("submit.timeout: %s is outside (0, 10s]", c.Submit.Timeout)
	}
	if err := checkPolicy("submit.on_db_error", c.Submit.OnDBError); err != nil {
		return err
	}
	hm := c.Submit.HoldMultiplier.Decimal
	if hm.LessThan(decimal.NewFromInt(1)) || hm.GreaterThan(decimal.NewFromInt(10)) {
		return fmt.Errorf("submit.hold_multiplier: %s is outside [1, 10]", hm)
	}
	for name, o := range c.Submit.Partitions {
		if o.OnDBError != "" {
			if err := checkPolicy("submit.partitions."+name+".on_db_error", o.OnDBError); err != nil {
				return err
			}
		}
	}
	if len(c.Pricing.Currency) != 3 || strings.ToUpper(c.Pricing.Currency) != c.Pricing.Currency {
		return fmt.Errorf("pricing.currency: %q is not an ISO 4217 code such as USD", c.Pricing.Currency)
	}
	if c.Pricing.ChargeScale < 0 || c.Pricing.ChargeScale > Scale {
		return fmt.Errorf("pricing.charge_scale: %d is outside 0..%d", c.Pricing.ChargeScale, Scale)
	}
	if _, err := time.LoadLocation(c.Pricing.Timezone); err != nil {
		return fmt.Errorf("pricing.timezone: %q: %v", c.Pricing.Timezone, err)
	}
	if c.Allocations.Timezone != "" {
		if _, err := time.LoadLocation(c.Allocations.Timezone); err != nil {
			return fmt.Errorf("allocations.timezone: %q: %v", c.Allocations.Timezone, err)
		}
	}
	if c.Allocations.AutoProcess && c.Allocations.ProcessInterval.Duration < time.Second {
		return fmt.Errorf("allocations.process_interval: %s is shorter than a second", c.Allocations.ProcessInterval)
	}
	for name, r := range c.Pricing.Partitions {
		if err := r.validate("pricing.partitions." + name); err != nil {
			return err
		}
	}
	if c.Slurm.Timeout.Duration <= 0 || c.Slurm.Timeout.Duration > 5*time.Minute {
		return fmt.Errorf("slurm.timeout: %s is outside (0, 5m]", c.Slurm.Timeout)
	}
	if c.Slurm.SettleTimeout.Duration <= 0 || c.Slurm.SettleTimeout.Duration > time.Minute {
		return fmt.Errorf("slurm.settle_timeout: %s is outside (0, 1m]", c.Slurm.SettleTimeout)
	}
	if b := c.Slurm.BindInterval.Duration; b != 0 && b < 100*time.Millisecond {
		return fmt.Errorf("slurm.bind_interval: %s is shorter than 100ms (0 disables the binder)", b)
	}
	if err := c.Alerts.validate(); err != nil {
		return err
	}
	if c.Recovery.ReconciliationTimeout.Duration < time.Minute {
		return fmt.Errorf("recovery.reconciliation_timeout: %s is shorter than a minute", c.Recovery.ReconciliationTimeout)
	}
	return nil
}

func checkPolicy(key, v string) error {
	if v != "reject" && v != "accept" {
		return fmt.Errorf("%s: %q is not \"reject\" or \"accept\"", key, v)
	}
	return nil
}

func (r PartitionRate) validate(key string) error {
	rates := map[string]Money{"node_hour": r.NodeHour, "cpu_hour": r.CPUHour, "gpu_hour": r.GPUHour,
		"mem_gb_hour": r.MemGBHour, "instance_hour": r.InstanceHour, "min_charge": r.MinCharge}
	any := false
	for k, m := range rates {
		if m.IsNegative() {
			return fmt.Errorf("%s.%s: %s must not be negative", key, k, m)
		}
		if err := checkRange(m.Decimal); err != nil {
			return fmt.Errorf("%s.%s: %w", key, k, err)
		}
		if k != "min_charge" && m.IsPositive() {
			any = true
		}
	}
	if !any {
		return fmt.Errorf("%s: set at least one of node_hour, cpu_hour, gpu_hour, mem_gb_hour, instance_hour", key)
	}
	if r.InstanceType != "" && !r.InstanceHour.IsPositive() {
		return fmt.Errorf("%s.instance_hour: instance_type %q needs its $/hour", key, r.InstanceType)
	}
	for k, v := range map[string]string{"default_time": r.DefaultTime, "max_time": r.MaxTime} {
		if v == "" {
			continue
		}
		if _, err := ParseTimeLimit(v); err != nil {
			return fmt.Errorf("%s.%s: %w", key, k, err)
		}
	}
	return nil
}

// RateVersion is a short hash of the rate card; every hold records the
// version it was priced with.
func (c *Config) RateVersion() string {
	h := sha256.New()
	names := make([]string, 0, len(c.Pricing.Partitions))
	for n := range c.Pricing.Partitions {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(h, "%s;%s;", c.Pricing.Currency, c.Submit.HoldMultiplier)
	for _, n := range names {
		r := c.Pricing.Partitions[n]
		fmt.Fprintf(h, "%s:%s,%s,%s,%s,%s,%s,%s,%s,%s,%d;", n, r.NodeHour, r.CPUHour, r.GPUHour, r.MemGBHour,
			r.InstanceType, r.InstanceHour, r.MinCharge, r.DefaultTime, r.MaxTime, r.CPUsPerNode)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Location is the configured time zone for calendar months.
// It is asked for on every hold (the partition-usage month), so zones are
// loaded once: time.LoadLocation reads the zone file each time.
func (c *Config) Location() *time.Location {
	name := c.Pricing.Timezone
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	locations.Store(name, loc)
	return loc
}

// locations caches loaded time zones by name.
var locations sync.Map

// AllocationTimezone is the zone name for new schedules and grants.
func (c *Config) AllocationTimezone() string {
	if c.Allocations.Timezone != "" {
		return c.Allocations.Timezone
	}
	return c.Pricing.Timezone
}

// Duration is a time.Duration written as "300ms" or "2h" in TOML.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"300ms\" or \"2h\"", b)
	}
	if v < 0 {
		return fmt.Errorf("%q must not be negative", b)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Money is a decimal in TOML, written as a string ("5.00") or an integer.
// TOML floats are refused: they would pass through float64.
type Money struct{ decimal.Decimal }

func (m *Money) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		d, err := ParseNonNegative(x)
		if err != nil {
			return err
		}
		m.Decimal = d
	case int64:
		m.Decimal = decimal.NewFromInt(x)
	case float64:
		return fmt.Errorf("write money as a string such as \"%v\": TOML floats are inexact", x)
	default:
		return fmt.Errorf("%v is not an amount", v)
	}
	return nil
}

func (m Money) MarshalText() ([]byte, error) { return []byte(m.Decimal.String()), nil }

// ConfigKeys lists every key of the config file as "name" (the last path
// element), for the test that proves etc/asbb.toml.example documents each.
func ConfigKeys() []string {
	var keys []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("toml")
			if tag == "" || tag == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) && ft != reflect.TypeOf(Money{}) {
				walk(ft)
				continue
			}
			if ft.Kind() == reflect.Map {
				continue // per-partition tables are documented as examples
			}
			keys = append(keys, tag)
		}
	}
	walk(reflect.TypeOf(Config{}))
	return keys
}
