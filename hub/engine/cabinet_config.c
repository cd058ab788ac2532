/* cabinet_config: the config pushed to a cabinet when it connects (see cabinet_config.h). */
#include "cabinet_config.h"

#include <stdio.h>
#include <stdlib.h>

#include "db_call.h"
#include "log.h"

static void on_pushed(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    json_t *answer = NULL;
    if (status == PG_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        answer = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    if (json_integer_value(json_object_get(answer, "status")) == 200)
        db_publish(hub, answer);
    else
        log_warn("cabinet config not pushed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
    json_decref(answer);
}

int cabinet_config_push(hub_t *hub, long arcade_id)
{
    char idt[24];
    snprintf(idt, sizeof idt, "%ld", arcade_id);
    const char *params[] = {idt};
    return pg_pool_query(hub_pool(hub), "SELECT rn_cabinet_config_push($1::bigint)::text", 1,
                         params, on_pushed, hub);
}
