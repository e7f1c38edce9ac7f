// Text for the HTML report: every value from the report escaped, numbers written out, keys and
// bounds as the page shows them, and the anchor a range's evidence has.
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text or an attribute value, escaped for HTML. */
export function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

export const fmt = (n: number | string) => {
  const x = Number(n);
  return Number.isFinite(x) ? x.toLocaleString('en-US') : String(n);
};
export const plural = (n: number, one: string, many = `${one}s`) => `${fmt(n)} ${n === 1 ? one : many}`;
export const key = (k: string[]) => JSON.stringify(k);
export const bounds = (r: { lo: string; hi: string }) => `[${r.lo || '−∞'}, ${r.hi || '∞'})`;

export const anchor = (ti: number, index: number) => `t${ti}-r${index}`;
