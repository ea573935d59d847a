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

func (a *Authenticator) recordReplay(key [32]byte) error {
	if a.cfg.Replay == nil {
		return nil
	}
	if err := a.cfg.Replay.Record(key); err != nil {
		// The signature is withheld: answering without a durable record
		// could let the same request be signed again after a crash.
		return fmt.Errorf("replay store: record: %w", err)
	}
	if TestOnlyAfterReplayRecord != nil {
		TestOnlyAfterReplayRecord()
	}
	return nil
}

// TestOnlyAfterReplayRecord, when set, runs after a signature's replay
// record is durable and before the response leaves. The crash trials set
// it (through cmd/tpm-u2f's TPM_U2F_TEST_CRASH_AFTER_RECORD) to kill the
// daemon at exactly that point.
var TestOnlyAfterReplayRecord func()
