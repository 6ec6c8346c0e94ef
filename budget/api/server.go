// Package api is asbb-service's HTTP layer: the REST API over the budget
// core for integrators and for systems that cannot load libasbb.so, the
// ASBX integration surface, Prometheus metrics and the background workers.
//
// Every rule lives in package budget; the handlers only decode, call the
// same functions the Slurm plugin calls (budget.Ledger.Admit for
// /budget/check) and encode. Routes are registered per area: each area file
// has a `func (s *Server) routesX()` and New calls them (see docs/api.md to
// add an area).
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asbb/asbb/budget"
)

// Version, GitCommit and BuildTime are set by the service binary (from
// -ldflags) and reported by /version.
var (
	Version   = "dev"
	GitCommit = ""
	BuildTime = ""
)

// Server is the HTTP service. Create it with New; serve Handler() yourself
// or call Run.
type Server struct {
	l       *budget.Ledger
	cfg     *budget.Config
	log     *slog.Logger
	mux     *http.ServeMux
	handler http.Handler
	routes  []Route
	metrics *metrics
	auth    *authenticator
	started time.Time
	// instance names this process in logs and in asbx_files.processed_by.
	instance string
	reqSeq   atomic.Uint64

	wmu     sync.Mutex
	workers []Worker
	wstate  map[string]*workerState
}

// Route is one registered endpoint, for the OpenAPI test and docs.
type Route struct {
	Method string
	Path   string
	Role   Role // RoleNone: open
}

// New builds the server: routes, middleware, metrics and the default
// workers. It does not touch the network or the database.
func New(l *budget.Ledger, cfg *budget.Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	s := &Server{
		l: l, cfg: cfg, log: log, mux: http.NewServeMux(), started: time.Now(),
		instance: fmt.Sprintf("%s:%d:%04x", host, os.Getpid(), rand.Uint32()&0xffff),
		wstate:   map[string]*workerState{},
	}
	s.metrics = newMetrics(s)
	s.auth = newAuthenticator(l, cfg.Service.TokenCacheTTL.Duration)
	// One line per area. Engineers adding an area write routesX in their
	// own file and add it here.
	for _, area := range []func(){
		s.routesSystem,
		s.routesBudget,
		s.routesAccounts,
		s.routesAllocations,
		s.routesTransactions,
		s.routesASBX,
		s.routesGrants,
		s.routesAnalytics,
		s.routesASBA,
	} {
		area()
	}
	s.mux.HandleFunc("/", s.notFound)
	s.handler = s.requestID(s.recoverer(s.mux))
	s.defaultWorkers()
	return s
}

// Handler is the whole service as an http.Handler (tests serve it with
// httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// Routes lists the registered endpoints.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// handlerFunc is an endpoint: it writes its reply or returns an error that
// the route wrapper turns into the error envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle registers pattern ("POST /api/v1/budget/check") behind the
// per-route middleware: metrics by route, authentication and role, body
// limit, and the error envelope.
func (s *Server) handle(pattern string, role Role, h handlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("api: route pattern needs a method: " + pattern)
	}
	s.routes = append(s.routes, Route{Method: method, Path: path, Role: role})
	route := path
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.metrics.observeHTTP(method, route, sw.status(), time.Since(start)) }()
		if role != RoleNone || (route == "/metrics" && s.cfg.Service.MetricsAuth) {
			need := role
			if need == RoleNone {
				need = RoleRead
			}
			tok, err := s.auth.check(r, need)
			if err != nil {
				s.writeError(sw, r, err)
				return
			}
			r = r.WithContext(withToken(r.Context(), tok))
		}
		if r.Body != nil && r.Method != http.MethodGet {
			r.Body = http.MaxBytesReader(sw, r.Body, s.cfg.Service.MaxBodyBytes)
		}
		if err := checkQuery(r); err != nil {
			s.writeError(sw, r, err)
			return
		}
		if err := h(sw, r); err != nil {
			s.writeError(sw, r, err)
		}
	})
}

// notFound answers unknown paths (and known paths with the wrong method)
// in the error envelope rather than ServeMux's plain text.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	for _, rt := range s.routes {
		if rt.Method == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = rt.Method
		if _, pat := s.mux.Handler(probe); pat != "/" && pat != "" {
			w.Header().Set("Allow", rt.Method)
			s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, code: "METHOD_NOT_ALLOWED",
				message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
			return
		}
	}
	s.writeError(w, r, &apiError{status: http.StatusNotFound, code: "NOT_FOUND",
		message: fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
}

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyToken
)

// requestID gives every request an id (the client's X-Request-ID when it
// is short and plain, else a base-36 time like the original's) and echoes
// it in the response header.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !plainID(id) {
			id = strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(s.reqSeq.Add(1)%1296, 36)
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyRequestID, id)))
	})
}

func plainID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func requestIDOf(r *http.Request) string {
	id, _ := r.Context().Value(keyRequestID).(string)
	return id
}

// recoverer turns a panic in a handler into a 500 in the envelope, logged
// with the request id; the process keeps serving.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path,
					"request_id", requestIDOf(r), "panic", fmt.Sprint(v))
				s.writeError(w, r, fmt.Errorf("internal error: panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// reply writes v as JSON with status.
func reply(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// Run serves on service.listen_addr (TLS when tls_cert and tls_key are
// set) and runs the background workers until ctx is done; then in-flight
// requests get service.shutdown_timeout to finish and the workers stop.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Service.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Service.ListenAddr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened (tests use port 0).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	tlsOn := s.cfg.Service.TLSCert != "" || s.cfg.Service.TLSKey != ""
	if tlsOn {
		cert, err := tls.LoadX509KeyPair(s.cfg.Service.TLSCert, s.cfg.Service.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("service.tls_cert/tls_key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	s.startWorkers(wctx, &wg)

	errc := make(chan error, 1)
	go func() {
		var err error
		if tlsOn {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	s.log.Info("asbb-service listening", "addr", ln.Addr().String(), "tls", tlsOn, "instance", s.instance,
		"version", Version)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down", "timeout", s.cfg.Service.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Service.ShutdownTimeout.Duration)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	stopWorkers()
	wg.Wait()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if shutErr != nil {
		shutErr = fmt.Errorf("shutdown: %w", shutErr)
	}
	return errors.Join(serveErr, shutErr)
}
