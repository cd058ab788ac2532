/* supervisor: forks, restarts and drains the --workers processes (see supervisor.h). */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define HEALTHY_AFTER_MS 10000 /* a worker that lived this long resets its backoff */
#define QUICK_EXIT_MS 5000     /* an exit of its own this early counts as a start failure */
#define QUICK_EXITS_MAX 5      /* that many in a row: give up */
#define KILL_GRACE_MS 10000    /* after the drain timeout, before SIGKILL */

typedef struct slot {
    pid_t pid;              /* 0 while not running */
    int starts;             /* times started, for metrics and logs */
    int quick_exits;        /* consecutive start failures */
    int backoff_ms;         /* the delay before the next restart */
    uint64_t started_ms;    /* when pid was forked */
    uint64_t restart_at_ms; /* when pid == 0: when to start it again */
} slot_t;

typedef struct supervisor {
    const hub_config_t *cfg;
    supervisor_worker_cb worker;
    slot_t slots[SUPERVISOR_MAX_WORKERS];
    int n;
    bool draining;
    uint64_t kill_at_ms; /* while draining: SIGKILL what is left then */
    int code;
    pid_t self;
    sigset_t waited, old_mask;
} supervisor_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The child's side of fork(): the signal mask and dispositions the hub
 * expects (its loop installs its own SIGTERM/SIGINT handlers), a SIGTERM if
 * the supervisor goes away, then the worker. exit() rather than _exit(), so
 * a sanitizer build checks the worker for leaks as it does a single hub.
 */
static void run_child(supervisor_t *sv, int index)
{
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigprocmask(SIG_SETMASK, &sv->old_mask, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != sv->self) /* the supervisor died before prctl took effect */
        _exit(1);
    exit(sv->worker(sv->cfg, index, sv->slots[index].starts));
}

/* Forks slot index's worker. On failure the slot is retried after its backoff. */
static void slot_start(supervisor_t *sv, int index)
{
    slot_t *s = &sv->slots[index];
    fflush(NULL); /* nothing buffered is written twice */
    s->starts++;
    pid_t pid = fork();
    if (pid == 0)
        run_child(sv, index);
    if (pid < 0) {
        log_error("cannot fork a worker", json_pack("{s:i, s:i}", "worker", index, "errno", errno));
        s->restart_at_ms = now_ms() + (uint64_t)s->backoff_ms;
        return;
    }
    s->pid = pid;
    s->started_ms = now_ms();
    s->restart_at_ms = 0;
    log_info("worker started",
             json_pack("{s:i, s:i, s:i}", "worker", index, "pid", (int)pid, "starts", s->starts));
}

static void drain_begin(supervisor_t *sv)
{
    if (sv->draining)
        return;
    sv->draining = true;
    sv->kill_at_ms = now_ms() + (uint64_t)sv->cfg->drain_timeout_ms + KILL_GRACE_MS;
    for (int i = 0; i < sv->n; i++)
        if (sv->slots[i].pid > 0)
            kill(sv->slots[i].pid, SIGTERM);
}

/*
 * A worker exited while the service runs: schedule its restart, doubling the
 * backoff, unless it keeps failing right at start (then everything stops).
 */
static void slot_died(supervisor_t *sv, int index, int status)
{
    slot_t *s = &sv->slots[index];
    uint64_t now = now_ms(), lived = now - s->started_ms;
    if (lived >= HEALTHY_AFTER_MS)
        s->backoff_ms = BACKOFF_FIRST_MS;
    s->quick_exits = WIFEXITED(status) && lived < QUICK_EXIT_MS ? s->quick_exits + 1 : 0;
    log_warn("worker died",
             json_pack("{s:i, s:i, s:i, s:i, s:I, s:i}", "worker", index, "pid", (int)s->pid,
                       "exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1, "signal",
                       WIFSIGNALED(status) ? WTERMSIG(status) : 0, "lived_ms", (json_int_t)lived,
                       "restart_in_ms", s->backoff_ms));
    s->pid = 0;
    if (s->quick_exits >= QUICK_EXITS_MAX) {
        log_error("worker keeps failing at start: stopping",
                  json_pack("{s:i, s:i}", "worker", index, "attempts", s->quick_exits));
        sv->code = 1;
        drain_begin(sv);
        return;
    }
    s->restart_at_ms = now + (uint64_t)s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 < BACKOFF_MAX_MS ? s->backoff_ms * 2 : BACKOFF_MAX_MS;
}

/* Collects every exited worker (SIGCHLD may stand for several). */
static void reap(supervisor_t *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < sv->n; i++) {
            if (sv->slots[i].pid != pid)
                continue;
            if (!sv->draining) {
                slot_died(sv, i, status);
            } else {
                sv->slots[i].pid = 0;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    sv->code = 1;
                log_info("worker stopped", json_pack("{s:i, s:i, s:i}", "worker", i, "pid",
                                                     (int)pid, "status", status));
            }
        }
    }
}

/* Starts the slots whose backoff has passed; returns the next deadline (0: none). */
static uint64_t tick(supervisor_t *sv)
{
    uint64_t now = now_ms(), next = 0;
    if (sv->draining) {
        if (now >= sv->kill_at_ms) {
            for (int i = 0; i < sv->n; i++)
                if (sv->slots[i].pid > 0 && kill(sv->slots[i].pid, SIGKILL) == 0)
                    sv->code = 1;
            log_error("workers did not drain in time: killed", NULL);
            sv->kill_at_ms = now + 1000;
        }
        return sv->kill_at_ms;
    }
    for (int i = 0; i < sv->n; i++) {
        slot_t *s = &sv->slots[i];
        if (s->pid == 0 && s->restart_at_ms <= now)
            slot_start(sv, i);
        if (s->pid == 0 && (!next || s->restart_at_ms < next))
            next = s->restart_at_ms;
    }
    return next;
}

static int live_workers(const supervisor_t *sv)
{
    int live = 0;
    for (int i = 0; i < sv->n; i++)
        live += sv->slots[i].pid > 0;
    return live;
}

/* Blocks until a signal or the deadline (0: at most a second). */
static int wait_signal(supervisor_t *sv, uint64_t deadline)
{
    uint64_t now = now_ms(), wait = 1000;
    if (deadline && deadline > now && deadline - now < wait)
        wait = deadline - now;
    if (deadline && deadline <= now)
        wait = 0;
    struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
    return sigtimedwait(&sv->waited, NULL, &ts);
}

int supervisor_run(const hub_config_t *cfg, supervisor_worker_cb worker)
{
    supervisor_t sv = {.cfg = cfg, .worker = worker, .self = getpid()};
    sv.n = cfg->workers < SUPERVISOR_MAX_WORKERS ? cfg->workers : SUPERVISOR_MAX_WORKERS;
    for (int i = 0; i < sv.n; i++)
        sv.slots[i].backoff_ms = BACKOFF_FIRST_MS;
    /* Blocked, the three signals wait in the queue for sigtimedwait: no handler races. */
    sigemptyset(&sv.waited);
    sigaddset(&sv.waited, SIGCHLD);
    sigaddset(&sv.waited, SIGTERM);
    sigaddset(&sv.waited, SIGINT);
    sigprocmask(SIG_BLOCK, &sv.waited, &sv.old_mask);
    log_info("supervisor", json_pack("{s:i, s:i}", "pid", (int)sv.self, "workers", sv.n));

    for (;;) {
        reap(&sv);
        if (sv.draining && live_workers(&sv) == 0)
            break;
        uint64_t deadline = tick(&sv);
        int sig = wait_signal(&sv, deadline);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("supervisor draining",
                     json_pack("{s:i, s:i}", "signal", sig, "workers", live_workers(&sv)));
            drain_begin(&sv);
        }
    }
    sigprocmask(SIG_SETMASK, &sv.old_mask, NULL);
    log_info("supervisor stopped", json_pack("{s:i}", "code", sv.code));
    return sv.code;
}
