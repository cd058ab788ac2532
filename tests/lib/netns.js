// Hosts as Linux network namespaces on a bridge, for the scale suites: each
// "host" is a namespace with one veth to a bridge in the root namespace; the
// bridge holds the first address of a private 10.77.N.0/24 (N chosen free),
// so processes in the root namespace (the tests, HAProxy) reach every host
// and the hosts reach each other, and nothing else: no forwarding, no NAT.
//
// Names carry a random tag (several runs never collide). Everything is
// removed by the harness's after hook, synchronously when the process exits
// or is interrupted, and by a watchdog shell if this process is SIGKILLed
// (ctest's timeout): it kills every process in the namespaces, deletes them
// and the bridge.
//
// Needs root and iproute2's `ip netns`: netnsSupport() says why not.
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { track } from './harness.js';

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/* null when namespaces can be made here, else the reason to skip. */
export function netnsSupport() {
  if (process.getuid?.() !== 0) return 'needs root (ip netns)';
  const probe = `rnprobe${crypto.randomBytes(3).toString('hex')}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return null;
  } catch (err) {
    return `ip netns is unavailable: ${err.stderr?.toString().trim() || err.message}`;
  }
}

/* A /24 under 10.77 that no interface of the root namespace uses yet. */
function freeSubnet() {
  const used = ip('-4', '-o', 'addr', 'show');
  for (let attempt = 0; attempt < 64; attempt++) {
    const n = crypto.randomInt(0, 256);
    if (!used.includes(` 10.77.${n}.`)) return n;
  }
  throw new Error('no free 10.77.N.0/24');
}

/* The shell that removes a network if this process dies without cleaning up. */
function startWatchdog(manifest) {
  const script = `
    owner=$1 manifest=$2
    ( while kill -0 "$owner" 2>/dev/null; do sleep 1; done
      [ -f "$manifest" ] || exit 0
      . "$manifest"
      rm -f "$manifest" ) </dev/null >/dev/null 2>&1 &`;
  spawn('bash', ['-c', script, 'rn-netns-watchdog', String(process.pid), manifest], {
    detached: true,
    stdio: 'ignore',
  }).unref();
}

/*
 * Creates the bridge. Returns a network: { tag, subnet ("10.77.N"), gateway
 * (the bridge's address), addHost(name) -> host, hosts, remove() }.
 * A host is { ns, addr, exec(cmd, args, opts) -> ChildProcess (spawned
 * inside the namespace), pids(), killAll() }.
 */
export function createNetwork() {
  const tag = crypto.randomBytes(3).toString('hex');
  const n = freeSubnet();
  const subnet = `10.77.${n}`;
  const bridge = `rnb${tag}`;
  const hosts = [];
  const manifest = path.join(os.tmpdir(), `rn-netns-${tag}.sh`);

  // the cleanup script, also what the watchdog runs; rewritten as hosts are added
  const writeManifest = () => {
    const lines = hosts.map(
      (h) => `for p in $(ip netns pids ${h.ns} 2>/dev/null); do kill -KILL $p; done; ip netns del ${h.ns} 2>/dev/null`,
    );
    fs.writeFileSync(manifest, `${lines.join('\n')}\nip link del ${bridge} 2>/dev/null\n`);
  };
  writeManifest();
  startWatchdog(manifest);

  const removeSync = () => {
    if (!fs.existsSync(manifest)) return;
    try {
      execFileSync('bash', [manifest], { stdio: 'ignore', timeout: 30000 });
    } finally {
      fs.rmSync(manifest, { force: true });
    }
  };

  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');

  const net = {
    tag,
    subnet,
    gateway: `${subnet}.1`,
    bridge,
    hosts,
    /* A namespace with lo up and eth0 = subnet.<10 + index>, linked to the bridge. */
    addHost(name) {
      const index = hosts.length;
      const ns = `rn${tag}${name}`.slice(0, 30);
      const host = { name, ns, addr: `${subnet}.${10 + index}` };
      hosts.push(host);
      writeManifest();
      const outer = `rnv${tag}${index}`; // interface names: at most 15 characters
      const inner = `rnp${tag}${index}`;
      ip('netns', 'add', ns);
      ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', outer, 'master', bridge);
      ip('link', 'set', outer, 'up');
      ip('link', 'set', inner, 'netns', ns);
      ip('-n', ns, 'link', 'set', inner, 'name', 'eth0');
      ip('-n', ns, 'addr', 'add', `${host.addr}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      host.exec = (cmd, args = [], opts = {}) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], opts);
      host.pids = () =>
        ip('netns', 'pids', ns)
          .split('\n')
          .filter(Boolean)
          .map(Number);
      /* SIGKILL to every process in the namespace: the host is gone. */
      host.killAll = () => {
        for (const pid of host.pids()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      };
      return host;
    },
    remove: async () => removeSync(),
  };
  track(`network ${bridge}`, async () => removeSync(), removeSync);
  return net;
}
