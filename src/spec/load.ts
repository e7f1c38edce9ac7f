// Reading a spec file (YAML or JSON) into a validated MigrationSpec. CLI side only.
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { checkSpec, type SpecCheck } from './schema';

/** A user mistake in the input: the CLI prints it without a stack trace and exits 2. */
export class BadInput extends Error {
  constructor(
    message: string,
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'BadInput';
  }
}

function parseSpecText(text: string, file = 'spec'): unknown {
  const trimmed = text.trimStart();
  try {
    // YAML is a superset of JSON, but JSON errors read better from JSON.parse.
    if (trimmed.startsWith('{')) return JSON.parse(text);
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const why = e instanceof YAMLParseError || e instanceof SyntaxError ? e.message.split('\n')[0] : String(e);
    throw new BadInput(`${file}: not valid YAML or JSON: ${why}`);
  }
}

export function loadSpecFile(file: string): SpecCheck {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new BadInput(`${file}: cannot read the spec (${code ?? String(e)})`);
  }
  return checkSpec(parseSpecText(text, file));
}
