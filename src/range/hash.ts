// The source side of a range's checks, taken from the COPY that moves it: the source's COPY carries
// each row's hash as one more column, which this stream takes off each tuple (counting the rows and
// adding up the hashes, exactly as the profile query's count(*) and sum(h) would) before the rest
// goes on to the target. The source is read once instead of twice, in the same snapshot as before.
// PostgreSQL's binary COPY format: an 11-byte signature, flags and a header extension; then per
// tuple an int16 field count and per field an int32 length (-1: NULL) and its bytes; an int16 -1
// ends the data.
import { Transform, type TransformCallback } from 'node:stream';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const HEADER = SIGNATURE.length + 8;

/** 2^32, and the bound under which the sums of the hashes' halves stay exact as numbers. */
const TWO32 = 4294967296;
const EXACT = 2 ** 52;

export class HashSplitter extends Transform {
  rows = 0;
  // The sum of the hashes, kept as the sums of their high (signed) and low (unsigned) 32-bit halves:
  // numbers, not a BigInt per row (half of the splitter's time). Folded into `folded` before
  // either could lose a bit.
  private high = 0;
  private low = 0;
  private folded = 0n;
  private pending: Buffer = Buffer.alloc(0);
  private header = false;
  private ended = false;

  /** The sum of every row's hash (a 64-bit integer each), exactly as `sum(h)` on the server. */
  get sum(): bigint {
    return this.folded + BigInt(this.high) * BigInt(TWO32) + BigInt(this.low);
  }

  private fold(high: number, low: number): void {
    this.folded += BigInt(high) * BigInt(TWO32) + BigInt(low);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      cb(null, this.split(this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk));
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    cb(this.ended && this.pending.length === 0 ? null : new Error('the source COPY ended in the middle of a row'));
  }

  /** The tuples of `buf` that are whole, without their last field; the rest waits for more bytes. */
  private split(buf: Buffer): Buffer {
    const out = Buffer.allocUnsafe(buf.length);
    let o = 0;
    let p = 0;
    if (!this.header) {
      if (buf.length < HEADER) return this.keep(buf, 0, out, 0);
      if (!buf.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('the source COPY is not in binary format');
      const end = HEADER + buf.readInt32BE(SIGNATURE.length + 4);
      if (buf.length < end) return this.keep(buf, 0, out, 0);
      o = buf.copy(out, 0, 0, end);
      p = end;
      this.header = true;
    }
    // Field counts and lengths are read byte by byte, and the sums kept in locals: this loop runs for
    // every row of every range, and the Buffer methods' checks cost as much as the rest of it.
    const size = buf.length;
    let high = this.high;
    let low = this.low;
    let rows = this.rows;
    while (!this.ended && size - p >= 2) {
      const n = (buf[p] << 8) | buf[p + 1];
      if (n === 0xffff) {
        o += buf.copy(out, o, p, p + 2);
        p += 2;
        this.ended = true;
        break;
      }
      // Find the tuple's end and its last field, or wait for the rest of it.
      let q = p + 2;
      let last = -1;
      let f = 0;
      for (; f < n; f++) {
        if (size - q < 4) break;
        if (f === n - 1) last = q;
        const len = (buf[q] << 24) | (buf[q + 1] << 16) | (buf[q + 2] << 8) | buf[q + 3];
        q += 4 + (len > 0 ? len : 0);
        if (q > size) break;
      }
      if (f < n) break;
      if (n < 2 || buf.readInt32BE(last) !== 8) throw new Error('the source COPY row has no row hash as its last field');
      high += buf.readInt32BE(last + 4);
      low += buf.readUInt32BE(last + 8);
      rows++;
      if (low > EXACT || Math.abs(high) > EXACT) {
        this.fold(high, low);
        high = 0;
        low = 0;
      }
      out[o++] = (n - 1) >> 8;
      out[o++] = (n - 1) & 0xff;
      o += buf.copy(out, o, p + 2, last);
      p = q;
    }
    this.high = high;
    this.low = low;
    this.rows = rows;
    return this.keep(buf, p, out, o);
  }

  private keep(buf: Buffer, from: number, out: Buffer, o: number): Buffer {
    // A copy: a tail kept as a view would hold the whole chunk in memory.
    this.pending = from < buf.length ? Buffer.from(buf.subarray(from)) : Buffer.alloc(0);
    return out.subarray(0, o);
  }
}
