package replay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The log file (docs/replay.md has the full description):
//
//	header  16 bytes: "tpm-u2f replay" + uint16 big-endian version (2)
//	record  48 bytes: key [32] | unix nanoseconds int64 BE [8] |
//	                  flags uint32 BE [4] | CRC-32C of the 44 bytes before [4]
//
// Every write the store makes is one batch of records (a group commit)
// followed by one fsync, and the last record of the batch carries
// flagCommit. A batch is written only after the fsync of the one before
// returned, so everything up to the last intact commit record was
// synced: damage there is corruption. Damage after it can only be the
// batch a crash interrupted, whose fsync never returned and whose
// responses therefore never left: a torn tail, dropped on open.
const (
	magic      = "tpm-u2f replay"
	version    = 2
	headerSize = len(magic) + 2
	recordSize = 32 + 8 + 4 + 4

	// flagCommit marks the last record of a batch.
	flagCommit uint32 = 1

	// maxBatch bounds one group commit, and so the length of a torn tail:
	// a damaged region longer than this cannot be an interrupted append.
	maxBatch = 256

	// Version 1 (the first release of this package): a text header line
	// and 44-byte records without flags. Read so that an upgrade does not
	// fail closed; the store rewrites it as version 2 on open.
	v1Magic      = "tpm-u2f replay v1\n"
	v1RecordSize = 32 + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is one answered request: the request's key and when it was
// recorded (the store's time, unix nanoseconds).
type record struct {
	key [32]byte
	t   int64
}

// corruptError is the decoder's only error: the file is not a log this
// store wrote, or a record that was synced has changed since.
type corruptError struct {
	offset int
	reason string
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("replay log is corrupt at byte %d: %s", e.offset, e.reason)
}

func appendHeader(b []byte) []byte {
	b = append(b, magic...)
	return binary.BigEndian.AppendUint16(b, version)
}

func appendRecord(b []byte, r record, flags uint32) []byte {
	start := len(b)
	b = append(b, r.key[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.t))
	b = binary.BigEndian.AppendUint32(b, flags)
	return appendCRC(b, b[start:])
}

// appendBatch encodes recs as one batch: the last record commits it.
func appendBatch(b []byte, recs []record) []byte {
	for i, r := range recs {
		var flags uint32
		if i == len(recs)-1 {
			flags = flagCommit
		}
		b = appendRecord(b, r, flags)
	}
	return b
}

// encodeLog is a whole log file holding recs: what a rewrite writes.
func encodeLog(recs []record) []byte {
	b := make([]byte, 0, headerSize+len(recs)*recordSize)
	return appendBatch(appendHeader(b), recs)
}

// decoded is a log file read back.
type decoded struct {
	version int
	recs    []record // every intact record, in file order
	torn    int      // bytes of an interrupted last batch that were dropped
}

// decode parses a log file. It never panics and returns either the
// records or a *corruptError. A torn tail is not an error (see the format
// comment above), except inside the first synced bytes, which the state
// file says were on disk at the last open, rewrite or clean close: the
// log cannot be shorter than that, nor damaged there.
func decode(data []byte, synced int) (decoded, error) {
	if synced > len(data) {
		return decoded{}, &corruptError{len(data), fmt.Sprintf("the log is shorter than the %d bytes it was known to hold", synced)}
	}
	if bytes.HasPrefix(data, []byte(v1Magic)) {
		return decodeV1(data)
	}
	if len(data) < headerSize {
		return decoded{}, &corruptError{0, fmt.Sprintf("truncated below the header (%d bytes)", len(data))}
	}
	if string(data[:len(magic)]) != magic {
		return decoded{}, &corruptError{0, "bad magic"}
	}
	if v := binary.BigEndian.Uint16(data[len(magic):]); v != version {
		return decoded{}, &corruptError{len(magic), fmt.Sprintf("unknown version %d", v)}
	}
	body := data[headerSize:]
	n, partial := len(body)/recordSize, len(body)%recordSize

	// First pass: where does the last intact commit record end?
	lastCommit := -1
	for i := range n {
		r := body[i*recordSize : (i+1)*recordSize]
		if !intact(r) {
			continue
		}
		flags := binary.BigEndian.Uint32(r[40:44])
		if flags&^flagCommit != 0 {
			// Intact, so written on purpose, but not by this version.
			return decoded{}, &corruptError{headerSize + i*recordSize, fmt.Sprintf("unknown flags %#x", flags)}
		}
		if flags&flagCommit != 0 {
			lastCommit = i
		}
	}

	d := decoded{version: version, torn: partial}
	for i := range n {
		off := i * recordSize
		r := body[off : off+recordSize]
		if !intact(r) {
			if i < lastCommit || headerSize+off < synced {
				return decoded{}, &corruptError{headerSize + off, fmt.Sprintf("bad checksum in record %d, inside a committed batch", i)}
			}
			d.torn += recordSize
			continue
		}
		// Intact records of an interrupted batch are kept: refusing a
		// request whose answer never left is harmless, and if this
		// "tear" was really damage to a synced batch, they are the part
		// of it that can still be saved.
		d.recs = append(d.recs, record{key: [32]byte(r[:32]), t: int64(binary.BigEndian.Uint64(r[32:40]))})
	}
	if partial > 0 && len(data)-partial < synced {
		return decoded{}, &corruptError{len(data) - partial, "a partial record inside the synced part of the log"}
	}
	if d.torn > 0 && n-lastCommit-1 > maxBatch {
		return decoded{}, &corruptError{headerSize + (lastCommit+1)*recordSize,
			fmt.Sprintf("damaged tail of %d records, longer than one batch (%d)", n-lastCommit-1, maxBatch)}
	}
	return d, nil
}

func intact(r []byte) bool {
	return crc32.Checksum(r[:recordSize-4], castagnoli) == binary.BigEndian.Uint32(r[recordSize-4:])
}

// decodeV1 reads a version 1 log: each record was appended and synced on
// its own, so only a partial last record is a torn tail.
func decodeV1(data []byte) (decoded, error) {
	body := data[len(v1Magic):]
	n := len(body) / v1RecordSize
	d := decoded{version: 1, torn: len(body) % v1RecordSize}
	for i := range n {
		r := body[i*v1RecordSize : (i+1)*v1RecordSize]
		if crc32.Checksum(r[:40], castagnoli) != binary.BigEndian.Uint32(r[40:]) {
			return decoded{}, &corruptError{len(v1Magic) + i*v1RecordSize, fmt.Sprintf("bad checksum in record %d", i)}
		}
		d.recs = append(d.recs, record{key: [32]byte(r[:32]), t: int64(binary.BigEndian.Uint64(r[32:40]))})
	}
	return d, nil
}

func appendCRC(b, over []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(over, castagnoli))
}
