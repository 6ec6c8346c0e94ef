package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/asbb/asbb/budget"
	"github.com/jackc/pgx/v5"
)

// Role is what a token may do. Each role includes the ones below it:
// admin > reconcile > read.
type Role int

const (
	RoleNone      Role = iota // open endpoint
	RoleRead                  // GET endpoints (and /metrics when metrics_auth)
	RoleReconcile             // /budget/check, /budget/reconcile, /asbx/* writes
	RoleAdmin                 // accounts and allocations writes
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleReconcile:
		return "reconcile"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads "read", "reconcile" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "reconcile":
		return RoleReconcile, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("%w: role %q is not read, reconcile or admin", budget.ErrInvalid, s)
}

// Token is a stored bearer token (never its secret).
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Actor is how the ledger names writes made with this token.
func (t Token) Actor() string { return "token:" + t.Name }

// tokenPrefix marks ASBB tokens so they are recognisable in a leaked log.
const tokenPrefix = "asbb_"

func hashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateToken stores a new token and returns its secret, which is shown
// once: only its SHA-256 is kept.
func CreateToken(ctx context.Context, l *budget.Ledger, name string, role Role, createdBy string) (string, Token, error) {
	if err := budget.ValidateAccountName(name); err != nil {
		return "", Token{}, fmt.Errorf("%w: token name %q must be 1-64 letters, digits, '_', '.', '@' or '-'", budget.ErrInvalid, name)
	}
	if role == RoleNone {
		return "", Token{}, fmt.Errorf("%w: a token needs a role", budget.ErrInvalid)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, fmt.Errorf("generate token: %w", err)
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	var t Token
	err := l.Pool().QueryRow(ctx, `INSERT INTO api_tokens (name, role, hash, created_by) VALUES ($1, $2, $3, $4)
		RETURNING id, name, role, created_by, created_at, revoked_at`, name, role.String(), hashToken(secret), createdBy).
		Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.RevokedAt)
	if err != nil {
		err = budget.DBErr("create token "+name, err)
		if errors.Is(err, budget.ErrConflict) {
			return "", Token{}, fmt.Errorf("%w: a token named %s exists; revoke it first", budget.ErrConflict, name)
		}
		return "", Token{}, err
	}
	return secret, t, nil
}

// RevokeToken revokes the active token called name.
func RevokeToken(ctx context.Context, l *budget.Ledger, name string) error {
	tag, err := l.Pool().Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL`, name)
	if err != nil {
		return budget.DBErr("revoke token "+name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: no active token named %s", budget.ErrNotFound, name)
	}
	return nil
}

// ListTokens lists tokens, active first; revoked ones only if all.
func ListTokens(ctx context.Context, l *budget.Ledger, all bool) ([]Token, error) {
	rows, err := l.Pool().Query(ctx, `SELECT id, name, role, created_by, created_at, revoked_at FROM api_tokens
		WHERE $1 OR revoked_at IS NULL ORDER BY revoked_at IS NOT NULL, name, id`, all)
	if err != nil {
		return nil, budget.DBErr("list tokens", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Token, error) {
		var t Token
		err := row.Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.RevokedAt)
		return t, err
	})
	return out, budget.DBErr("list tokens", err)
}

// authenticator checks bearer tokens against api_tokens, trusting a
// verified token for ttl so that a request costs no extra round trip.
type authenticator struct {
	l   *budget.Ledger
	ttl time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cachedToken
}

type cachedToken struct {
	tok     Token
	role    Role
	ok      bool // false: unknown or revoked (cached too, briefly)
	expires time.Time
}

func newAuthenticator(l *budget.Ledger, ttl time.Duration) *authenticator {
	return &authenticator{l: l, ttl: ttl, cache: map[[32]byte]cachedToken{}}
}

var (
	errNoToken  = &apiError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", message: "this endpoint needs a bearer token (Authorization: Bearer <token>)"}
	errBadToken = &apiError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", message: "the bearer token is unknown or revoked"}
)

// check authenticates r and requires role need.
func (a *authenticator) check(r *http.Request, need Role) (Token, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return Token{}, errNoToken
	}
	secret = strings.TrimSpace(secret)
	if len(secret) > 256 {
		return Token{}, errBadToken
	}
	var key [32]byte
	copy(key[:], hashToken(secret))
	now := time.Now()
	a.mu.Lock()
	c, hit := a.cache[key]
	a.mu.Unlock()
	if !hit || now.After(c.expires) {
		var err error
		c, err = a.lookup(r.Context(), key[:])
		if err != nil {
			return Token{}, err
		}
		c.expires = now.Add(a.ttl)
		if a.ttl > 0 {
			a.mu.Lock()
			if len(a.cache) > 10000 {
				// Bounded: a flood of random tokens cannot grow memory.
				clear(a.cache)
			}
			a.cache[key] = c
			a.mu.Unlock()
		}
	}
	if !c.ok {
		return Token{}, errBadToken
	}
	if c.role < need {
		return Token{}, &apiError{status: http.StatusForbidden, code: "FORBIDDEN",
			message: fmt.Sprintf("token %s has role %s; this endpoint needs %s", c.tok.Name, c.role, need)}
	}
	return c.tok, nil
}

func (a *authenticator) lookup(ctx context.Context, hash []byte) (cachedToken, error) {
	var t Token
	err := a.l.Pool().QueryRow(ctx, `SELECT id, name, role, created_by, created_at, revoked_at FROM api_tokens
		WHERE hash = $1 AND revoked_at IS NULL`, hash).Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &t.CreatedAt, &t.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return cachedToken{}, nil
	}
	if err != nil {
		return cachedToken{}, budget.DBErr("check token", err)
	}
	role, err := ParseRole(t.Role)
	if err != nil {
		return cachedToken{}, nil
	}
	return cachedToken{tok: t, role: role, ok: true}, nil
}

func withToken(ctx context.Context, t Token) context.Context {
	return context.WithValue(ctx, keyToken, t)
}

// actorOf names who made a request, for the ledger: "token:<name>".
func actorOf(r *http.Request) string {
	if t, ok := r.Context().Value(keyToken).(Token); ok {
		return t.Actor()
	}
	return "api"
}
