/*
 * cabinet_key: a cabinet's API key checked against its arcade's row (see
 * cabinet.h). The SQL lives here, with the cabinet's other statements; the
 * session (net) only asks through its hook and hears the answer.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "cabinet.h"

typedef struct key_check {
    session_key_cb cb;
    void *arg;
    char key[APIKEY_MAX];
} key_check_t;

static void on_key_row(void *arg, int status, PGresult *res, const char *errmsg)
{
    key_check_t *kc = arg;
    int result;
    if (status != PG_OK)
        result = SESSION_KEY_EUNAVAILABLE;
    else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
             !apikey_matches(kc->key, PQgetvalue(res, 0, 0)))
        result = SESSION_KEY_EUNKNOWN;
    else
        result = 0;
    OPENSSL_cleanse(kc->key, sizeof kc->key);
    kc->cb(kc->arg, result, result == SESSION_KEY_EUNAVAILABLE ? errmsg : NULL);
    free(kc);
}

int cabinet_key_check(hub_t *hub, long arcade_id, const char *key, session_key_cb cb, void *arg)
{
    if (strlen(key) >= APIKEY_MAX)
        return -1;
    key_check_t *kc = calloc(1, sizeof *kc);
    if (!kc)
        return -1;
    kc->cb = cb;
    kc->arg = arg;
    strcpy(kc->key, key);
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%ld", arcade_id);
    const char *params[] = {idtext};
    if (pg_pool_query(hub_pool(hub),
                      "SELECT api_key_hash FROM arcades WHERE id = $1 AND deleted_at IS NULL", 1,
                      params, on_key_row, kc) != 0) {
        OPENSSL_cleanse(kc->key, sizeof kc->key);
        free(kc);
        return -1;
    }
    return 0;
}
