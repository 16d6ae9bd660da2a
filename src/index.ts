/**
 * The server entry of the `meridian` package (`import ... from 'meridian'`):
 * what an application needs to run a region inside its own process. Load a
 * configuration (from a file, a parsed object, or a file plus `MERIDIAN_*`
 * variables), make a logger, start the region, close it when done:
 *
 * ```ts
 * import { loadConfig, createLogger, startRegion } from 'meridian';
 * const config = loadConfig('regions/eu-west.json');
 * const region = await startRegion(config, { logger: createLogger({ level: config.log.level, region: config.region }) });
 * // ... later
 * await region.close();
 * ```
 *
 * The client SDK is a separate entry, `meridian/client`, free of the
 * server's dependencies.
 */
// First: Yjs must find its random draws pooled (see the module).
import './crdt/entropy.js';
export { startRegion, type RunningRegion } from './region.js';
export {
  ConfigError,
  DEFAULTS,
  loadConfig,
  parseConfig,
  type ConfigProblem,
  type CorsConfig,
  type RegionConfig,
} from './config.js';
export { loadConfigWithEnv, ENV_VARS } from './config-env.js';
export { createLogger, type LoggerOptions } from './logger.js';
