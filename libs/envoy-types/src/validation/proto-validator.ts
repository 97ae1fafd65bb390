// Checks encoded Envoy messages against the protoc-gen-validate constraints
// (`(validate.rules)`, `(validate.required)`, `(validate.disabled)`) declared in
// Envoy's own .proto files, read with protobufjs. The constraints come from the
// protos; only their meaning (what `min_len` or `gt` checks) is written here.
import { existsSync, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import protobuf from 'protobufjs';
import type { Any } from '../generated/google/protobuf/any';
import type { MessageType, UnknownMessage } from '../generated/typeRegistry';

export interface Violation {
  /** Field path from the checked message, e.g. `filter_chains[0].filters[0].typed_config<HttpConnectionManager>.stat_prefix`. */
  path: string;
  /** The rule that failed, e.g. `string.min_len`. */
  rule: string;
  message: string;
}

export interface ProtoValidatorOptions {
  /** Where tools/envoy-types/generate.mjs staged the protos. */
  protoDir?: string;
  /** .proto files to load (relative to protoDir); default: one per generated module. */
  files?: string[];
}

type Rules = Record<string, unknown>;
type Msg = protobuf.Message & Record<string, unknown>;

interface FieldPlan {
  field: protobuf.Field;
  rules: Rules | undefined;
  /** Name of the (real) oneof the field belongs to. */
  oneof: string | undefined;
}
interface TypePlan {
  disabled: boolean;
  fields: FieldPlan[];
  requiredOneofs: string[];
}

const REPO_ROOT = resolve(__dirname, '../../../..');
const DEFAULT_PROTO_DIR = join(REPO_ROOT, 'libs/envoy-types/protos');
const GENERATED_DIR = resolve(__dirname, '../generated');
const WRAPPERS = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map(
    (n) => `google.protobuf.${n}`,
  ),
);

// protoc-gen-validate's well-known regexes (validate.proto, KnownRegex).
const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
// eslint-disable-next-line no-control-regex -- control characters are what these refuse
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
// eslint-disable-next-line no-control-regex
const HEADER_VALUE_LOOSE = /^[^\u0000\u000A\u000D]*$/;

function isHostname(value: string): boolean {
  const name = value.endsWith('.') ? value.slice(0, -1) : value;
  return (
    name.length > 0 && name.length <= 253 && name.split('.').every((label) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))
  );
}

function isAbsoluteUri(value: string): boolean {
  try {
    return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) && new URL(value).protocol.length > 1;
  } catch {
    return false;
  }
}

/** protoc-gen-validate's string formats (`string = {hostname: true}` and the like). */
const FORMAT_RULES: ReadonlyArray<readonly [string, (value: string) => boolean, string]> = [
  ['hostname', isHostname, 'a hostname'],
  ['ip', (v) => isIP(v) !== 0, 'an IP address'],
  ['ipv4', (v) => isIP(v) === 4, 'an IPv4 address'],
  ['ipv6', (v) => isIP(v) === 6, 'an IPv6 address'],
  ['address', (v) => isIP(v) !== 0 || isHostname(v), 'an IP address or hostname'],
  ['uri', isAbsoluteUri, 'an absolute URI'],
  ['uri_ref', (v) => !/\s/.test(v), 'a URI reference'],
  ['email', (v) => /^[^@\s]+@[^@\s]+$/.test(v) && isHostname(v.slice(v.lastIndexOf('@') + 1)), 'an email address'],
  ['uuid', (v) => /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(v), 'a UUID'],
];

export class ProtoValidator {
  private readonly plans = new Map<protobuf.Type, TypePlan>();
  private readonly patterns = new Map<string, RegExp | null>();

  private constructor(readonly root: protobuf.Root) {}

  /** Loads the staged protos (by default every file a generated module came from). */
  static load(options: ProtoValidatorOptions = {}): ProtoValidator {
    const protoDir = options.protoDir ?? DEFAULT_PROTO_DIR;
    if (!existsSync(protoDir)) throw new Error(`ProtoValidator: ${protoDir} is missing; run node tools/envoy-types/generate.mjs`);
    const files = options.files ?? generatedProtoFiles().filter((f) => existsSync(join(protoDir, f)));
    const wellKnown = dirname(require.resolve('protobufjs/google/protobuf/descriptor.proto'));
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      if (target.startsWith('google/protobuf/')) {
        const bundled = join(wellKnown, target.slice('google/protobuf/'.length));
        // protobufjs carries any/duration/struct/timestamp/wrappers itself.
        return existsSync(bundled) ? bundled : target;
      }
      return join(protoDir, target);
    };
    root.loadSync(files, { keepCase: true });
    root.resolveAll();
    return new ProtoValidator(root);
  }

  /** Checks a message of a generated type (encoded, then decoded against the protos). */
  validateMessage<M extends UnknownMessage>(type: MessageType<M>, message: M): Violation[] {
    if (!type.$type) throw new Error('validateMessage: generated type has no $type');
    return this.validateBytes(type.$type, type.encode(message).finish());
  }

  validateAny(any: Any): Violation[] {
    const violations: Violation[] = [];
    this.checkAny(any.typeUrl, any.value, '', violations);
    return violations;
  }

  validateBytes(typeName: string, bytes: Uint8Array): Violation[] {
    const type = this.root.lookupType(typeName);
    const violations: Violation[] = [];
    this.checkMessage(type, type.decode(bytes) as Msg, '', violations);
    return violations;
  }

  private checkAny(typeUrl: string, value: Uint8Array, path: string, out: Violation[]): void {
    const typeName = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    let type: protobuf.Type;
    try {
      type = this.root.lookupType(typeName);
    } catch {
      out.push({ path, rule: 'any.type', message: `cannot check ${typeUrl}: its proto is not loaded` });
      return;
    }
    this.checkMessage(type, type.decode(value) as Msg, path, out);
  }

  private plan(type: protobuf.Type): TypePlan {
    let plan = this.plans.get(type);
    if (plan) return plan;
    const disabled = optionOf(parsedOf(type), '(validate.disabled)') === true || optionOf(parsedOf(type), '(validate.ignored)') === true;
    plan = {
      disabled,
      fields: type.fieldsArray.map((field) => ({
        field: field.resolve(),
        rules: mergedRules(parsedOf(field)),
        oneof: field.partOf && !field.partOf.name.startsWith('_') ? field.partOf.name : undefined,
      })),
      requiredOneofs: type.oneofsArray.filter((o) => optionOf(parsedOf(o), '(validate.required)') === true).map((o) => o.name),
    };
    this.plans.set(type, plan);
    return plan;
  }

  private checkMessage(type: protobuf.Type, msg: Msg, path: string, out: Violation[]): void {
    if (type.fullName === '.google.protobuf.Any') {
      if (msg['type_url'])
        this.checkAny(msg['type_url'] as string, msg['value'] as Uint8Array, `${path}<${shortName(msg['type_url'] as string)}>`, out);
      return;
    }
    const plan = this.plan(type);
    if (plan.disabled) return;
    for (const name of plan.requiredOneofs) {
      const set = type.oneofs[name]!.oneof.some((member) => isPresent(msg, member));
      if (!set)
        out.push({
          path: join2(path, name),
          rule: 'oneof.required',
          message: `exactly one of ${type.oneofs[name]!.oneof.join(', ')} must be set`,
        });
    }
    for (const { field, rules, oneof } of plan.fields) {
      if (oneof !== undefined && !isPresent(msg, field.name)) continue;
      this.checkField(field, msg[field.name], isPresent(msg, field.name), rules, join2(path, field.name), out);
    }
  }

  private checkField(
    field: protobuf.Field,
    value: unknown,
    present: boolean,
    rules: Rules | undefined,
    path: string,
    out: Violation[],
  ): void {
    if (field.map) {
      const entries = Object.entries((value ?? {}) as Record<string, unknown>);
      const mapRules = rules?.['map'] as Rules | undefined;
      if (mapRules && !(mapRules['ignore_empty'] && entries.length === 0)) {
        if (mapRules['min_pairs'] !== undefined && entries.length < num(mapRules['min_pairs']))
          out.push({ path, rule: 'map.min_pairs', message: `needs at least ${num(mapRules['min_pairs'])} entries, has ${entries.length}` });
        if (mapRules['max_pairs'] !== undefined && entries.length > num(mapRules['max_pairs']))
          out.push({ path, rule: 'map.max_pairs', message: `allows at most ${num(mapRules['max_pairs'])} entries, has ${entries.length}` });
      }
      const keyRules = (mapRules?.['keys'] as Rules | undefined) ?? undefined;
      const valueRules = (mapRules?.['values'] as Rules | undefined) ?? undefined;
      for (const [key, item] of entries) {
        if (keyRules) this.checkScalar('string', key, keyRules, `${path}[${JSON.stringify(key)}]<key>`, out);
        this.checkSingle(field, item, true, valueRules, `${path}[${JSON.stringify(key)}]`, out);
      }
      return;
    }
    if (field.repeated) {
      const items = (value ?? []) as unknown[];
      const repeated = rules?.['repeated'] as Rules | undefined;
      if (repeated && !(repeated['ignore_empty'] && items.length === 0)) {
        if (repeated['min_items'] !== undefined && items.length < num(repeated['min_items']))
          out.push({
            path,
            rule: 'repeated.min_items',
            message: `needs at least ${num(repeated['min_items'])} items, has ${items.length}`,
          });
        if (repeated['max_items'] !== undefined && items.length > num(repeated['max_items']))
          out.push({
            path,
            rule: 'repeated.max_items',
            message: `allows at most ${num(repeated['max_items'])} items, has ${items.length}`,
          });
        if (repeated['unique'] === true && new Set(items.map((i) => JSON.stringify(i))).size !== items.length)
          out.push({ path, rule: 'repeated.unique', message: 'items must be unique' });
      }
      const itemRules = repeated?.['items'] as Rules | undefined;
      items.forEach((item, i) => this.checkSingle(field, item, true, itemRules, `${path}[${i}]`, out));
      return;
    }
    this.checkSingle(field, value, present, rules, path, out);
  }

  /** One value of a field (the field itself, a repeated item or a map value). */
  private checkSingle(
    field: protobuf.Field,
    value: unknown,
    present: boolean,
    rules: Rules | undefined,
    path: string,
    out: Violation[],
  ): void {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) {
      const fullName = resolved.fullName.slice(1);
      const has = present && value !== null && value !== undefined;
      const messageRules = rules?.['message'] as Rules | undefined;
      const required =
        messageRules?.['required'] === true ||
        (rules?.['duration'] as Rules | undefined)?.['required'] === true ||
        (rules?.['any'] as Rules | undefined)?.['required'] === true ||
        (rules?.['timestamp'] as Rules | undefined)?.['required'] === true;
      if (!has) {
        if (required) out.push({ path, rule: 'message.required', message: 'is required' });
        return;
      }
      const msg = value as Msg;
      if (fullName === 'google.protobuf.Duration' && rules?.['duration']) this.checkDuration(msg, rules['duration'] as Rules, path, out);
      if (fullName === 'google.protobuf.Any' && rules?.['any']) this.checkAnyRules(msg, rules['any'] as Rules, path, out);
      if (WRAPPERS.has(fullName) && rules) {
        const scalar = Object.keys(rules).find((k) => k !== 'message');
        if (scalar) this.checkScalar(scalar, msg['value'], rules[scalar] as Rules, path, out);
      }
      if (messageRules?.['skip'] === true) return;
      this.checkMessage(resolved, msg, path, out);
      return;
    }
    if (resolved instanceof protobuf.Enum) {
      const enumRules = rules?.['enum'] as Rules | undefined;
      if (!enumRules) return;
      const v = value as number;
      if (enumRules['defined_only'] === true && resolved.valuesById[v] === undefined)
        out.push({ path, rule: 'enum.defined_only', message: `${v} is not a defined ${resolved.name} value` });
      this.checkInNotIn(enumRules, v, 'enum', path, out);
      if (enumRules['const'] !== undefined && v !== num(enumRules['const']))
        out.push({ path, rule: 'enum.const', message: `must be ${num(enumRules['const'])}` });
      return;
    }
    if (!rules) return;
    const kind = Object.keys(rules)[0];
    if (kind) this.checkScalar(kind, value, rules[kind] as Rules, path, out);
  }

  private checkScalar(kind: string, value: unknown, rules: Rules, path: string, out: Violation[]): void {
    if (kind === 'string') return this.checkString(String(value ?? ''), rules, path, out);
    if (kind === 'bytes') {
      const length = (value as Uint8Array | undefined)?.length ?? 0;
      if (rules['ignore_empty'] && length === 0) return;
      if (rules['min_len'] !== undefined && length < num(rules['min_len']))
        out.push({ path, rule: 'bytes.min_len', message: `needs at least ${num(rules['min_len'])} bytes` });
      if (rules['max_len'] !== undefined && length > num(rules['max_len']))
        out.push({ path, rule: 'bytes.max_len', message: `allows at most ${num(rules['max_len'])} bytes` });
      return;
    }
    if (kind === 'bool') {
      if (rules['const'] !== undefined && Boolean(value) !== rules['const'])
        out.push({ path, rule: 'bool.const', message: `must be ${String(rules['const'])}` });
      return;
    }
    const v = num(value ?? 0);
    if (rules['ignore_empty'] && v === 0) return;
    if (rules['const'] !== undefined && v !== num(rules['const']))
      out.push({ path, rule: `${kind}.const`, message: `must be ${num(rules['const'])}` });
    this.checkRange(v, rules, kind, path, out, String);
    this.checkInNotIn(rules, v, kind, path, out);
  }

  private checkString(value: string, rules: Rules, path: string, out: Violation[]): void {
    if (rules['ignore_empty'] && value === '') return;
    const chars = [...value].length;
    const bytes = Buffer.byteLength(value);
    const fail = (rule: string, message: string) =>
      out.push({
        path,
        rule: `string.${rule}`,
        message: `${message} (got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)})`,
      });
    if (rules['len'] !== undefined && chars !== num(rules['len'])) fail('len', `must be ${num(rules['len'])} characters`);
    if (rules['min_len'] !== undefined && chars < num(rules['min_len']))
      fail('min_len', `needs at least ${num(rules['min_len'])} characters`);
    if (rules['max_len'] !== undefined && chars > num(rules['max_len']))
      fail('max_len', `allows at most ${num(rules['max_len'])} characters`);
    if (rules['min_bytes'] !== undefined && bytes < num(rules['min_bytes']))
      fail('min_bytes', `needs at least ${num(rules['min_bytes'])} bytes`);
    if (rules['max_bytes'] !== undefined && bytes > num(rules['max_bytes']))
      fail('max_bytes', `allows at most ${num(rules['max_bytes'])} bytes`);
    if (typeof rules['prefix'] === 'string' && !value.startsWith(rules['prefix']))
      fail('prefix', `must start with ${JSON.stringify(rules['prefix'])}`);
    if (typeof rules['suffix'] === 'string' && !value.endsWith(rules['suffix']))
      fail('suffix', `must end with ${JSON.stringify(rules['suffix'])}`);
    if (typeof rules['contains'] === 'string' && !value.includes(rules['contains']))
      fail('contains', `must contain ${JSON.stringify(rules['contains'])}`);
    if (typeof rules['not_contains'] === 'string' && value.includes(rules['not_contains']))
      fail('not_contains', `must not contain ${JSON.stringify(rules['not_contains'])}`);
    if (typeof rules['pattern'] === 'string') {
      const re = this.pattern(rules['pattern']);
      if (re && !re.test(value)) fail('pattern', `must match ${rules['pattern']}`);
    }
    const wellKnown = rules['well_known_regex'];
    if (wellKnown === 'HTTP_HEADER_NAME' || wellKnown === 1) {
      if (rules['strict'] !== false ? !HEADER_NAME.test(value) : !HEADER_VALUE_LOOSE.test(value))
        fail('well_known_regex', 'must be a valid HTTP header name');
    } else if (wellKnown === 'HTTP_HEADER_VALUE' || wellKnown === 2) {
      if (!(rules['strict'] !== false ? HEADER_VALUE_STRICT : HEADER_VALUE_LOOSE).test(value))
        fail('well_known_regex', 'must be a valid HTTP header value');
    }
    for (const [rule, accepts, what] of FORMAT_RULES) {
      if (rules[rule] === true && !accepts(value)) fail(rule, `must be ${what}`);
    }
    this.checkInNotIn(rules, value, 'string', path, out);
  }

  private checkDuration(msg: Msg, rules: Rules, path: string, out: Violation[]): void {
    const nanos = durationNanos(msg);
    const describe = (d: unknown) => `${durationNanos(d as Msg) / 1e9}s`;
    if (rules['const'] !== undefined && nanos !== durationNanos(rules['const'] as Msg))
      out.push({ path, rule: 'duration.const', message: `must be ${describe(rules['const'])}` });
    this.checkRange(
      nanos,
      rules,
      'duration',
      path,
      out,
      (bound) => describe(bound),
      (bound) => durationNanos(bound as Msg),
    );
  }

  private checkAnyRules(msg: Msg, rules: Rules, path: string, out: Violation[]): void {
    const typeUrl = msg['type_url'] as string;
    const allowed = listOf(rules['in']) as string[] | undefined;
    if (allowed?.length && !allowed.includes(typeUrl))
      out.push({ path, rule: 'any.in', message: `${typeUrl} is not one of ${allowed.join(', ')}` });
    const refused = listOf(rules['not_in']) as string[] | undefined;
    if (refused?.includes(typeUrl)) out.push({ path, rule: 'any.not_in', message: `${typeUrl} is not allowed` });
  }

  /** lt/lte/gt/gte, including PGV's exclusive ranges (gt > lt means "outside"). */
  private checkRange(
    v: number,
    rules: Rules,
    kind: string,
    path: string,
    out: Violation[],
    describe: (bound: unknown) => string,
    toNumber: (bound: unknown) => number = num,
  ): void {
    const has = (k: string) => rules[k] !== undefined && rules[k] !== null;
    const lower = has('gt')
      ? { bound: toNumber(rules['gt']), inclusive: false, key: 'gt' }
      : has('gte')
        ? { bound: toNumber(rules['gte']), inclusive: true, key: 'gte' }
        : undefined;
    const upper = has('lt')
      ? { bound: toNumber(rules['lt']), inclusive: false, key: 'lt' }
      : has('lte')
        ? { bound: toNumber(rules['lte']), inclusive: true, key: 'lte' }
        : undefined;
    const aboveLower = lower ? (lower.inclusive ? v >= lower.bound : v > lower.bound) : true;
    const belowUpper = upper ? (upper.inclusive ? v <= upper.bound : v < upper.bound) : true;
    const text = (b: { key: string }) => `${b.key} ${describe(rules[b.key])}`;
    if (lower && upper && upper.bound < lower.bound) {
      if (!(aboveLower || belowUpper))
        out.push({ path, rule: `${kind}.${lower.key}`, message: `must be ${text(lower)} or ${text(upper)}` });
      return;
    }
    if (!aboveLower) out.push({ path, rule: `${kind}.${lower!.key}`, message: `must be ${text(lower!)}, got ${describe(v)}` });
    if (!belowUpper) out.push({ path, rule: `${kind}.${upper!.key}`, message: `must be ${text(upper!)}, got ${describe(v)}` });
  }

  private checkInNotIn(rules: Rules, v: string | number, kind: string, path: string, out: Violation[]): void {
    const norm = (x: unknown) => (typeof v === 'number' ? num(x) : String(x));
    const allowed = listOf(rules['in']);
    if (allowed?.length && !allowed.map(norm).includes(v))
      out.push({ path, rule: `${kind}.in`, message: `${v} is not one of ${allowed.join(', ')}` });
    const refused = listOf(rules['not_in']);
    if (refused?.map(norm).includes(v)) out.push({ path, rule: `${kind}.not_in`, message: `${v} is not allowed` });
  }

  private pattern(source: string): RegExp | null {
    if (!this.patterns.has(source)) {
      let re: RegExp | null;
      try {
        // RE2 syntax; the patterns Envoy uses are a subset of what JS accepts.
        re = new RegExp(source, 'u');
      } catch {
        re = null;
      }
      this.patterns.set(source, re);
    }
    return this.patterns.get(source)!;
  }
}

/** The .proto behind every generated module, so the checker knows every type the code can emit. */
function generatedProtoFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts') && !full.includes(`${join(GENERATED_DIR, 'google')}`))
        files.push(relative(GENERATED_DIR, full).replace(/\.ts$/, '.proto'));
    }
  };
  if (existsSync(GENERATED_DIR)) walk(GENERATED_DIR);
  return files.filter((f) => f !== 'typeRegistry.proto').sort();
}

type ParsedOptions = Array<Record<string, unknown>> | undefined;

/** protobufjs keeps options as written, one object per option statement (its typings say otherwise). */
function parsedOf(reflected: protobuf.ReflectionObject): ParsedOptions {
  return reflected.parsedOptions as unknown as ParsedOptions;
}

function mergedRules(parsed: ParsedOptions): Rules | undefined {
  const all = (parsed ?? []).filter((o) => '(validate.rules)' in o).map((o) => o['(validate.rules)'] as Rules);
  if (all.length === 0) return undefined;
  return all.reduce((acc, r) => deepMerge(acc, r), {} as Rules);
}

function deepMerge(a: Rules, b: Rules): Rules {
  const out: Rules = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' ? deepMerge(out[k] as Rules, v as Rules) : v;
  }
  return out;
}

function optionOf(parsed: ParsedOptions, name: string): unknown {
  return parsed?.find((o) => name in o)?.[name];
}

function isPresent(msg: Msg, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(msg, field) && msg[field] !== null && msg[field] !== undefined;
}

/** A repeated option given once parses as a single value. */
function listOf(x: unknown): unknown[] | undefined {
  return x === undefined || x === null ? undefined : Array.isArray(x) ? x : [x];
}

function num(x: unknown): number {
  if (typeof x === 'number') return x;
  if (typeof x === 'string') return Number(x);
  if (x && typeof x === 'object' && 'toString' in x) return Number(String(x)); // Long
  return Number(x);
}

function durationNanos(d: Msg | Record<string, unknown> | undefined): number {
  return num(d?.['seconds'] ?? 0) * 1e9 + num(d?.['nanos'] ?? 0);
}

function shortName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}

function join2(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}
