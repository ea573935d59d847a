package replay

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func recs(n int, t0 int64) []record {
	out := make([]record, n)
	for i := range out {
		out[i] = record{key: Key([]byte(fmt.Sprint(i))), t: t0 + int64(i)}
	}
	return out
}

// logOf is a log holding batches as the store writes them.
func logOf(batches ...[]record) []byte {
	b := appendHeader(nil)
	for _, batch := range batches {
		b = appendBatch(b, batch)
	}
	return b
}

func recordAt(i int) int { return headerSize + i*recordSize }

func TestDecodeClassifiesDamage(t *testing.T) {
	full := logOf(recs(3, 100), recs(2, 200), recs(4, 300)) // batches end at records 2, 4, 8
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 0x01
		return b
	}
	zeroFrom := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		clear(b[off:])
		return b
	}
	cases := []struct {
		name    string
		data    []byte
		corrupt bool
		recs    int
		torn    int
	}{
		{"intact", full, false, 9, 0},
		{"header only", appendHeader(nil), false, 0, 0},
		{"partial last record", full[:len(full)-7], false, 8, recordSize - 7},
		{"last batch zeroed (size updated, data not)", zeroFrom(full, recordAt(5)), false, 5, 4 * recordSize},
		{"last batch's commit record torn", flip(full, recordAt(8)+3), false, 8, recordSize},
		// The batch's commit record landed but an earlier one did not: the
		// decoder cannot tell this from damage to a synced batch, and
		// takes the safe side.
		{"middle of last batch bad, its commit intact", flip(full, recordAt(6)), true, 0, 0},
		{"bad record in a committed batch", flip(full, recordAt(3)+40), true, 0, 0},
		{"commit record of a synced batch", flip(full, recordAt(2)), true, 0, 0},
		{"empty file", nil, true, 0, 0},
		{"truncated below the header", full[:9], true, 0, 0},
		{"bad magic", flip(full, 2), true, 0, 0},
		{"unknown version", flip(full, headerSize-1), true, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := decode(c.data, 0)
			if c.corrupt {
				var ce *corruptError
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want corruption", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(d.recs) != c.recs || d.torn != c.torn {
				t.Fatalf("%d records, %d torn bytes; want %d, %d", len(d.recs), d.torn, c.recs, c.torn)
			}
		})
	}
}

func TestDecodeTornTailLongerThanABatchIsCorruption(t *testing.T) {
	b := logOf(recs(1, 1))
	b = append(b, make([]byte, (maxBatch+1)*recordSize)...)
	if _, err := decode(b, 0); err == nil {
		t.Fatal("a damaged region longer than any batch was taken for a torn append")
	}
	b = logOf(recs(1, 1))
	b = append(b, make([]byte, maxBatch*recordSize+5)...)
	if d, err := decode(b, 0); err != nil || len(d.recs) != 1 {
		t.Fatalf("a torn batch of maxBatch records: %v", err)
	}
}

// The state file vouches for the first synced bytes: damage there, or a
// log shorter than that, is corruption even where it would otherwise
// look like a torn append.
func TestDecodeSyncedPrefix(t *testing.T) {
	full := logOf(recs(3, 100), recs(2, 200))
	synced := len(full)
	last := bytes.Clone(full)
	last[recordAt(4)] ^= 1
	if _, err := decode(last, synced); err == nil {
		t.Fatal("damage to a synced last batch taken for a torn append")
	}
	if _, err := decode(last, synced-recordSize); err != nil {
		t.Fatalf("damage after the synced part: %v", err)
	}
	if _, err := decode(full[:recordAt(3)], synced); err == nil {
		t.Fatal("a log cut at a record boundary, below its synced size, accepted")
	}
	if _, err := decode(append(bytes.Clone(full), 1, 2, 3), synced); err != nil {
		t.Fatalf("a partial record after the synced part: %v", err)
	}
	if _, err := decode(full[:len(full)-3], synced-recordSize+4); err == nil {
		t.Fatal("a partial record inside the synced part accepted")
	}
}

func TestDecodeUnknownFlags(t *testing.T) {
	b := appendRecord(appendHeader(nil), record{t: 1}, flagCommit|4)
	if _, err := decode(b, 0); err == nil {
		t.Fatal("unknown flags accepted")
	}
}

// v1Log is a log as the first version of this package wrote it.
func v1Log(rs []record) []byte {
	b := []byte(v1Magic)
	for _, r := range rs {
		r2 := appendRecord(nil, r, 0) // key, time, flags, crc: drop flags and recompute
		b = append(b, r2[:40]...)
		b = appendCRC(b, r2[:40])
	}
	return b
}

func TestDecodeV1(t *testing.T) {
	b := v1Log(recs(3, 10))
	d, err := decode(b, 0)
	if err != nil || d.version != 1 || len(d.recs) != 3 || d.recs[2].t != 12 {
		t.Fatalf("%+v, %v", d, err)
	}
	if d, err := decode(b[:len(b)-3], 0); err != nil || len(d.recs) != 2 || d.torn != v1RecordSize-3 {
		t.Fatalf("torn v1: %+v, %v", d, err)
	}
	b[len(v1Magic)+5] ^= 1
	if _, err := decode(b, 0); err == nil {
		t.Fatal("corrupt v1 record accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add(appendHeader(nil), 0)
	f.Add(logOf(recs(2, 1)), 0)
	f.Add(logOf(recs(2, 1), recs(3, 5))[:headerSize+4*recordSize+11], headerSize+2*recordSize)
	f.Add(v1Log(recs(2, 1)), 0)
	f.Add([]byte(v1Magic+"x"), 0)
	f.Fuzz(func(t *testing.T, data []byte, synced int) {
		d, err := decode(data, synced)
		if err != nil {
			var ce *corruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a corruptError", err, err)
			}
			if ce.offset < 0 || ce.offset > len(data) {
				t.Fatalf("offset %d outside %d bytes", ce.offset, len(data))
			}
			return
		}
		hdr, size := headerSize, recordSize
		if d.version == 1 {
			hdr, size = len(v1Magic), v1RecordSize
		}
		if hdr+len(d.recs)*size+d.torn != len(data) {
			t.Fatalf("sizes do not add up: %d + %d×%d + %d != %d", hdr, len(d.recs), size, d.torn, len(data))
		}
		// What was decoded round-trips through the current format.
		d2, err := decode(encodeLog(d.recs), 0)
		if err != nil || d2.torn != 0 || len(d2.recs) != len(d.recs) {
			t.Fatalf("re-encoded log: %+v, %v", d2, err)
		}
		for i := range d.recs {
			if d.recs[i] != d2.recs[i] {
				t.Fatalf("record %d changed in a round trip", i)
			}
		}
	})
}
