// Benchmark (not a test): connections at scale (issue 13 item 5). One hub
// process holds N subscribed WebSockets (default 45,000): its RSS per socket,
// and how long a queue change takes to reach ALL of them.
//
//   RN_HUB_BIN=build/retronova-hub node tests/bench/sockets45k.mjs
//       [--sockets 45000] [--arcades 1] [--changes 30] [--workers 1]
//       [--clients auto] [--sources auto] [--wave 250] [--idle-s 30]
//
//  1. Sockets. The phones are --clients child processes of this script
//     (default one per 12,000 sockets, at least 2), each raising its own
//     open-file limit to the hard one. Every phone connects from one of
//     --sources loopback addresses 127.0.0.2, 127.0.0.3, ... (default one per
//     10,000 sockets: one source address has ~28k ephemeral ports to
//     127.0.0.1:port), authenticates with its own dev token (Authorization
//     header) and subscribes to arcade:1 (or round robin over --arcades).
//     Opened in waves of --wave per client process. The hub's RSS (VmRSS from
//     /proc, summed over the workers with --workers) before and after, per
//     socket. Then --idle-s seconds with nothing happening: the hub's CPU
//     for holding the sockets (lws pings each one after 30 s of silence).
//  2. Changes. --changes queue changes, one at a time: a reservation through
//     the REST API (POST /api/v1/reservations on an arcade without cabinet,
//     so it stays waiting), then its cancel, and so on, on the arcades in
//     turn. For each, from the moment the HTTP request is sent to the moment
//     the LAST subscriber of that arcade holds a snapshot newer than the one
//     before (the hub conflates: a socket may skip a version, never the
//     newest): p50 / p99 / max over the changes, plus p50 / p99 of every
//     single delivery and the hub CPU per delivery.
//
// The hub raises its soft RLIMIT_NOFILE to the hard limit at start-up (and lws
// sizes its tables from it), so one process holds hard limit - ~40 sockets.
// When the hard limit is below --sockets, the run is capped to what fits and
// says so (more fds need root with CAP_SYS_RESOURCE: `ulimit -Hn 65536`
// before running, or a systemd LimitNOFILE); --workers N spreads the sockets
// over N processes instead (SO_REUSEPORT; the kernel's spread is uneven).
//
// Everything runs on this machine: PostgreSQL, Redis and the node clients
// compete with the hub for the cores; the client processes are often the
// slower side, so the delay is an upper bound of the hub's.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const SELF = fileURLToPath(import.meta.url);
const GAME = 3; // Neon Racer, solo, 1 ticket
const now = () => performance.timeOrigin + performance.now(); // ms, comparable across processes

if (process.argv[2] === '--client') await clientMain();
else await benchMain();

// ---------------------------------------------------------------------------
// A client process: holds its share of the phones and reports arrivals.

async function clientMain() {
  const { token } = await import('../lib/clients.js');
  let cfg;
  const socks = []; // { ws, arcade, v, armed: arrival time or 0 }
  let change = null; // { k, arcade, after, t0, left, first, last, hist }
  let lost = 0; // closed after they subscribed
  let exiting = false;

  const finish = () => {
    if (!change || change.left > 0 || change.t0 === undefined) return;
    const hist = {};
    for (const s of socks) {
      if (s.arcade !== change.arcade || !s.at) continue;
      const b = Math.max(0, Math.floor(s.at - change.t0));
      hist[b] = (hist[b] || 0) + 1;
    }
    process.send({ type: 'got', k: change.k, n: change.n, last: change.last, hist, lost });
    change = null;
  };

  const onQueue = (s, text) => {
    const v = Number(/"v":(\d+)/.exec(text)[1]);
    if (v > s.v) s.v = v;
    if (change && s.arcade === change.arcade && !s.at && v > change.after) {
      s.at = now();
      change.last = s.at;
      if (--change.left === 0) finish();
    }
  };

  const open = (i) =>
    new Promise((resolve) => {
      const arcade = 1 + (i % cfg.arcades);
      const ws = new WebSocket(`ws://127.0.0.1:${cfg.port}/ws`, ['retronova.v1'], {
        headers: { Authorization: `Bearer ${token(null, `s45-${i}`, { ttl: 7200, secret: cfg.secret })}` },
        perMessageDeflate: false,
        localAddress: cfg.sources[i % cfg.sources.length],
        handshakeTimeout: 30000,
      });
      const s = { ws, arcade, v: -1, at: 0 };
      let ready = false;
      const timer = setTimeout(() => done(false), 60000);
      const done = (ok) => {
        if (ready) return;
        ready = true;
        clearTimeout(timer);
        if (!ok) ws.terminate();
        resolve(ok ? s : null);
      };
      ws.on('message', (data) => {
        const text = data.toString();
        if (text.includes('"type":"queue"')) {
          onQueue(s, text);
          done(true);
        } else if (!ready && text.includes('"type":"ok"') && !text.includes('"id"')) {
          ws.send(`{"type":"subscribe","id":1,"ch":"arcade:${arcade}"}`);
        } else if (!ready && text.includes('"type":"error"')) {
          process.send({ type: 'log', text: `socket ${i}: ${text}` });
          done(false);
        }
      });
      ws.on('error', (err) => {
        if (!ready) process.send({ type: 'log', text: `socket ${i}: ${err.code || err.message}` });
        done(false);
      });
      ws.on('close', (code) => {
        if (exiting) return;
        if (!ready) process.send({ type: 'log', text: `socket ${i}: closed ${code} before subscribed` });
        else if (!s.dead) {
          s.dead = true;
          lost++;
          process.send({ type: 'log', text: `socket ${i}: closed ${code} after subscribed` });
          if (change && s.arcade === change.arcade && !s.at && --change.left === 0) finish();
        }
        done(false);
      });
    });

  process.on('message', async (m) => {
    if (m.type === 'open') {
      cfg = m;
      let failed = 0;
      for (let i = m.lo; i < m.hi; i += m.wave) {
        const wave = [];
        for (let j = i; j < Math.min(m.hi, i + m.wave); j++) wave.push(open(j));
        for (const s of await Promise.all(wave)) {
          if (s) socks.push(s);
          else failed++;
        }
        process.send({ type: 'progress', n: socks.length + failed });
      }
      const byArcade = {};
      for (const s of socks) byArcade[s.arcade] = (byArcade[s.arcade] || 0) + 1;
      process.send({ type: 'ready', open: socks.length, failed, byArcade, rssKiB: Math.round(process.memoryUsage().rss / 1024) });
    } else if (m.type === 'state') {
      const v = {};
      for (const s of socks) v[s.arcade] = Math.max(v[s.arcade] ?? -1, s.v);
      process.send({ type: 'state', v });
    } else if (m.type === 'arm') {
      change = { k: m.k, arcade: m.arcade, after: m.after, t0: undefined, left: 0, n: 0, last: 0 };
      for (const s of socks) {
        if (s.arcade !== m.arcade || s.dead) continue;
        s.at = 0;
        change.n++;
        if (s.v > m.after) s.at = now(); // already there (should not happen: one change at a time)
        else change.left++;
      }
      process.send({ type: 'armed', k: m.k });
    } else if (m.type === 't0') {
      if (change && change.k === m.k) {
        change.t0 = m.t0;
        finish();
      }
    } else if (m.type === 'give-up') {
      if (change && change.k === m.k) {
        process.send({ type: 'got', k: m.k, n: change.n, missing: change.left, last: change.last, hist: {} });
        change = null;
      }
    } else if (m.type === 'exit') {
      exiting = true;
      for (const s of socks) s.ws.terminate();
      setTimeout(() => process.exit(0), 200);
    }
  });
  process.send({ type: 'hello' });
}

// ---------------------------------------------------------------------------
// The bench: servers, hub, clients, changes.

async function benchMain() {
  const { applyDemo, cleanup, startHub, startPostgres, startRedis, token, waitFor, sleep } = await import('../lib/harness.js');
  const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
  );
  let N = Number(args.sockets || 45000);
  const ARCADES = Number(args.arcades || 1);
  const CHANGES = Number(args.changes || 30);
  const WORKERS = Number(args.workers || 1);
  const WAVE = Number(args.wave || 250);
  const IDLE_S = Number(args['idle-s'] ?? 30);
  const started = Date.now();
  const say = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);

  const status = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  const cpuS = (pid) => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const softNofile = (pid) => Number(/Max open files\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'))[1]);
  const fdCount = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;
  const children = (ppid) =>
    fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
      try {
        const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === ppid;
      } catch {
        return false;
      }
    });

  // ---- servers and hub
  const [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await applyDemo(pg);
  await pg.psql(`
    INSERT INTO arcade_games (arcade_id, slot, game_id)
    SELECT g, 9, ${GAME} FROM generate_series(1, ${ARCADES}) g ON CONFLICT DO NOTHING;
    INSERT INTO users (firebase_uid, pseudo) VALUES ('s45-booker', 's45booker');
    WITH u AS (UPDATE users SET tickets_balance = 1000000 WHERE firebase_uid = 's45-booker'
               RETURNING id, tickets_balance)
    INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
    SELECT id, 1000000, tickets_balance, 'adjustment', 'bench' FROM u;`);
  const hub = await startHub({ pg, redis, debugRoutes: false, args: WORKERS > 1 ? ['--workers', String(WORKERS)] : [] });
  if (WORKERS > 1) await waitFor(() => children(hub.pid).length === WORKERS, { what: 'workers' });
  await waitFor(async () => (await fetch(`${hub.url}/readyz`)).status === 200, { timeoutMs: 30000, what: 'ready' });
  await sleep(500);
  const pids = WORKERS > 1 ? children(hub.pid) : [hub.pid];

  // ---- what fits: the hub's own fd limit (it raised its soft limit to the hard one)
  const perProcess = Math.min(...pids.map((pid) => softNofile(pid) - fdCount(pid) - 32));
  const fits = WORKERS > 1 ? Math.floor(perProcess * WORKERS * 0.85) : perProcess;
  let capped = null;
  if (N > fits) {
    capped = `the hub's open-file limit is ${softNofile(pids[0])} (hard limit of this shell: raise it with ulimit -Hn as a root with CAP_SYS_RESOURCE); ${N} sockets do not fit in ${WORKERS} process(es): measuring ${fits}`;
    say(`CAPPED: ${capped}`);
    N = fits;
  }
  const CLIENTS = Number(args.clients || Math.max(2, Math.ceil(N / 12000)));
  const SOURCES = Number(args.sources || Math.max(1, Math.ceil(N / 10000)));
  const sources = Array.from({ length: SOURCES }, (_, i) => `127.0.0.${2 + i}`);

  const rssBefore = pids.reduce((n, pid) => n + status(pid, 'VmRSS'), 0);
  say(`hub ${WORKERS > 1 ? `${WORKERS} workers` : `pid ${hub.pid}`} RSS ${rssBefore} KiB; opening ${N} sockets from ${CLIENTS} client processes, sources ${sources[0]}..${sources[SOURCES - 1]}, ${ARCADES} arcade(s)`);

  // ---- client processes
  const clients = [];
  for (let c = 0; c < CLIENTS; c++) {
    const proc = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$@"', 'bash', process.execPath, SELF, '--client'], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const cl = { proc, inbox: [], waiters: [], progress: 0 };
    proc.on('message', (m) => {
      if (m.type === 'log') {
        cl.logs = (cl.logs || 0) + 1;
        if (cl.logs <= 5) say(`client ${c}: ${m.text}`);
        return;
      }
      if (m.type === 'progress') return void (cl.progress = m.n);
      const w = cl.waiters.findIndex((x) => x.type === m.type && (x.k === undefined || x.k === m.k));
      if (w >= 0) cl.waiters.splice(w, 1)[0].resolve(m);
      else cl.inbox.push(m);
    });
    proc.on('exit', (code) => code && say(`client ${c} exited ${code}`));
    cl.next = (type, k) => {
      const i = cl.inbox.findIndex((m) => m.type === type && (k === undefined || m.k === k));
      if (i >= 0) return Promise.resolve(cl.inbox.splice(i, 1)[0]);
      return new Promise((resolve) => cl.waiters.push({ type, k, resolve }));
    };
    clients.push(cl);
  }
  await Promise.all(clients.map((cl) => cl.next('hello')));
  const secret = hub.secret;
  const t0open = Date.now();
  const per = Math.ceil(N / CLIENTS);
  clients.forEach((cl, c) =>
    cl.proc.send({ type: 'open', port: hub.port, secret, arcades: ARCADES, sources, wave: WAVE, lo: c * per, hi: Math.min(N, (c + 1) * per) }),
  );
  const ticker = setInterval(() => say(`  ${clients.reduce((n, cl) => n + cl.progress, 0)} / ${N} sockets tried`), 5000);
  const readies = await Promise.all(clients.map((cl) => cl.next('ready')));
  clearInterval(ticker);
  const openMs = Date.now() - t0open;
  const opened = readies.reduce((n, r) => n + r.open, 0);
  const failed = readies.reduce((n, r) => n + r.failed, 0);
  const perArcade = {};
  for (const r of readies) for (const [a, n] of Object.entries(r.byArcade)) perArcade[a] = (perArcade[a] || 0) + n;
  await sleep(1500);
  const rssAfter = pids.reduce((n, pid) => n + status(pid, 'VmRSS'), 0);
  const kib = (rssAfter - rssBefore) / Math.max(1, opened);
  say(`${opened} sockets open and subscribed (${failed} failed) in ${openMs} ms (${Math.round((opened * 1000) / openMs)}/s); hub RSS ${rssBefore} -> ${rssAfter} KiB: ${kib.toFixed(2)} KiB per socket; client processes ${readies.map((r) => Math.round(r.rssKiB / 1024)).join(' + ')} MiB`);

  // ---- idle: what the open sockets cost with nothing happening (lws pings
  // each one after 30 s of silence: over any 30 s every socket has had one)
  const idle0 = pids.reduce((n, pid) => n + cpuS(pid), 0);
  await sleep(IDLE_S * 1000);
  const idleCpu = IDLE_S ? (pids.reduce((n, pid) => n + cpuS(pid), 0) - idle0) / IDLE_S : 0;
  if (IDLE_S) say(`idle for ${IDLE_S} s: hub CPU ${(idleCpu * 100).toFixed(1)} % of a core (${((idleCpu * 1e6) / Math.max(1, opened)).toFixed(2)} µs/s per socket)`);

  // ---- changes
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const call = (method, path, body) =>
    new Promise((resolve, reject) => {
      const payload = body ? JSON.stringify(body) : undefined;
      const headers = { Authorization: `Bearer ${token(hub, 's45-booker', { ttl: 7200 })}` };
      if (payload) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), 'Idempotency-Key': crypto.randomUUID() });
      const req = http.request({ host: '127.0.0.1', port: hub.port, method, path, headers, agent }, (res) => {
        const chunks = [];
        res.on('data', (ch) => chunks.push(ch));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.end(payload);
    });
  const versions = async () => {
    const states = await Promise.all(clients.map((cl) => (cl.proc.send({ type: 'state' }), cl.next('state'))));
    const v = {};
    for (const s of states) for (const [a, x] of Object.entries(s.v)) v[a] = Math.max(v[a] ?? -1, x);
    return v;
  };

  const lastMs = []; // per change: request sent -> last subscriber
  const hist = new Map(); // every delivery: ms after the request -> count
  let missing = 0;
  let lost = 0;
  let delivered = 0;
  const held = {}; // arcade -> reservation id waiting to be cancelled
  let cpu = 0;
  for (let k = 0; k < CHANGES; k++) {
    const arcade = 1 + (Math.floor(k / 2) % ARCADES);
    const after = (await versions())[arcade] ?? -1;
    await Promise.all(clients.map((cl) => (cl.proc.send({ type: 'arm', k, arcade, after }), cl.next('armed', k))));
    const cpu0 = pids.reduce((n, pid) => n + cpuS(pid), 0);
    const t0 = now();
    for (const cl of clients) cl.proc.send({ type: 't0', k, t0 });
    let res;
    if (held[arcade]) {
      res = await call('DELETE', `/api/v1/reservations/${held[arcade]}`);
      if (res.status !== 200) throw new Error(`cancel: ${res.status} ${res.text}`);
      delete held[arcade];
    } else {
      res = await call('POST', '/api/v1/reservations', { arcade_id: arcade, game_id: GAME });
      if (res.status !== 201) throw new Error(`reserve: ${res.status} ${res.text}`);
      held[arcade] = JSON.parse(res.text).reservation.id;
    }
    const got = await Promise.all(
      clients.map(async (cl) => {
        const timer = setTimeout(() => cl.proc.send({ type: 'give-up', k }), 15000);
        const m = await cl.next('got', k);
        clearTimeout(timer);
        return m;
      }),
    );
    cpu += pids.reduce((n, pid) => n + cpuS(pid), 0) - cpu0;
    lastMs.push(Math.max(...got.map((g) => g.last)) - t0);
    lost = got.reduce((n, g) => n + (g.lost || 0), 0);
    for (const g of got) {
      missing += g.missing || 0;
      for (const [b, n] of Object.entries(g.hist)) {
        hist.set(Number(b), (hist.get(Number(b)) || 0) + n);
        delivered += n;
      }
    }
    await sleep(100);
  }
  const q = (xs, p) => {
    const s = [...xs].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.ceil(s.length * p) - 1)];
  };
  const hq = (p) => {
    let seen = 0;
    for (const b of [...hist.keys()].sort((x, y) => x - y)) if ((seen += hist.get(b)) >= p * delivered) return b;
    return NaN;
  };
  const f1 = (x) => x.toFixed(1);
  say(`${CHANGES} changes (reservation, cancel, ...) to ${ARCADES === 1 ? `all ${opened}` : `~${Math.round(opened / ARCADES)} each`} subscribers: request sent -> LAST subscriber p50 ${f1(q(lastMs, 0.5))} ms, p99 ${f1(q(lastMs, 0.99))} ms, max ${f1(Math.max(...lastMs))} ms`);
  say(`every delivery (${delivered}, ${missing} missing, ${lost} sockets closed after they subscribed): p50 ${hq(0.5)} ms, p99 ${hq(0.99)} ms (1 ms buckets); hub CPU ${f1(cpu * 1000)} ms over the changes, ${((cpu * 1e6) / Math.max(1, delivered)).toFixed(2)} µs per delivery`);
  console.log(JSON.stringify({
    sockets_wanted: Number(args.sockets || 45000),
    sockets: opened,
    failed,
    capped,
    workers: WORKERS,
    client_processes: CLIENTS,
    sources: SOURCES,
    arcades: ARCADES,
    per_arcade: perArcade,
    open_ms: openMs,
    idle_s: IDLE_S,
    idle_hub_cpu_pct: Number((idleCpu * 100).toFixed(1)),
    hub_rss_before_kib: rssBefore,
    hub_rss_after_kib: rssAfter,
    kib_per_socket: Number(kib.toFixed(2)),
    changes: CHANGES,
    last_subscriber_ms: { p50: Number(f1(q(lastMs, 0.5))), p99: Number(f1(q(lastMs, 0.99))), max: Number(f1(Math.max(...lastMs))) },
    delivery_ms: { p50: hq(0.5), p99: hq(0.99) },
    deliveries: delivered,
    missing,
    lost_after_subscribe: lost,
    hub_cpu_us_per_delivery: Number(((cpu * 1e6) / Math.max(1, delivered)).toFixed(2)),
    total_s: Math.round((Date.now() - started) / 1000),
  }));
  // what the hub said beyond routine: warnings, errors, workers restarted
  const notable = hub
    .logs()
    .split('\n')
    .filter((l) => /"level":"(warn|error|fatal)"|worker/.test(l));
  if (notable.length) say(`hub log, ${notable.length} notable line(s), the last 15:\n${notable.slice(-15).join('\n')}`);
  for (const cl of clients) cl.proc.send({ type: 'exit' });
  await Promise.all(clients.map((cl) => new Promise((r) => (cl.proc.exitCode !== null ? r() : cl.proc.once('exit', r)))));
  await hub.stop({ timeoutMs: 60000 });
  await cleanup();
  process.exit(missing || failed || lost ? 1 : 0);
}
