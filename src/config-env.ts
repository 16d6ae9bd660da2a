/**
 * Region configuration from environment variables, as container users expect:
 * each `MERIDIAN_*` variable sets one field, over the config file when there
 * is one, and the result goes through the same schema as a file
 * ({@link parseConfig}), so a bad value is refused with the variable and the
 * field it sets named in the message.
 *
 * Only `meridian start` reads the environment; `loadConfig` (dev, sim, tests)
 * never does, so a variable left in a shell cannot leak into them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, parseConfig, readConfigFile, type ConfigProblem, type RegionConfig } from './config.js';

/** The variables read, what each sets, and its syntax (the README's table is this list). */
export const ENV_VARS = {
  MERIDIAN_CONFIG: 'config file to start from (same as --config); optional when the variables below give every required field',
  MERIDIAN_REGION: 'region',
  MERIDIAN_CLUSTER: 'cluster',
  MERIDIAN_LISTEN: 'listen: `host:port` or `port`',
  MERIDIAN_DATA_DIR: 'dataDir (relative to the working directory)',
  MERIDIAN_PEERS: 'peers: `region=url,region=url` (empty: no peers)',
  MERIDIAN_SECRET: 'secret',
  MERIDIAN_SECRET_FILE: 'secret, read from a file (Docker secrets); one trailing newline is dropped',
  MERIDIAN_TOKENS_FILE: 'auth.tokens: a JSON file holding the array of tokens',
  MERIDIAN_PROTECT_METRICS: 'auth.protectMetrics: `true` or `false`',
  MERIDIAN_LOG_LEVEL: 'log.level',
  MERIDIAN_CORS_ORIGINS: 'cors.origins: `https://a.example,https://b.example` or `*` (empty: CORS off)',
  MERIDIAN_UI: 'ui.enabled: `true` or `false` (the dashboard at /ui)',
} as const;

/** Name of a variable this module reads. */
export type EnvVar = keyof typeof ENV_VARS;
type Env = Readonly<Record<string, string | undefined>>;
type RawConfig = Record<string, unknown>;

/** Where an environment variable put its value in the raw config: top-level key, then optional sub-key. */
const TARGETS: Record<Exclude<EnvVar, 'MERIDIAN_CONFIG'>, readonly [string, string?]> = {
  MERIDIAN_REGION: ['region'],
  MERIDIAN_CLUSTER: ['cluster'],
  MERIDIAN_LISTEN: ['listen'],
  MERIDIAN_DATA_DIR: ['dataDir'],
  MERIDIAN_PEERS: ['peers'],
  MERIDIAN_SECRET: ['secret'],
  MERIDIAN_SECRET_FILE: ['secret'],
  MERIDIAN_TOKENS_FILE: ['auth', 'tokens'],
  MERIDIAN_PROTECT_METRICS: ['auth', 'protectMetrics'],
  MERIDIAN_LOG_LEVEL: ['log', 'level'],
  MERIDIAN_CORS_ORIGINS: ['cors', 'origins'],
  MERIDIAN_UI: ['ui', 'enabled'],
};

/** A variable's value turned into the JSON the schema expects; throws a message for the variable. */
type Decoder = (value: string, env: Env) => unknown;

const DECODERS: Partial<Record<EnvVar, Decoder>> = {
  MERIDIAN_LISTEN: decodeListen,
  MERIDIAN_DATA_DIR: (value) => (value === '' ? value : path.resolve(value)),
  MERIDIAN_PEERS: decodePeers,
  MERIDIAN_SECRET_FILE: (value) => readText(value).replace(/\r?\n$/, ''),
  MERIDIAN_TOKENS_FILE: (value) => parseJson(readText(value)),
  MERIDIAN_PROTECT_METRICS: decodeBoolean,
  MERIDIAN_CORS_ORIGINS: (value) => value.split(',').map((s) => s.trim()).filter((s) => s !== ''),
  MERIDIAN_UI: decodeBoolean,
};

/**
 * Loads a region config from `file` (optional) and `env`, environment over
 * file. Throws {@link ConfigError} naming the variable and field at fault.
 */
export function loadConfigWithEnv(file: string | undefined, env: Env): RegionConfig {
  const configFile = file ?? (env.MERIDIAN_CONFIG || undefined);
  const raw = configFile === undefined ? {} : readConfigFile(configFile);
  const withEnv = configFile === undefined ? 'environment' : `${configFile} + environment`;
  const baseDir = configFile === undefined ? process.cwd() : path.dirname(path.resolve(configFile));
  const { config, fromEnv } = applyEnv(raw, env, withEnv);
  // Errors name the file alone when no variable took part.
  const source = fromEnv.size === 0 && configFile !== undefined ? configFile : withEnv;
  try {
    return parseConfig(config, baseDir, source);
  } catch (err) {
    if (!(err instanceof ConfigError) || fromEnv.size === 0) throw err;
    throw new ConfigError(source, err.problems.map((p) => nameVariable(p, fromEnv)), { cause: err });
  }
}

/**
 * Returns `raw` (a parsed config file) with every set variable applied, and
 * which config field each variable set. Throws {@link ConfigError} when a
 * value cannot be decoded or two variables set one field.
 */
export function applyEnv(raw: unknown, env: Env, source = 'environment'): { config: unknown; fromEnv: Map<string, EnvVar> } {
  const fromEnv = new Map<string, EnvVar>();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { config: raw, fromEnv };
  const config: RawConfig = { ...(raw as RawConfig) };
  const problems: ConfigProblem[] = [];
  for (const [name, [key, sub]] of Object.entries(TARGETS) as [EnvVar, readonly [string, string?]][]) {
    const value = env[name];
    if (value === undefined) continue;
    const field = sub === undefined ? key : `${key}.${sub}`;
    const other = fromEnv.get(field);
    if (other !== undefined) {
      problems.push({ path: name, message: `sets ${field} like ${other}; set only one of them` });
      continue;
    }
    try {
      setField(config, key, sub, DECODERS[name]?.(value, env) ?? value);
      fromEnv.set(field, name);
    } catch (err) {
      problems.push({ path: name, message: err instanceof Error ? err.message : String(err) });
    }
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return { config, fromEnv };
}

/** Sets `config[key]` or `config[key][sub]`, keeping the file's other sub-fields. */
function setField(config: RawConfig, key: string, sub: string | undefined, value: unknown): void {
  if (sub === undefined) {
    config[key] = value;
    return;
  }
  const current = config[key];
  const section = current !== null && typeof current === 'object' && !Array.isArray(current) ? (current as RawConfig) : {};
  config[key] = { ...section, [sub]: value };
}

/** A schema problem at a field some variable set is reported as `VARIABLE (field)`. */
function nameVariable(problem: ConfigProblem, fromEnv: ReadonlyMap<string, EnvVar>): ConfigProblem {
  for (const [field, name] of fromEnv) {
    if (problem.path === field || problem.path.startsWith(`${field}.`) || problem.path.startsWith(`${field}[`)) {
      return { path: `${name} (${problem.path})`, message: problem.message };
    }
  }
  return problem;
}

/** `host:port` or `port`; the host may be a bracketed IPv6 address. Numbers stay numbers for the schema to check. */
function decodeListen(value: string): unknown {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`must be host:port or port, not '${value}'`);
  const port = Number(m[2]);
  return m[1] === undefined ? { port } : { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** `region=url,region=url`; whitespace around items is ignored; empty means no peers. */
function decodePeers(value: string): unknown {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  return items.map((item, i) => {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`item ${i + 1} must be region=url, not '${item}'`);
    return { region: item.slice(0, eq).trim(), url: item.slice(eq + 1).trim() };
  });
}

function decodeBoolean(value: string): boolean {
  if (value === 'true' || value === 'false') return value === 'true';
  throw new Error(`must be true or false, not '${value}'`);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'file not found' : String(err)}`, { cause: err });
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`invalid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
