import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Import boundaries, one line each: the folders under src/ a rule binds, what
// they must not import, and why. Specifiers are matched as written, by regular
// expression: gitignore-style globs silently matched nothing
// ('../replication/*/**' missed '../replication/replicator.js'). test/layering.test.ts
// proves every line with a forbidden and an allowed import.
const UP = String.raw`^(\.\./)+`; // into a sibling folder of src/, from any depth
const PARTS = String.raw`^(\./|(\.\./)+)(storage/(sqlite|memory)|docs/documents|replication/(replicator|transport)|api/app)\.js$`;
const BOUNDARIES = [
  { in: ['storage', 'crdt'], regex: String.raw`^(ws|fastify|@fastify/.+)$|${UP}(replication|api|docs)/`, message: 'storage and crdt never import ws, fastify, replication, api or docs.' },
  { in: ['crdt'], regex: String.raw`^better-sqlite3$|${UP}storage/`, message: 'crdt never imports storage: the document model is pure and I/O-free.' },
  { in: ['replication'], regex: String.raw`^better-sqlite3$|${UP}storage/(?!types\.js$)`, message: 'replication never reaches into the SQLite engine: only src/storage/types.ts.' },
  { in: ['docs'], regex: String.raw`^better-sqlite3$|${UP}storage/(?!types\.js$)`, message: 'the write path depends on the storage contract, never on an engine: only src/storage/types.ts.' },
  { in: ['api'], regex: String.raw`${UP}replication/(?!types\.js$)`, message: 'the API never reaches into replication internals: only src/replication/types.ts.' },
  { in: ['api'], regex: String.raw`^better-sqlite3$|${UP}storage/(?!types\.js$)`, message: 'the API never reaches into the SQLite engine: only src/storage/types.ts.' },
  { in: ['*'], regex: PARTS, message: 'only src/region.ts (the composition root) constructs concrete parts: take them as dependencies.' },
];
/** Tooling that builds parts itself, as it always has (tests and bench are not under src/). */
const ROOT_EXCEPTIONS = ['src/region.ts', 'src/faults/cluster.ts'];

/** The boundaries that bind `folder`, as one rule entry. */
function restrictImports(folder) {
  const patterns = BOUNDARIES.filter((b) => b.in.includes(folder) || b.in.includes('*'))
    .map((b) => ({ regex: b.regex, message: b.message, caseSensitive: true }));
  return { 'no-restricted-imports': ['error', { patterns }] };
}

/** What the dashboard's modules use of the browser. */
const BROWSER_GLOBALS = ['document', 'fetch', 'sessionStorage', 'AbortSignal', 'setTimeout', 'Option'];

const FOLDERS = [...new Set(BOUNDARIES.flatMap((b) => b.in))].filter((f) => f !== '*');

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    languageOptions: { parserOptions: { project: ['./tsconfig.eslint.json'], tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: false }],
    },
  },
  // ESLint keeps only the last options of a rule for a file, so every folder
  // gets one entry holding all the boundaries that bind it.
  { files: ['src/**/*.ts'], ignores: ROOT_EXCEPTIONS, rules: restrictImports('*') },
  ...FOLDERS.map((folder) => ({ files: [`src/${folder}/**/*.ts`], rules: restrictImports(folder) })),
  // The dashboard: plain JavaScript modules run by the browser.
  { files: ['ui/**/*.js'], languageOptions: { globals: Object.fromEntries(BROWSER_GLOBALS.map((g) => [g, 'readonly'])) } },
);
