import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests that start region processes compete for two cores; keep them few at once.
    maxWorkers: 2,
    pool: 'forks',
  },
});
