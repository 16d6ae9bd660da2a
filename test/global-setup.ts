import { execFileSync } from 'node:child_process';

/** Region processes run the compiled CLI: build it once before the tests. */
export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
