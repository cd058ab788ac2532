// The test harness every integration and end-to-end suite imports: one name
// for the four files that do the work, each by job -
//   servers.js  PostgreSQL, Redis, free ports, temp dirs, running programs,
//               and the cleanup registry (one root `after` hook per file)
//   hub.js      the hub process under test: start, stop, kill, logs, exit checks
//   clients.js  tokens, HTTP, WebSocket phone/cabinet clients, /metrics text
//   assert.js   bounded waiting (waitFor, within, sleep)
// Suites keep `import { ... } from '../lib/harness.js'`; a new helper goes in
// the file of its job and is re-exported here.

export { SOURCE_DIR, SERVICES, track, watch, cleanup, freePort, portOpen, tmpDir, run, startPostgres, startRedis, startRedisCluster } from './servers.js';
export { HUB_BIN, startHub, applyDemo } from './hub.js';
export { SUBPROTOCOL, token, request, http, rawUpgrade, connectWs, parseMetrics } from './clients.js';
export { sleep, within, waitFor } from './assert.js';
