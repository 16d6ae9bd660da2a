// Docker HEALTHCHECK: asks the region in this container for /readyz on the
// port its own configuration names (file and MERIDIAN_* variables, resolved
// exactly as `meridian start` resolves them), so a container running any
// region's config is judged on the right port. Exit 0: ready; 1: not.
//
// The config file is $MERIDIAN_CONFIG, or the `--config` given to the node
// process that runs as PID 1 (`docker run image start --config file`).
import { readFileSync } from 'node:fs';
import process from 'node:process';
import { request as httpGet } from 'node:http';
import { request as httpsGet } from 'node:https';
import { loadConfigWithEnv } from '../dist/src/config-env.js';

const TIMEOUT_MS = 2500;

/** The `--config`/`-c` argument of PID 1, if it has one and we may read it. */
function configOfPid1() {
  let args;
  try {
    args = readFileSync('/proc/1/cmdline', 'utf8').split('\0');
  } catch (err) {
    process.stderr.write(`healthcheck: cannot read /proc/1/cmdline (${err.code ?? err}); using MERIDIAN_CONFIG\n`);
    return undefined;
  }
  const at = args.findIndex((a) => a === '--config' || a === '-c');
  if (at >= 0) return args[at + 1];
  const joined = args.find((a) => a.startsWith('--config='));
  return joined?.slice('--config='.length);
}

const config = loadConfigWithEnv(configOfPid1(), process.env);
const host = ['0.0.0.0', '::', ''].includes(config.listen.host) ? '127.0.0.1' : config.listen.host;
// The probe checks our own process over loopback: the certificate is not what it tests.
const get = config.tls ? httpsGet : httpGet;
const req = get({ host, port: config.listen.port, path: '/readyz', timeout: TIMEOUT_MS, rejectUnauthorized: false }, (res) => {
  res.resume();
  process.stdout.write(`/readyz on ${host}:${config.listen.port}: ${res.statusCode}\n`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error(`no answer in ${TIMEOUT_MS} ms`)));
req.on('error', (err) => {
  process.stdout.write(`/readyz on ${host}:${config.listen.port}: ${err.message}\n`);
  process.exit(1);
});
req.end();
