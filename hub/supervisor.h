/*
 * supervisor: `--workers N`. The parent process forks N workers, each of
 * which runs a whole hub (its own loop, its own lws listener bound to the
 * same port through SO_REUSEPORT), and then only watches them:
 *
 *  - a worker that dies (crash, kill -9, a non-zero exit) is started again
 *    in the same slot after a backoff that doubles from 100 ms up to 5 s and
 *    starts over once a worker has lived 10 s. A slot whose worker exits on
 *    its own within 5 s of starting, 5 times in a row (a bad configuration, a
 *    port it cannot bind), stops the whole service: exit 1.
 *  - SIGTERM / SIGINT are forwarded to every worker, which drain (every
 *    socket closed with 4000) and exit. The supervisor exits 0 once all have
 *    exited 0, 1 otherwise; a worker still there drain_timeout_ms + 10 s
 *    later is killed (exit 1).
 *  - each worker gets SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG),
 *    so a killed supervisor leaves no orphan serving the port.
 *
 * The supervisor has no event loop: it blocks in sigtimedwait() on SIGCHLD,
 * SIGTERM and SIGINT, and never touches PostgreSQL, Redis or a socket.
 * Workers know their slot and start count through metrics_set_worker(), so
 * /metrics says which worker answered.
 */
#ifndef RN_SUPERVISOR_H
#define RN_SUPERVISOR_H

#include "config.h"

/*
 * What a worker runs in the child process: returns its exit code. index is
 * the worker's slot (0..N-1), starts how many times that slot has been
 * started (1 for the first).
 */
typedef int (*supervisor_worker_cb)(const hub_config_t *cfg, int index, int starts);

/*
 * Runs cfg->workers workers (at most SUPERVISOR_MAX_WORKERS) until SIGTERM or
 * SIGINT, or until a slot keeps failing at start. Returns the supervisor's
 * exit code. Call it from the main thread before any loop exists.
 */
int supervisor_run(const hub_config_t *cfg, supervisor_worker_cb worker);

#define SUPERVISOR_MAX_WORKERS 64

#endif
