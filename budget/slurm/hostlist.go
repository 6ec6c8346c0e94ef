package slurm

import (
	"fmt"
	"strconv"
	"strings"
)

// maxHosts bounds an expansion (a typo like node[1-999999999] must not
// allocate gigabytes inside an epilog).
const maxHosts = 1 << 20

// ExpandHostlist expands a Slurm hostlist such as "node[01-03,07],gpu1" or
// "rack[1-2]-n[1-2]" into host names, in order. Zero padding of a range's
// lower bound is kept ("[08-10]" gives 08, 09, 10).
func ExpandHostlist(s string) ([]string, error) {
	var out []string
	for _, item := range splitTop(strings.TrimSpace(s)) {
		if item == "" {
			continue
		}
		hosts, err := expandOne(item, maxHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("hostlist %q: %w", s, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// FirstHost is the first host of a hostlist ("" for an empty list).
func FirstHost(s string) (string, error) {
	items := splitTop(strings.TrimSpace(s))
	if len(items) == 0 || items[0] == "" {
		return "", nil
	}
	hosts, err := expandOne(items[0], maxHosts)
	if err != nil {
		return "", fmt.Errorf("hostlist %q: %w", s, err)
	}
	return hosts[0], nil
}

// splitTop splits at commas outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// expandOne expands one item that may hold several bracket groups.
func expandOne(item string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("more than %d hosts", maxHosts)
	}
	open := strings.IndexByte(item, '[')
	if open < 0 {
		if strings.ContainsAny(item, "]") {
			return nil, fmt.Errorf("unbalanced ']' in %q", item)
		}
		return []string{item}, nil
	}
	closeAt := strings.IndexByte(item[open:], ']')
	if closeAt < 0 {
		return nil, fmt.Errorf("unbalanced '[' in %q", item)
	}
	closeAt += open
	prefix, body, rest := item[:open], item[open+1:closeAt], item[closeAt+1:]
	if strings.ContainsAny(body, "[") {
		return nil, fmt.Errorf("nested '[' in %q", item)
	}
	tails, err := expandOne(rest, limit)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(r), "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad range %q in %q", r, item)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("bad range %q in %q", r, item)
			}
		}
		if (b-a+1)*uint64(len(tails)) > uint64(limit-len(out)) {
			return nil, fmt.Errorf("more than %d hosts", maxHosts)
		}
		for v := a; v <= b; v++ {
			num := strconv.FormatUint(v, 10)
			if len(num) < len(lo) {
				num = strings.Repeat("0", len(lo)-len(num)) + num
			}
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return out, nil
}
