//go:build race

package token_test

// The race detector makes TPM-bound load tests ~10× slower; they run
// fewer iterations under it.
const raceEnabled = true
