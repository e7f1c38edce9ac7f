// The stylesheet of the HTML report, inlined in its page (the page loads nothing).
export const CSS = `
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1a1a1a; margin: 0 auto; padding: 0 24px 40px; max-width: 1180px; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
header.verdict { margin: 0 -24px 14px; padding: 14px 24px; color: #fff; }
header.verdict.red { background: #b71c1c; }
header.verdict.green { background: #1b5e20; }
header.verdict h1 { margin: 0 0 6px; font-size: 26px; }
header.verdict p { margin: 4px 0; }
header.verdict .digest { font-size: 17px; background: rgba(255,255,255,.15); padding: 2px 6px; border-radius: 3px; word-break: break-all; }
header.verdict ul { margin: 8px 0 0; padding-left: 20px; }
header.verdict a { color: #fff; }
h2 { margin: 18px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #ddd; font-size: 20px; }
h3 { margin: 14px 0 6px; font-size: 16px; }
h4 { margin: 0 0 8px; font-size: 15px; }
h5 { margin: 8px 0 4px; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
thead th { background: #f3f3f3; }
td code { word-break: break-all; }
div.figures { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0 24px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.totals td:nth-child(2), .totals td:nth-child(3), .distribution td { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1b5e20; }
.bad, td.bad { color: #b71c1c; }
tr.bad td, tr.bad th { color: #b71c1c; }
.note { color: #555; font-size: 13px; }
ul.legend { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 13px; }
ul.legend svg { vertical-align: -1px; }
svg.strip { display: block; overflow: visible; max-width: 100%; height: auto; margin: 6px 0 12px; }
article.range { border: 1px solid #e0b4b4; border-left: 5px solid #c62828; background: #fff8f8; padding: 10px 14px; margin: 10px 0; }
pre.rerun { display: table; max-width: 100%; box-sizing: border-box; background: #263238; color: #eceff1; padding: 8px 12px; margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.keys { margin: 0; padding-left: 20px; }
div.range-body { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0 28px; }
div.range-what { flex: 1 1 420px; min-width: 0; }
table.kv { margin-top: 0; }
code.key { background: #fde0e0; padding: 0 3px; }
footer { margin-top: 32px; color: #555; font-size: 13px; border-top: 1px solid #ddd; padding-top: 8px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  header.verdict, svg, code.key, pre.rerun { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  header.verdict { margin: 0 0 12pt; }
  article.range, table { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}`;
