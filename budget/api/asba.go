package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/asbb/asbb/budget"
)

// ASBA: the decision endpoints of the cost advisor (aws-slurm-burst-advisor)
// and of the original ASBB's documented clients, answered from the ledger
// by budget.Ledger.ASBA*. An unknown account is a 404.
//
// Dialects (docs/analytics.md, "ASBA dialects"): the two clients want
// budget_impact as a number or an object, and current_period as an int or
// a string. ?dialect=advisor or ?dialect=asbb chooses; without it the
// request's shape does: affordability-check from the advisor sends
// estimated_cost (not estimated_aws_cost), and its grant-timeline never
// sends grant_number.
func (s *Server) routesASBA() {
	s.handle("POST /api/v1/asba/budget-status", RoleRead, s.asbaBudgetStatus)
	s.handle("POST /api/v1/asba/affordability-check", RoleRead, s.asbaAffordability)
	s.handle("POST /api/v1/asba/grant-timeline", RoleRead, s.asbaGrantTimeline)
	s.handle("POST /api/v1/asba/burst-decision", RoleRead, s.asbaBurstDecision)
}

// dialect reads ?dialect=, or returns "" to let the body decide.
func dialect(r *http.Request) (string, error) {
	switch d := r.URL.Query().Get("dialect"); d {
	case "", budget.DialectASBB, budget.DialectAdvisor:
		return d, nil
	default:
		return "", invalid("dialect", "dialect must be asbb or advisor")
	}
}

// readBody reads the body once, so a handler can decode it and also look
// at which keys it has.
func readBody(r *http.Request) ([]byte, map[string]json.RawMessage, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, err
		}
		return nil, nil, invalid("", "cannot read request body: %v", err)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(bytes.TrimSpace(body), &keys)
	return body, keys, nil
}

// BudgetStatusRequest is what both clients send (the advisor: account only).
type BudgetStatusRequest struct {
	Account     string `json:"account"`
	GrantNumber string `json:"grant_number"`
	ProjectCode string `json:"project_code"`
	UserID      string `json:"user_id"`
	Cluster     string `json:"cluster"`
}

func requireAccount(a string) error {
	if a == "" {
		return invalid("account", "account is required")
	}
	return nil
}

func (s *Server) asbaBudgetStatus(w http.ResponseWriter, r *http.Request) error {
	var req BudgetStatusRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := requireAccount(req.Account); err != nil {
		return err
	}
	if req.GrantNumber != "" {
		if err := budget.ValidateGrantNumber(req.GrantNumber); err != nil {
			return fieldErr("grant_number", err)
		}
	}
	st, err := s.l.ASBABudgetStatus(r.Context(), req.Cluster, req.Account, req.GrantNumber)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, st)
}

// JobQuery is affordability-check's and burst-decision's request: the
// original's fields, plus the advisor's estimated_cost for
// estimated_aws_cost. Money arrives as a JSON number or a decimal string
// and never passes through a float.
type JobQuery struct {
	Account             string            `json:"account"`
	Cluster             string            `json:"cluster"`
	EstimatedAWSCost    Amount            `json:"estimated_aws_cost"`
	EstimatedCost       Amount            `json:"estimated_cost"`
	EstimatedLocalTime  int64             `json:"estimated_local_time"`
	JobPriority         string            `json:"job_priority"`
	JobDeadline         Date              `json:"job_deadline"`
	ConferenceDeadline  Date              `json:"conference_deadline"`
	ResearchPhase       string            `json:"research_phase"`
	CollaborationImpact bool              `json:"collaboration_impact"`
	JobMetadata         map[string]string `json:"job_metadata"`
}

func (q JobQuery) job() (budget.ASBAJob, error) {
	var j budget.ASBAJob
	if err := requireAccount(q.Account); err != nil {
		return j, err
	}
	cost, field := q.EstimatedAWSCost, "estimated_aws_cost"
	if !cost.Set() && q.EstimatedCost.Set() {
		cost, field = q.EstimatedCost, "estimated_cost"
	}
	c, err := cost.NonNegative(field)
	if err != nil {
		return j, err
	}
	j.Cost, j.LocalMinutes, j.Priority, j.ResearchPhase, j.CollaborationImpact =
		c, q.EstimatedLocalTime, q.JobPriority, q.ResearchPhase, q.CollaborationImpact
	if j.Deadline, err = q.JobDeadline.Get("job_deadline"); err != nil {
		return j, err
	}
	if j.ConferenceDeadline, err = q.ConferenceDeadline.Get("conference_deadline"); err != nil {
		return j, err
	}
	if q.EstimatedLocalTime < 0 {
		return j, invalid("estimated_local_time", "estimated_local_time must not be negative")
	}
	for _, f := range []struct{ name, v string }{{"job_priority", q.JobPriority}, {"research_phase", q.ResearchPhase}} {
		if err := checkLen(f.name, f.v, 40); err != nil {
			return j, err
		}
	}
	return j, nil
}

func (s *Server) asbaAffordability(w http.ResponseWriter, r *http.Request) error {
	d, err := dialect(r)
	if err != nil {
		return err
	}
	body, keys, err := readBody(r)
	if err != nil {
		return err
	}
	var q JobQuery
	if err := decodeBytes(body, &q); err != nil {
		return err
	}
	if d == "" {
		d = budget.DialectASBB
		if _, aws := keys["estimated_aws_cost"]; !aws {
			if _, adv := keys["estimated_cost"]; adv {
				d = budget.DialectAdvisor
			}
		}
	}
	j, err := q.job()
	if err != nil {
		return err
	}
	res, err := s.l.ASBAAffordability(r.Context(), q.Cluster, q.Account, j, d)
	if err != nil {
		return fieldErr("", err)
	}
	return reply(w, http.StatusOK, res)
}

func (s *Server) asbaBurstDecision(w http.ResponseWriter, r *http.Request) error {
	var q JobQuery
	if err := decodeJSON(r, &q); err != nil {
		return err
	}
	j, err := q.job()
	if err != nil {
		return err
	}
	res, err := s.l.ASBABurstDecision(r.Context(), q.Cluster, q.Account, j)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, res)
}

// TimelineRequest is grant-timeline's request (the advisor sends account,
// look_ahead_days 90 and include_alerts true).
type TimelineRequest struct {
	GrantNumber   string `json:"grant_number"`
	Account       string `json:"account"`
	Cluster       string `json:"cluster"`
	LookAheadDays int    `json:"look_ahead_days"`
	IncludeAlerts bool   `json:"include_alerts"`
}

func (s *Server) asbaGrantTimeline(w http.ResponseWriter, r *http.Request) error {
	d, err := dialect(r)
	if err != nil {
		return err
	}
	var q TimelineRequest
	if err := decodeJSON(r, &q); err != nil {
		return err
	}
	if q.Account == "" && q.GrantNumber == "" {
		return invalid("account", "account or grant_number is required")
	}
	if q.GrantNumber != "" {
		if err := budget.ValidateGrantNumber(q.GrantNumber); err != nil {
			return fieldErr("grant_number", err)
		}
	}
	if q.LookAheadDays < 0 || q.LookAheadDays > 3660 {
		return invalid("look_ahead_days", "look_ahead_days must be 0-3660")
	}
	if d == "" {
		d = budget.DialectASBB
		if q.GrantNumber == "" {
			d = budget.DialectAdvisor
		}
	}
	t, err := s.l.ASBAGrantTimeline(r.Context(), q.Cluster, q.Account, q.GrantNumber, q.LookAheadDays, q.IncludeAlerts, d)
	if err != nil {
		return err
	}
	return reply(w, http.StatusOK, t)
}
