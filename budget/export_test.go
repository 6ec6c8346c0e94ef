package budget

// GroupQueued is how many fast holds on account (in the ledger's cluster)
// wait behind the one in flight, for tests that must line up a group.
func GroupQueued(l *Ledger, account string) int {
	l.groups.mu.Lock()
	defer l.groups.mu.Unlock()
	return len(l.groups.pending[groupKey{account, l.cluster("")}])
}

// SetGrouping turns group holds on or off, so a benchmark can show what
// they change.
func SetGrouping(l *Ledger, on bool) {
	l.groups.mu.Lock()
	defer l.groups.mu.Unlock()
	l.groups.off = !on
}
