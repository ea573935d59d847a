package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles writes a CPU profile to $TPM_U2F_CPUPROFILE and an
// execution trace to $TPM_U2F_TRACE while the daemon runs, for the
// end-to-end benchmark (bench/e2e, E2E_PROFILE=dir). The returned function
// stops them; it is called when run returns.
func startProfiles(log *slog.Logger) (stop func()) {
	var stops []func()
	if path := os.Getenv("TPM_U2F_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err != nil {
			log.Warn("cannot write the CPU profile", "err", err)
		} else if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			log.Warn("cannot start the CPU profile", "err", err)
		} else {
			log.Info("writing a CPU profile", "path", path)
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}
	if path := os.Getenv("TPM_U2F_TRACE"); path != "" {
		if f, err := os.Create(path); err != nil {
			log.Warn("cannot write the execution trace", "err", err)
		} else if err := trace.Start(f); err != nil {
			f.Close()
			log.Warn("cannot start the execution trace", "err", err)
		} else {
			log.Info("writing an execution trace", "path", path)
			stops = append(stops, func() { trace.Stop(); f.Close() })
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
