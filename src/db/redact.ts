// Secrets never reach workflow history, logs or errors: every message that leaves an activity or
// the CLI goes through `redact`.
import { parse } from 'pg-connection-string';
import { connectionStrings } from '../spec/aliases';

function secretsFromEnv(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const v of connectionStrings(env)) {
    out.push(v);
    try {
      const p = parse(v);
      if (p.password && p.password.length >= 3) out.push(p.password, encodeURIComponent(p.password));
    } catch {
      /* not parseable: the whole string is still redacted */
    }
  }
  return out.sort((a, b) => b.length - a.length);
}

export function redact(message: string, env: NodeJS.ProcessEnv = process.env): string {
  let m = message;
  for (const s of secretsFromEnv(env)) m = m.split(s).join('***');
  // Any connection URL or keyword password that slipped through.
  m = m.replace(/\b(postgres(?:ql)?:\/\/)[^\s'"]+/gi, '$1***');
  m = m.replace(/\b(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
  return m;
}
