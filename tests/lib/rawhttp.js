// A raw HTTP/1.1 client over net.Socket, for the suites that must send what
// node's http client never would: split or malformed requests, pipelines,
// conflicting headers, invalid bytes, abrupt closes. It parses the answers it
// reads (status line, headers, Content-Length body; no body for HEAD, 204 and
// 304) and says when the server closed the connection.
//
//   const c = await rawConnect(hub);
//   await c.send('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');   // string or Buffer
//   const [res] = await c.responses(1);      // { status, headers, body (Buffer), json }
//   await c.closed(ms)                       // true when the server closed within ms
//   c.destroy()
//
// responses(n, { heads }) waits (bounded) until n answers are complete; heads
// is the list of indexes (in this connection's order) that answer a HEAD.

import net from 'node:net';

export function rawConnect(hub, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: hub.port });
    let buf = Buffer.alloc(0);
    let ended = false;
    const waiters = new Set();
    const wake = () => {
      for (const w of [...waiters]) w();
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      wake();
    });
    sock.on('close', () => {
      ended = true;
      wake();
    });
    sock.on('error', () => {
      /* a reset counts as a close */
    });
    const wait = (ready, ms, what) =>
      new Promise((res, rej) => {
        const check = () => {
          let v;
          try {
            v = ready();
          } catch (err) {
            done();
            rej(err);
            return;
          }
          if (v !== undefined) {
            done();
            res(v);
          }
        };
        const timer = setTimeout(() => {
          done();
          rej(new Error(`${what}: nothing within ${ms} ms; read so far:\n${buf.toString('latin1').slice(0, 2000)}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });

    const client = {
      sock,
      get raw() {
        return buf;
      },
      get ended() {
        return ended;
      },
      /* Writes data (string: latin1, so any byte can be sent) and waits until it is flushed. */
      send(data) {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
        return new Promise((res) => {
          if (ended || sock.destroyed) return res(false);
          sock.write(bytes, (err) => res(!err));
        });
      },
      /* Sends data one byte at a time, each a separate write (and so, usually, a separate segment). */
      async sendBytewise(data, { gapMs = 0 } = {}) {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
        sock.setNoDelay(true);
        for (let i = 0; i < bytes.length; i++) {
          await client.send(bytes.subarray(i, i + 1));
          if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
        }
      },
      /* The first n answers, complete; rejects when the server closes first or after ms. */
      responses(n, { heads = [], ms = timeoutMs } = {}) {
        return wait(
          () => {
            const out = parseResponses(buf, heads);
            if (out.length >= n) return out.slice(0, n);
            if (ended) throw new Error(`connection closed after ${out.length} of ${n} answers:\n${buf.toString('latin1').slice(0, 2000)}`);
            return undefined;
          },
          ms,
          `${n} answers`,
        );
      },
      /* Every answer parsed so far. */
      parsed(heads = []) {
        return parseResponses(buf, heads);
      },
      /* true once the server has closed the connection, false if still open after ms. */
      closed(ms = timeoutMs) {
        return wait(() => (ended ? true : undefined), ms, 'close').catch(() => false);
      },
      destroy() {
        sock.destroy();
      },
    };
    sock.once('connect', () => resolve(client));
    sock.once('error', reject);
  });
}

/* Parses as many complete answers as buf holds. */
export function parseResponses(buf, heads = []) {
  const out = [];
  let off = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', off, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(off, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
    if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(head[0])}`);
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      const name = line.slice(0, i).trim().toLowerCase();
      const value = line.slice(i + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    const status = Number(m[1]);
    const noBody = heads.includes(out.length) || status === 204 || status === 304;
    const len = noBody ? 0 : Number(headers['content-length'] ?? 0);
    if (buf.length < end + 4 + len) break;
    const body = buf.subarray(end + 4, end + 4 + len);
    let json;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined;
    }
    out.push({ status, headers, body, json });
    off = end + 4 + len;
  }
  return out;
}

/*
 * One request on a fresh connection: its answer, and (with waitClose) whether
 * the server then closed the connection within closeMs; extra counts answers
 * beyond the first.
 */
export async function rawOnce(hub, data, { head = false, ms = 10000, waitClose = false, closeMs = 5000 } = {}) {
  const c = await rawConnect(hub);
  try {
    await c.send(data);
    const [res] = await c.responses(1, { heads: head ? [0] : [], ms });
    const closed = waitClose ? await c.closed(closeMs) : c.ended;
    return { ...res, closed, extra: c.parsed(head ? [0] : []).length - 1 };
  } finally {
    c.destroy();
  }
}
