// HAProxy (Debian's haproxy 2.6) in front of several hubs, for the scale
// suites: HTTP mode with WebSocket tunnels, /readyz health checks, retries
// and redispatch on a dead server. Started in the foreground on a loopback
// port and stopped by the harness's cleanup. The configuration is
// docker/haproxy.cfg's (the example for operators) with faster checks and
// roundrobin, so that a handful of sockets spreads over every hub.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, tmpDir, track, waitFor, within } from './harness.js';

/* null when haproxy is installed, else the reason to skip. */
export function haproxySupport() {
  try {
    execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'haproxy is not installed (scripts/deps.sh installs it)';
  }
}

function config({ port, servers, sock, checkIntervalMs }) {
  return `global
    maxconn 4096
    stats socket ${sock} mode 600 level admin

defaults
    mode http
    option httplog
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # a WebSocket, once upgraded, is a tunnel: idle up to the hub's own keepalive
    timeout tunnel 1h
    timeout http-keep-alive 2s
    # a connection refused by a dead hub is tried again, on another server
    retries 3
    option redispatch 1

frontend hub_front
    bind 127.0.0.1:${port}
    default_backend hubs

backend hubs
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host hub
    http-check expect status 200
    default-server inter ${checkIntervalMs}ms fall 2 rise 2 on-marked-down shutdown-sessions
${servers.map((s) => `    server ${s.name} ${s.addr}:${s.port} check`).join('\n')}
`;
}

/*
 * Starts HAProxy on a free 127.0.0.1 port in front of servers [{name, addr,
 * port}]. Returns { port, cfgPath, stat() -> {name: status}, waitUp(names),
 * stop() }.
 */
export async function startHaproxy(servers, { checkIntervalMs = 300 } = {}) {
  const dir = tmpDir('rn-haproxy-');
  const port = await freePort();
  const sock = path.join(dir, 'admin.sock');
  const cfgPath = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfgPath, config({ port, servers, sock, checkIntervalMs }));
  const proc = spawn('haproxy', ['-db', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    if (!(await within(exited, 5000))) proc.kill('SIGKILL');
  };
  track(`haproxy :${port}`, stop, () => proc.kill('SIGKILL'));

  /* One command on the admin socket; resolves its whole answer. */
  const admin = (cmd) =>
    new Promise((resolve, reject) => {
      const c = net.connect(sock);
      let out = '';
      c.on('data', (d) => (out += d));
      c.on('end', () => resolve(out));
      c.on('error', reject);
      c.end(`${cmd}\n`);
    });

  const hp = {
    port,
    cfgPath,
    proc,
    logs: () => log,
    /* {server name: "UP" | "DOWN" | ...} of the hubs backend. */
    async stat() {
      const lines = (await admin('show stat')).split('\n');
      const head = lines[0].replace(/^# /, '').split(',');
      const [px, sv, st] = ['pxname', 'svname', 'status'].map((k) => head.indexOf(k));
      const out = {};
      for (const l of lines.slice(1)) {
        const f = l.split(',');
        if (f[px] === 'hubs' && f[sv] !== 'BACKEND' && f[sv] !== 'FRONTEND' && f[sv]) out[f[sv]] = f[st];
      }
      return out;
    },
    /* Waits until every named server is UP (others may be anything). */
    async waitStatus(want, timeoutMs = 30000) {
      return waitFor(
        async () => {
          const s = await hp.stat();
          return Object.entries(want).every(([name, status]) => (s[name] || '').startsWith(status)) && s;
        },
        { timeoutMs, intervalMs: 100, what: `haproxy servers ${JSON.stringify(want)}` },
      );
    },
    stop,
  };
  await waitFor(() => fs.existsSync(sock) || proc.exitCode !== null, { what: 'haproxy to start' });
  if (proc.exitCode !== null) throw new Error(`haproxy exited ${proc.exitCode}:\n${log}`);
  return hp;
}
