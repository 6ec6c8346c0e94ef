package api

import (
	"context"
	_ "embed"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpenAPI is the OpenAPI 3 description of every endpoint, kept in the
// repository as budget/api/openapi.json (a test checks it against Routes).
//
//go:embed openapi.json
var OpenAPI []byte

func (s *Server) routesSystem() {
	s.handle("GET /health", RoleNone, s.health)
	s.handle("GET /version", RoleNone, s.version)
	s.handle("GET /api/v1/openapi.json", RoleNone, s.openapi)
	metrics := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil, Timeout: 10 * time.Second})
	// RoleNone here; handle() asks for a read token when metrics_auth is set.
	s.handle("GET /metrics", RoleNone, func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	})
}

// HealthResponse is the original's /health shape; services adds the
// workers. Status is 200 "healthy" or 503 "unhealthy".
type HealthResponse struct {
	Status    string            `json:"status"`
	Version   string            `json:"version"`
	Timestamp time.Time         `json:"timestamp"`
	Services  map[string]string `json:"services"`
	Uptime    string            `json:"uptime"`
	Workers   map[string]string `json:"workers"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	resp := HealthResponse{Status: "healthy", Version: Version, Timestamp: time.Now().UTC(),
		Services: map[string]string{"database": "healthy", "advisor": "unknown"},
		Uptime:   time.Since(s.started).Round(time.Second).String(), Workers: s.workerHealth()}
	if err := s.l.Ping(ctx); err != nil {
		resp.Status, resp.Services["database"] = "unhealthy", "unreachable"
	}
	for _, st := range resp.Workers {
		if st == "stalled" || st == "stopped" {
			resp.Status = "unhealthy"
		}
	}
	resp.Services["workers"] = "healthy"
	if resp.Status != "healthy" && resp.Services["database"] == "healthy" {
		resp.Services["workers"] = "unhealthy"
	}
	code := http.StatusOK
	if resp.Status != "healthy" {
		code = http.StatusServiceUnavailable
	}
	return reply(w, code, resp)
}

// VersionResponse is the original's /version shape.
type VersionResponse struct {
	Version   string `json:"version"`
	GitCommit string `json:"git_commit"`
	BuildTime string `json:"build_time"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	v := VersionResponse{Version: Version, GitCommit: GitCommit, BuildTime: BuildTime,
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			switch {
			case kv.Key == "vcs.revision" && v.GitCommit == "":
				v.GitCommit = kv.Value
			case kv.Key == "vcs.time" && v.BuildTime == "":
				v.BuildTime = kv.Value
			}
		}
	}
	return reply(w, http.StatusOK, v)
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
	return nil
}
