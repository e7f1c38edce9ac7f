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

export class HashSplitter extends Transform {
  rows = 0;
  sum = 0n;
  private pending: Buffer = Buffer.alloc(0);
  private header = false;
  private ended = false;

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
    while (!this.ended && buf.length - p >= 2) {
      const n = buf.readInt16BE(p);
      if (n === -1) {
        o += buf.copy(out, o, p, p + 2);
        p += 2;
        this.ended = true;
        break;
      }
      // Find the tuple's end and its last field, or wait for the rest of it.
      let q = p + 2;
      let last = -1;
      for (let f = 0; f < n && q !== -1; f++) {
        if (buf.length - q < 4) q = -1;
        else {
          if (f === n - 1) last = q;
          const len = buf.readInt32BE(q);
          q = q + 4 + Math.max(0, len);
          if (q > buf.length) q = -1;
        }
      }
      if (q === -1) break;
      if (n < 2 || buf.readInt32BE(last) !== 8) throw new Error('the source COPY row has no row hash as its last field');
      this.sum += buf.readBigInt64BE(last + 4);
      this.rows++;
      o = out.writeInt16BE(n - 1, o);
      o += buf.copy(out, o, p + 2, last);
      p = q;
    }
    return this.keep(buf, p, out, o);
  }

  private keep(buf: Buffer, from: number, out: Buffer, o: number): Buffer {
    // A copy: a tail kept as a view would hold the whole chunk in memory.
    this.pending = from < buf.length ? Buffer.from(buf.subarray(from)) : Buffer.alloc(0);
    return out.subarray(0, o);
  }
}
