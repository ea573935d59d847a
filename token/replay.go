package token

import "fmt"

func (a *Authenticator) checkReplay(key [32]byte, rp string) error {
	if a.cfg.Replay == nil {
		return nil
	}
	if err := a.cfg.Replay.Check(key); err != nil {
		a.log.Warn("signing request refused by the replay store", "rp", rp, "reason", err)
		return fmt.Errorf("replay store: %w", err)
	}
	return nil
}

// recordWhileSigning starts Record(key) on its own goroutine, so that the
// replay store's write and fsync (0.2 ms on an idle SSD, more on a busy
// disk) overlap the TPM's Load, Sign and FlushContext instead of following
// them (issue 17). The caller starts it once nothing is left to ask the
// user (before the key is loaded, or right after the approval when the
// prompt waited on the loaded key), and must call the returned wait before
// the response leaves, and withhold the response if it fails: the record
// is still durable before any response, and of two identical requests
// only one is answered (Record checks atomically). The price: a load or
// signature that fails after this point leaves its request recorded, so
// that exact request is refused inside the window (the client gets an
// error either way; a new challenge signs).
// TestReplayRecordOverlapsTheSignature.
func (a *Authenticator) recordWhileSigning(key [32]byte) (wait func() error) {
	if a.cfg.Replay == nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() { done <- a.cfg.Replay.Record(key) }()
	return func() error {
		if err := <-done; err != nil {
			// The signature is withheld: answering without a durable record
			// could let the same request be signed again after a crash.
			return fmt.Errorf("replay store: record: %w", err)
		}
		if TestOnlyAfterReplayRecord != nil {
			TestOnlyAfterReplayRecord()
		}
		return nil
	}
}

// TestOnlyAfterReplayRecord, when set, runs after a signature's replay
// record is durable and before the response leaves. The crash trials set
// it (through cmd/tpm-u2f's TPM_U2F_TEST_CRASH_AFTER_RECORD) to kill the
// daemon at exactly that point.
var TestOnlyAfterReplayRecord func()
