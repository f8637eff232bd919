/**
 * A tiny declarative schema language for the config file: every option carries its type,
 * default and description in one place, so validation, the TypeScript type and
 * docs/configuration.md all come from the same source (CONTRIBUTING.md §7).
 */

/** One validation problem: where, what was expected, what was found. */
export interface ConfigIssue {
  /** Dotted path, e.g. `backend.batch.maxSize`. */
  path: string;
  expected: string;
  /** A short rendering of the value found (never a secret: config holds none). */
  actual: string;
  message?: string;
}

interface LeafBase<T> {
  readonly kind: 'leaf';
  /** Human type name for errors and docs, e.g. `integer 1..256`. */
  readonly typeName: string;
  readonly description: string;
  /** The default when the key is absent; undefined means required (or optional if `optional`). */
  readonly default?: T;
  readonly optional: boolean;
  /** Parse an explicit value; returns the value or an expectation string on failure. */
  check(value: unknown): { ok: true; value: T } | { ok: false; expected: string };
}

export type Leaf<T, O extends boolean = false> = LeafBase<T> & { readonly __optional?: O };

export interface Section<F extends Fields> {
  readonly kind: 'section';
  readonly description: string;
  readonly fields: F;
}

export type Node = Leaf<unknown, boolean> | Section<Fields>;
export type Fields = { readonly [key: string]: Node };

/** The TypeScript type a schema node produces. */
export type Infer<N> =
  N extends Section<infer F>
    ? { [K in keyof F]: Infer<F[K]> }
    : N extends Leaf<infer T, infer O>
      ? O extends true
        ? T | undefined
        : T
      : never;

interface LeafOpts<T> {
  description: string;
  default?: T;
}

function leaf<T, O extends boolean>(
  typeName: string,
  opts: LeafOpts<T>,
  optional: O,
  check: (v: unknown) => T | undefined,
): Leaf<T, O> {
  return {
    kind: 'leaf',
    typeName,
    description: opts.description,
    ...(opts.default !== undefined ? { default: opts.default } : {}),
    optional,
    check(value) {
      const v = check(value);
      return v === undefined ? { ok: false, expected: typeName } : { ok: true, value: v };
    },
  };
}

/** An integer in [min, max]. */
export function int(opts: LeafOpts<number> & { min: number; max: number }): Leaf<number> {
  return leaf(`integer ${opts.min}..${opts.max}`, opts, false, (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= opts.min && v <= opts.max ? v : undefined,
  );
}

/** A finite number in [min, max]. */
export function num(opts: LeafOpts<number> & { min: number; max: number }): Leaf<number> {
  return leaf(`number ${opts.min}..${opts.max}`, opts, false, (v) =>
    typeof v === 'number' && Number.isFinite(v) && v >= opts.min && v <= opts.max ? v : undefined,
  );
}

export function bool(opts: LeafOpts<boolean>): Leaf<boolean> {
  return leaf('boolean', opts, false, (v) => (typeof v === 'boolean' ? v : undefined));
}

/** One of a fixed set of strings. */
export function oneOf<const V extends string>(values: readonly V[], opts: LeafOpts<V>): Leaf<V> {
  return leaf(values.map((x) => `"${x}"`).join(' | '), opts, false, (v) =>
    typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as V) : undefined,
  );
}

interface StrOpts extends LeafOpts<string> {
  /** Whole-string pattern. */
  pattern?: RegExp;
  /** Shown instead of the pattern in errors and docs. */
  typeName?: string;
  maxLength?: number;
  /** Extra semantic check (e.g. decodes to 32 bytes). */
  test?: (s: string) => boolean;
}

function strCheck(opts: StrOpts): (v: unknown) => string | undefined {
  const max = opts.maxLength ?? 4096;
  return (v) =>
    typeof v === 'string' &&
    v.length > 0 &&
    v.length <= max &&
    (opts.pattern === undefined || opts.pattern.test(v)) &&
    (opts.test === undefined || opts.test(v))
      ? v
      : undefined;
}

/** A non-empty string. */
export function str(opts: StrOpts): Leaf<string> {
  return leaf(opts.typeName ?? 'string', opts, false, strCheck(opts));
}

/** A string that may be absent (no default). */
export function optStr(opts: Omit<StrOpts, 'default'>): Leaf<string, true> {
  return leaf(opts.typeName ?? 'string', opts, true, strCheck(opts));
}

/** A list of non-empty strings. */
export function strList(opts: LeafOpts<string[]> & { maxItems: number; pattern?: RegExp }): Leaf<string[]> {
  return leaf(`list of strings (at most ${opts.maxItems})`, opts, false, (v) =>
    Array.isArray(v) &&
    v.length <= opts.maxItems &&
    v.every((s) => typeof s === 'string' && s.length > 0 && (opts.pattern === undefined || opts.pattern.test(s)))
      ? (v as string[]).slice()
      : undefined,
  );
}

/** A non-empty list of distinct values taken from `values` (e.g. protocol versions). */
export function intSet<const V extends number>(values: readonly V[], opts: LeafOpts<V[]>): Leaf<V[]> {
  return leaf(`non-empty list of distinct values from ${values.join(', ')}`, opts, false, (v) =>
    Array.isArray(v) && v.length > 0 && v.every((x) => (values as readonly unknown[]).includes(x)) && new Set(v).size === v.length ? (v as V[]).slice() : undefined,
  );
}

export function section<F extends Fields>(description: string, fields: F): Section<F> {
  return { kind: 'section', description, fields };
}

/** Render a found value for an error message: short, single-line. */
export function renderActual(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'object') return 'a mapping';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
