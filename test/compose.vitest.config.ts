import { defineConfig } from 'vitest/config';

/** `npm run test:compose`: the Docker end-to-end test only, one file, no build step (the image builds its own). */
export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['test/compose.e2e.ts'],
    testTimeout: 300_000,
    hookTimeout: 450_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
