/* guard: REST admission by the abuse limits and the deleted users' set (see guard.h). */
#include "guard.h"

#include <stdlib.h>
#include <string.h>

#include "clientip.h"
#include "metrics.h"
#include "ratelimit.h"
#include "userstate.h"

/* A request waiting on its limits' answer. */
typedef struct pending {
    http_req_t *req;
    guard_run_fn run; /* NULL: a bad token, answered 401 when allowed */
    const char *why;
} pending_t;

void guard_respond_limited(http_req_t *req, unsigned retry_after_ms)
{
    unsigned s = (retry_after_ms + 999) / 1000;
    http_req_set_retry_after(req, s ? s : 1);
    http_respond_error(req, 429, "rate_limited", "too many requests: retry in %u s", s ? s : 1);
}

static void on_answer(void *arg, int allowed, unsigned retry_after_ms)
{
    pending_t *p = arg;
    if (!allowed)
        guard_respond_limited(p->req, retry_after_ms);
    else if (p->run)
        p->run(p->req);
    else
        http_respond_error(p->req, 401, "unauthenticated", "%s", p->why);
    free(p);
}

static void ask(http_req_t *req, const rl_key_t *keys, int n, guard_run_fn run, const char *why)
{
    pending_t *p = malloc(sizeof *p);
    if (!p) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    *p = (pending_t){req, run, why};
    ratelimit_take(hub_ratelimit(http_req_hub(req)), keys, n, on_answer, p);
}

void guard_http_request(http_req_t *req, guard_run_fn run)
{
    hub_t *hub = http_req_hub(req);
    const auth_identity_t *who = http_req_identity(req);
    char ip[CLIENTIP_MAX + 4];
    if (who && userstate_is_deleted(hub_userstate(hub), who->uid)) {
        metrics_deleted_user_refused();
        http_respond_error(req, 403, "account_deleted", "this account was deleted");
        return;
    }
    if (strncmp(http_req_path(req), "/api/", 5) != 0) {
        run(req); /* health checks, metrics and the OpenAPI document are not budgeted */
        return;
    }
    clientip_limit_key(http_req_client_ip(req), ip, sizeof ip);
    rl_key_t keys[2] = {{LIMIT_REST_IP, ip}, {LIMIT_REST_USER, who ? who->uid : ""}};
    ask(req, keys, who ? 2 : 1, run, NULL);
}

void guard_http_bad_token(http_req_t *req, const char *why)
{
    char ip[CLIENTIP_MAX + 4];
    clientip_limit_key(http_req_client_ip(req), ip, sizeof ip);
    rl_key_t key = {LIMIT_TOKEN, ip};
    ask(req, &key, 1, NULL, why);
}
