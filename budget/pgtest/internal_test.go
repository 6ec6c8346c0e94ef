package pgtest

import (
	"regexp"
	"strings"
	"testing"
)

func TestDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^test_([a-z0-9]+(_[a-z0-9]+)*_)?[0-9a-f]{16}$`)
	for _, name := range []string{
		"TestHold",
		"TestHold/over_budget_job_is_refused",
		"TestÜber/ünïcode  and spaces",
		"",
		"///",
		strings.Repeat("TestVeryLongName", 10),
	} {
		got := databaseName(name)
		if len(got) > 63 || !valid.MatchString(got) {
			t.Errorf("databaseName(%q) = %q: not a short, plain identifier", name, got)
		}
	}
	if databaseName("TestX") == databaseName("TestX") {
		t.Error("two databases for the same test got the same name")
	}
	if got := databaseName("TestHold/Refused"); !strings.HasPrefix(got, "test_testhold_refused_") {
		t.Errorf("databaseName does not say which test it is for: %q", got)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres:///postgres?host=/tmp/asbb-pgtest-0&port=5432&user=postgres", "postgres:///x?host=/tmp/asbb-pgtest-0&port=5432&user=postgres"},
		{"postgres://u:p@db.example:5433/admin?sslmode=require", "postgres://u:p@db.example:5433/x?sslmode=require"},
		{"postgresql://localhost", "postgresql://localhost/x"},
		{"host=/tmp user=me dbname=admin", "host=/tmp user=me dbname=admin dbname='x'"},
	} {
		if got := withDatabase(tc.in, "x"); got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestClusterURL(t *testing.T) {
	c, err := newCluster("/tmp/a b&c")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.url("asbb"), "postgres:///asbb?host=/tmp/a%20b%26c&port=5432&user=postgres"; got != want {
		t.Errorf("url = %q, want %q", got, want)
	}
	if _, err := newCluster("/tmp/" + strings.Repeat("x", 100)); err == nil {
		t.Error("a directory too long for a unix socket was accepted")
	}
}
