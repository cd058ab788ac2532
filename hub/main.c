/*
 * main: the retronova-hub command line. `serve` (the default) runs the hub,
 * or with --workers N a supervisor and N hub processes sharing the port
 * (supervisor.h); the other commands are one-shot operator tools that run
 * without a loop and may block.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apikey.h"
#include "auth.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "ops.h"
#include "supervisor.h"

static int cmd_migrate(const hub_config_t *cfg)
{
    char err[512];
    size_t n;
    int files = 0;
    const migration_t *all = migrations_builtin(&n);
    int applied = migrate_apply_counted(cfg->database_url, all, n, &files, err, sizeof err);
    if (applied < 0) {
        fprintf(stderr, "migrate: %s\n", err);
        return 1;
    }
    printf("applied %d migration(s) and %d SQL domain file(s); schema at version %d\n", applied,
           files, n ? all[n - 1].version : 0);
    return 0;
}

/* token --uid UID [--admin] [--ttl SECONDS]: a dev token signed with the HS256 secret. */
typedef struct token_args {
    const char *uid;
    bool admin;
    int ttl;
} token_args_t;

/*
 * Takes token's own flags out of argv (compacting it) so the rest goes to the
 * shared option parser. Returns the new argc, or -1 on a malformed flag.
 */
static int take_token_args(int argc, char **argv, token_args_t *t)
{
    int out = 0;
    *t = (token_args_t){NULL, false, 24 * 3600};
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--uid") && i + 1 < argc)
            t->uid = argv[++i];
        else if (!strcmp(argv[i], "--admin"))
            t->admin = true;
        else if (!strcmp(argv[i], "--ttl") && i + 1 < argc)
            t->ttl = atoi(argv[++i]);
        else
            argv[out++] = argv[i];
    }
    return t->ttl > 0 ? out : -1;
}

static int cmd_token(const hub_config_t *cfg, const token_args_t *t)
{
    if (!t->uid || !cfg->jwt_hs256_secret) {
        fprintf(stderr, "token: needs --uid and an HS256 secret (HUB_JWT_HS256_SECRET)\n");
        return 2;
    }
    char *token = auth_mint_hs256(cfg->jwt_hs256_secret, t->uid, t->admin, time(NULL), t->ttl);
    if (!token)
        return 1;
    printf("%s\n", token);
    free(token);
    return 0;
}

/*
 * cabinet-key ARCADE_ID: a fresh API key, printed once; only its hash is
 * stored. Cabinets connected with the old key keep their sockets until they
 * reconnect (the admin REST route closes them at once).
 */
static int cmd_cabinet_key(const hub_config_t *cfg, int argc, char **argv)
{
    long id = argc == 1 ? atol(argv[0]) : 0;
    char key[APIKEY_MAX], hash[APIKEY_HASH_HEX];
    if (id <= 0) {
        fprintf(stderr, "cabinet-key: usage: cabinet-key ARCADE_ID\n");
        return 2;
    }
    if (apikey_generate(id, key, sizeof key) != 0)
        return 1;
    apikey_hash_hex(key, hash);
    if (ops_rotate_cabinet_key(cfg->database_url, id, hash, stderr) != 0)
        return 1;
    printf("%s\n", key);
    return 0;
}

/* One --workers process: says which worker it is in /metrics, then runs a hub. */
static int run_worker(const hub_config_t *cfg, int index, int starts)
{
    metrics_set_worker(index, starts);
    return hub_run(cfg);
}

int main(int argc, char **argv)
{
    hub_config_t cfg;
    config_defaults(&cfg);
    int first = 1;
    const char *cmd = "serve";
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        first = 2;
    }
    token_args_t targs = {NULL, false, 0};
    if (!strcmp(cmd, "token") && (argc = take_token_args(argc, argv, &targs)) < 0) {
        fprintf(stderr, "token: bad arguments (see --help)\n");
        return 2;
    }
    int rest = config_parse_args(&cfg, argc, argv, first);
    if (rest == -2)
        return 0;
    if (rest < 0)
        return 2;
    int level = log_level_parse(cfg.log_level);
    log_set_level(level < 0 ? LOG_INFO : (log_level_t)level);

    if (!strcmp(cmd, "token"))
        return rest == argc ? cmd_token(&cfg, &targs) : 2;
    if (!strcmp(cmd, "routes")) { /* needs no database: the tables are in the binary */
        if (rest != argc) {
            fprintf(stderr, "routes: takes no arguments\n");
            return 2;
        }
        return hub_print_routes(stdout) == 0 ? 0 : 1;
    }
    char err[256];
    if (config_validate(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (!strcmp(cmd, "migrate"))
        return cmd_migrate(&cfg);
    if (!strcmp(cmd, "audit"))
        return rest == argc ? ops_audit(cfg.database_url, stdout, stderr) : 2;
    if (!strcmp(cmd, "cabinet-key"))
        return cmd_cabinet_key(&cfg, argc - rest, argv + rest);
    if (strcmp(cmd, "serve") != 0 || rest != argc) {
        fprintf(stderr, "unknown command or argument (see --help)\n");
        return 2;
    }
    return cfg.workers > 1 ? supervisor_run(&cfg, run_worker) : hub_run(&cfg);
}
