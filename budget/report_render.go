package budget

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Report formats: the same GrantReport as JSON (exact decimal strings),
// CSV (one table with a section column, for spreadsheets) and a
// self-contained HTML page (inline CSS and an inline SVG burn-down chart,
// no scripts, nothing fetched), to print or attach to a filing.

// WriteJSON writes the report as indented JSON.
func (r GrantReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteCSV writes the report as CSV rows: section, key, direct, indirect,
// total, jobs. Sections: balance, cost, account, user, partition, month,
// hold.
func (r GrantReport) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	s := func(d decimal.Decimal) string { return d.String() }
	rec := [][]string{{"section", "key", "direct", "indirect", "total", "jobs"},
		{"report", r.Grant.Number + " " + r.PeriodName + " " + r.StartDate + ".." + r.EndDate, "", "", "", ""}}
	b := r.Balances
	for _, x := range []struct {
		k string
		v decimal.Decimal
	}{{"budget", b.Budget}, {"carried_in", b.CarriedIn}, {"beginning", b.Beginning}, {"spent", b.Spent},
		{"held", b.Held}, {"carried_out", b.CarriedOut}, {"lapsed", b.Lapsed}, {"ending", b.Ending}} {
		rec = append(rec, []string{"balance", x.k, "", "", s(x.v), ""})
	}
	rec = append(rec, []string{"cost", "total", s(r.Direct), s(r.Indirect), s(r.Total), fmt.Sprint(r.Jobs)})
	for _, sec := range []struct {
		name string
		rows []UsageRow
	}{{"account", r.ByAccount}, {"user", r.ByUser}, {"partition", r.ByPartition}, {"month", r.ByMonth}} {
		for _, x := range sec.rows {
			rec = append(rec, []string{sec.name, x.Key, s(x.Direct), s(x.Indirect), s(x.Total), fmt.Sprint(x.Jobs)})
		}
	}
	for _, h := range r.Holds {
		job := ""
		if h.JobID != nil {
			job = " job " + *h.JobID
		}
		rec = append(rec, []string{"hold", fmt.Sprintf("%d %s %s%s", h.HoldID, h.Account, h.User, job), s(h.Direct),
			s(h.Total.Sub(h.Direct)), s(h.Total), ""})
	}
	if err := cw.WriteAll(rec); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// chart is the burn-down drawn as SVG paths, in pixel coordinates.
type chart struct {
	Width, Height        int
	Actual, Plan         string // path data
	Top, Bottom          string // y-axis labels
	First, Last          string // x-axis labels
	ZeroY                string
	Left, Right, Base    int
	LegendActual, Legend string
}

// burnDownChart scales the report's series into an SVG: x over the days of
// the period, y from the lowest point (or 0) up to the beginning balance.
// Coordinates are computed in decimal and printed with one decimal place.
func (r GrantReport) burnDownChart() chart {
	c := chart{Width: 760, Height: 300, Left: 70, Right: 740, Base: 260}
	top := decimal.NewFromInt(20)
	plotW := decimal.NewFromInt(int64(c.Right - c.Left))
	plotH := decimal.NewFromInt(int64(c.Base)).Sub(top)
	hi := r.Balances.Beginning
	lo := decimal.Zero
	for _, p := range r.BurnDown {
		lo = decimal.Min(lo, p.Remaining)
		hi = decimal.Max(hi, p.Remaining)
	}
	if !hi.GreaterThan(lo) {
		hi = lo.Add(one)
	}
	start, _ := time.Parse(time.DateOnly, r.StartDate)
	end, _ := time.Parse(time.DateOnly, r.EndDate)
	days := decimal.NewFromInt(int64(end.Sub(start).Hours()/24) + 1)
	x := func(day decimal.Decimal) string {
		return decimal.NewFromInt(int64(c.Left)).Add(plotW.Mul(day).DivRound(days, 4)).StringFixed(1)
	}
	y := func(v decimal.Decimal) string {
		return top.Add(plotH.Mul(hi.Sub(v)).DivRound(hi.Sub(lo), 4)).StringFixed(1)
	}
	var a strings.Builder
	fmt.Fprintf(&a, "M%s %s", x(decimal.Zero), y(r.Balances.Beginning))
	for i, p := range r.BurnDown {
		fmt.Fprintf(&a, " L%s %s", x(decimal.NewFromInt(int64(i+1))), y(p.Remaining))
	}
	c.Actual = a.String()
	c.Plan = fmt.Sprintf("M%s %s L%s %s", x(decimal.Zero), y(r.Balances.Beginning), x(days), y(decimal.Zero))
	c.ZeroY = y(decimal.Zero)
	c.Top = FormatMoney(hi.Round(2), r.Currency)
	c.Bottom = FormatMoney(lo.Round(2), r.Currency)
	c.First, c.Last = r.StartDate, r.EndDate
	return c
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"money": func(cur string, d decimal.Decimal) string { return FormatMoney(d.Round(2), cur) },
	"pct":   func(d decimal.Decimal) string { return d.Mul(hundred).StringFixed(1) + "%" },
	"ok":    func(s string) bool { return strings.HasPrefix(s, "ok:") },
	"date":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.R.Grant.Number}} {{.R.PeriodName}}: compliance report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
.meta{color:#57606a} table{border-collapse:collapse;margin:.5rem 0;min-width:28rem}
th,td{padding:.25rem .75rem;border-bottom:1px solid #eaeef2;text-align:left} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#cf222e;font-weight:600} .good{color:#1a7f37}
svg text{font-size:12px;fill:#57606a} @media print{body{margin:0}}
</style></head><body>
<h1>Grant {{.R.Grant.Number}}: {{.R.PeriodName}} ({{.R.StartDate}} to {{.R.EndDate}})</h1>
<p class="meta">{{.R.Grant.Agency}}{{with .R.Grant.Program}}, {{.}}{{end}}. PI: {{.R.Grant.PI}}{{range .R.Grant.CoPIs}}; {{.}}{{end}}.
{{with .R.Grant.Institution}}{{.}}. {{end}}Award {{money .R.Currency .R.Grant.Amount}}, {{.R.Grant.StartDate}} to {{.R.Grant.EndDate}},
indirect (F&amp;A) rate {{pct .R.IndirectRate}}{{with .R.Grant.FederalID}}, assistance listing {{.}}{{end}}.
Generated {{date .R.GeneratedAt}}.</p>

<h2>Burn-down</h2>
<svg id="burndown" xmlns="http://www.w3.org/2000/svg" width="{{.C.Width}}" height="{{.C.Height}}" viewBox="0 0 {{.C.Width}} {{.C.Height}}" role="img" aria-label="remaining budget by day">
<line x1="{{.C.Left}}" y1="{{.C.Base}}" x2="{{.C.Right}}" y2="{{.C.Base}}" stroke="#8c959f"/>
<line x1="{{.C.Left}}" y1="20" x2="{{.C.Left}}" y2="{{.C.Base}}" stroke="#8c959f"/>
<line x1="{{.C.Left}}" y1="{{.C.ZeroY}}" x2="{{.C.Right}}" y2="{{.C.ZeroY}}" stroke="#d0d7de" stroke-dasharray="2 3"/>
<path id="burndown-plan" d="{{.C.Plan}}" fill="none" stroke="#8c959f" stroke-width="1.5" stroke-dasharray="6 4"/>
<path id="burndown-actual" d="{{.C.Actual}}" fill="none" stroke="#0969da" stroke-width="2.5"/>
<text x="{{.C.Left}}" y="{{.C.Base}}" dx="-6" dy="18" text-anchor="start">{{.C.First}}</text>
<text x="{{.C.Right}}" y="{{.C.Base}}" dy="18" text-anchor="end">{{.C.Last}}</text>
<text x="{{.C.Left}}" y="24" dx="-6" text-anchor="end">{{.C.Top}}</text>
<text x="{{.C.Left}}" y="{{.C.Base}}" dx="-6" text-anchor="end">{{.C.Bottom}}</text>
<text x="{{.C.Right}}" y="14" text-anchor="end"><tspan fill="#0969da">━ remaining</tspan>  <tspan>╌ even spending</tspan></text>
</svg>

<h2>Balances</h2>
<table>
<tr><td>Budget</td><td class="n">{{money .R.Currency .R.Balances.Budget}}</td></tr>
<tr><td>Carried in</td><td class="n">{{money .R.Currency .R.Balances.CarriedIn}}</td></tr>
<tr><th>Beginning balance</th><th class="n">{{money .R.Currency .R.Balances.Beginning}}</th></tr>
<tr><td>Spent (direct + indirect)</td><td class="n">{{money .R.Currency .R.Balances.Spent}}</td></tr>
<tr><td>Held by running jobs</td><td class="n">{{money .R.Currency .R.Balances.Held}}</td></tr>
<tr><td>Carried out</td><td class="n">{{money .R.Currency .R.Balances.CarriedOut}}</td></tr>
<tr><td>Lapsed</td><td class="n">{{money .R.Currency .R.Balances.Lapsed}}</td></tr>
<tr><th>Ending balance</th><th class="n">{{money .R.Currency .R.Balances.Ending}}</th></tr>
</table>

<h2>Costs</h2>
<table><tr><th></th><th class="n">Direct</th><th class="n">Indirect</th><th class="n">Total</th><th class="n">Jobs</th></tr>
<tr><th>All</th><td class="n">{{money .R.Currency .R.Direct}}</td><td class="n">{{money .R.Currency .R.Indirect}}</td><td class="n">{{money .R.Currency .R.Total}}</td><td class="n">{{.R.Jobs}}</td></tr>
</table>
{{range .Sections}}<h2>By {{.Name}}</h2>
<table><tr><th>{{.Name}}</th><th class="n">Direct</th><th class="n">Indirect</th><th class="n">Total</th><th class="n">Jobs</th></tr>
{{range .Rows}}<tr><td>{{if .Key}}{{.Key}}{{else}}(none){{end}}</td><td class="n">{{money $.R.Currency .Direct}}</td><td class="n">{{money $.R.Currency .Indirect}}</td><td class="n">{{money $.R.Currency .Total}}</td><td class="n">{{.Jobs}}</td></tr>
{{else}}<tr><td colspan="5">no costs</td></tr>{{end}}</table>
{{end}}
<h2>Holds outstanding</h2>
<table><tr><th>Hold</th><th>Account</th><th>User</th><th>Partition</th><th>Job</th><th>Since</th><th class="n">Direct</th><th class="n">Total</th></tr>
{{range .R.Holds}}<tr><td>{{.HoldID}}</td><td>{{.Account}}</td><td>{{.User}}</td><td>{{.Partition}}</td><td>{{with .JobID}}{{.}}{{end}}</td><td>{{date .Since}}</td><td class="n">{{money $.R.Currency .Direct}}</td><td class="n">{{money $.R.Currency .Total}}</td></tr>
{{else}}<tr><td colspan="8">none</td></tr>{{end}}</table>

<h2>Reconciliation</h2>
<ul id="reconciliation">{{range .R.Reconciliation}}<li class="{{if ok .}}good{{else}}bad{{end}}">{{.}}</li>{{end}}</ul>
</body></html>
`))

// WriteHTML writes the report as one self-contained HTML page.
func (r GrantReport) WriteHTML(w io.Writer) error {
	type section struct {
		Name string
		Rows []UsageRow
	}
	data := struct {
		R        GrantReport
		C        chart
		Sections []section
	}{r, r.burnDownChart(), []section{{"account", r.ByAccount}, {"user", r.ByUser}, {"partition", r.ByPartition}, {"month", r.ByMonth}}}
	if err := reportTemplate.Execute(w, data); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}
