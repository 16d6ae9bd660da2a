import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    // Storage and the CRDT model know nothing of sockets or HTTP.
    files: ['src/storage/**/*.ts', 'src/crdt/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['ws', 'fastify', '@fastify/*', '../api/*', '../replication/*'] }],
    },
  },
  {
    // The API reads replication status through its public interface only.
    files: ['src/api/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: ['../replication/*/**', '../storage/sqlite*'] }] },
  },
);
