package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/hashicorp/go-retryablehttp"
)

// Client posts to asbb-service. asbb-epilog uses it in service mode (on
// compute nodes that must not reach PostgreSQL): Reconcile settles a
// finished job, retrying transient failures within a bounded total time.
type Client struct {
	BaseURL string        // e.g. https://asbb.example.org:8080
	Token   string        // a token with the reconcile role
	Timeout time.Duration // total time for one call, retries included (default 10s)
	HTTP    *http.Client  // optional (custom TLS roots); default: a clean client
	Log     *slog.Logger
}

// ClientError is a refusal from the service: the error envelope.
type ClientError struct {
	Status    int
	Code      string
	Message   string
	Field     string
	RequestID string
}

func (e *ClientError) Error() string {
	s := fmt.Sprintf("asbb-service: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Unwrap lets callers test refusals with the budget sentinels: a 400 is
// budget.ErrInvalid (spooling will not help: quarantine the record), a 404
// budget.ErrNotFound, and anything else that failed (5xx, unreachable,
// 401/403 from a bad token) budget.ErrUnavailable (spool and retry).
func (e *ClientError) Unwrap() error {
	switch {
	case e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge:
		return budget.ErrInvalid
	case e.Status == http.StatusNotFound:
		return budget.ErrNotFound
	}
	return budget.ErrUnavailable
}

// Reconcile posts a finished job to /api/v1/budget/reconcile (the service
// prices it at its hold's pinned rates and settles it idempotently). A
// network failure or 5xx after the retries is an error wrapping
// budget.ErrUnavailable: the caller spools the record.
func (c *Client) Reconcile(ctx context.Context, e budget.JobEnd) (ReconcileResponse, error) {
	var out ReconcileResponse
	body := struct {
		JobID  string        `json:"job_id"`
		JobEnd budget.JobEnd `json:"job_end"`
	}{JobID: fmt.Sprint(e.JobID), JobEnd: e}
	err := c.post(ctx, "/api/v1/budget/reconcile", body, &out)
	return out, err
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	payload, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	rc := retryablehttp.NewClient()
	rc.RetryMax = 4
	rc.RetryWaitMin = 200 * time.Millisecond
	rc.RetryWaitMax = 2 * time.Second
	rc.Logger = nil
	if c.HTTP != nil {
		hc := *c.HTTP // a copy: the timeout below is ours to set
		rc.HTTPClient = &hc
	}
	// Each attempt gets at most the time left; the context bounds the total.
	rc.HTTPClient.Timeout = timeout
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+path, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: service_url: %v", budget.ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	res, err := rc.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w: %v", path, budget.ErrUnavailable, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read reply of %s: %w: %v", path, budget.ErrUnavailable, err)
	}
	if res.StatusCode/100 != 2 {
		var env envelope
		ce := &ClientError{Status: res.StatusCode}
		if json.Unmarshal(data, &env) == nil && env.Error.Code != "" {
			ce.Code, ce.Message, ce.Field, ce.RequestID = env.Error.Code, env.Error.Message, env.Error.Field, env.RequestID
		} else {
			ce.Code, ce.Message = http.StatusText(res.StatusCode), truncate(string(data), 200)
		}
		return ce
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode reply of %s: %w", path, err)
	}
	return nil
}
