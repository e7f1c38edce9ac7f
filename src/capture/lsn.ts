// Log sequence numbers as BigInt: a 64-bit WAL position does not fit a JS number exactly, and
// comparisons and differences (lag in bytes) must be exact. PostgreSQL shows one as two hex halves.

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** '16/B374D848' → 0x16B374D848n */
export function parseLsn(text: string): bigint {
  const m = LSN_TEXT.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a WAL position (expected two hexadecimal halves such as 16/B374D848)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** PostgreSQL's own form (%X/%X): upper-case hex, no padding. */
export function showLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > 0xffffffffffffffffn) throw new Error(`${lsn} is outside the range of a WAL position`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function maxLsn(...lsns: bigint[]): bigint {
  return lsns.reduce((a, b) => (b > a ? b : a), 0n);
}
