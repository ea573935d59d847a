// Package replay owns the token's replay store: a durable record of the
// signing requests answered recently, so that the token refuses to sign
// the same request twice inside a window (default 10 minutes).
//
// The design follows RFC 4120 section 10 and MIT Kerberos' replay cache
// (seed 001): the key is a hash of the whole request, so distinct requests
// never collide; and a store that was lost while it should exist makes the
// token refuse every signature until a full window has passed, rather than
// accept replays.
//
// Concurrency: a Store is safe for concurrent use. Check never blocks on
// disk. Record returns only when its entry is on disk (fsync); concurrent
// Record calls share one write and one fsync (group commit).
package replay
