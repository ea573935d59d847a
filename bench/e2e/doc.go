// Package e2e measures the daemon as a client sees it: the real
// tpm-u2f binary, started on the simulator or swtpm with the UDP
// transport, driven over CTAPHID by a Go client, against the bare TPM work
// (Load+Sign+Flush) and a CTAPHID PING on the same backend in the same run.
// It has only benchmarks and their helpers; `make bench` runs them, and
// docs/performance.md records their figures.
package e2e
