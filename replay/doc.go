// Package replay owns the token's replay store: the durable memory of
// which signing requests were answered recently, so that the token never
// signs the same request twice inside a window (default 10 minutes).
//
// It owns the store, not the requests: the caller (the token core) hashes
// each request into a key, with Key, over all of it (operation, rpIdHash,
// challenge or clientDataHash, credential ID, flags). The caller asks
// Check before signing and calls Record after the signature exists and
// before the response leaves, and sends the response only if Record
// returned nil. Record is itself a check-and-set, so two identical
// requests signed at once cannot both be answered.
//
// The log (<state dir>/replay.log) is append-only fixed-size records,
// each batch synced before Record returns; replay.state next to it says
// whether the token has ever signed. Following RFC 4120 section 10 (seed
// 001), a store that lost track of what it answered — its log missing
// while the token has signed before, or corrupt — refuses every request
// until one full window has passed, rather than accept replays. A torn
// last append is not a loss: its responses never left. docs/replay.md
// describes the format, the guarantees and their limits.
//
// Concurrency: a Store is safe for concurrent use. Check and Status are
// reads under a read lock; they never wait for the disk and change
// nothing. Record changes memory under the lock and leaves it for the
// disk work: concurrent Records share one write and one fsync (group
// commit), done by whichever of them finds no write under way. Close
// waits for a write under way; calls after Close return ErrClosed.
package replay
