/**
 * Render docs/configuration.md's option reference from the schema, so the docs cannot drift
 * (a test compares the generated text with the file).
 */
import { CONFIG_SCHEMA } from './schema.js';
import type { Fields } from './schema-dsl.js';

export const REFERENCE_BEGIN = '<!-- BEGIN GENERATED OPTIONS: from daemon/config/schema.ts; regenerate with GATEHOUSE_UPDATE_DOCS=1 npx mocha test/daemon/config/docs.test.ts -->';
export const REFERENCE_END = '<!-- END GENERATED OPTIONS -->';

function renderDefault(v: unknown, optional: boolean): string {
  if (v === undefined) return optional ? '(unset)' : '**required**';
  return `\`${JSON.stringify(v)}\``;
}

function rows(fields: Fields, prefix: string, out: string[]): void {
  for (const [key, node] of Object.entries(fields)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if (node.kind === 'section') {
      out.push('', `### \`${path}\``, '', node.description, '', '| option | type | default | description |', '|---|---|---|---|');
      const leaves = Object.entries(node.fields).filter(([, n]) => n.kind === 'leaf');
      for (const [k, n] of leaves) {
        if (n.kind !== 'leaf') continue;
        const cell = n.description.replace(/\|/g, '\\|');
        out.push(`| \`${path}.${k}\` | ${n.typeName.replace(/\|/g, '\\|')} | ${renderDefault(n.default, n.optional)} | ${cell} |`);
      }
      const sub: Record<string, (typeof node.fields)[string]> = {};
      for (const [k, n] of Object.entries(node.fields)) if (n.kind === 'section') sub[k] = n;
      rows(sub, path, out);
    }
  }
}

/** The generated reference block, markers included. */
export function renderOptionReference(): string {
  const out: string[] = [REFERENCE_BEGIN];
  rows(CONFIG_SCHEMA.fields, '', out);
  out.push('', REFERENCE_END);
  return out.join('\n');
}

/** Replace the generated block in a document's text. */
export function spliceReference(doc: string): string {
  const a = doc.indexOf(REFERENCE_BEGIN);
  const b = doc.indexOf(REFERENCE_END);
  if (a < 0 || b < a) throw new Error('docs/configuration.md lacks the generated-options markers');
  return doc.slice(0, a) + renderOptionReference() + doc.slice(b + REFERENCE_END.length);
}
