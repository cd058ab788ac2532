// assert: waiting without fixed sleeps, and bounding a wait. Every wait in a
// suite is bounded: waitFor polls a condition until a deadline and names what
// it waited for when it times out; within races a promise against a timer.
// (node:assert/strict does the asserting itself.)

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/*
 * Resolves what promise resolves, or `onTimeout` (default null) after ms; the
 * timer is cleared either way, so it never keeps the process alive.
 */
export function within(promise, ms, onTimeout = null) {
  let timer;
  const t = new Promise((resolve) => {
    timer = setTimeout(() => resolve(onTimeout), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/*
 * Calls fn until it returns a truthy value (returned) or timeoutMs passes
 * (throws, naming `what` and the last value or error). fn may be async and
 * may throw: a throw counts as "not yet".
 */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await sleep(intervalMs);
  }
}
