/* ops: operator commands that block, run without a loop (see ops.h). */
#include "ops.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

int ops_audit(const char *conninfo, FILE *out, FILE *err)
{
    int code = 2;
    PGresult *res = NULL;
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(err, "audit: %s", PQerrorMessage(conn));
        goto done;
    }
    /* One snapshot for every check, so that a write in between cannot show up
     * as a discrepancy. */
    res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(err, "audit: %s", PQresultErrorMessage(res));
        goto done;
    }
    PQclear(res);
    res = PQexec(conn, "SELECT kind, detail FROM rn_audit() ORDER BY kind, detail");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(err, "audit: %s", PQresultErrorMessage(res));
        goto done;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s: %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    fprintf(out, "%d discrepanc%s\n", n, n == 1 ? "y" : "ies");
    code = n ? 1 : 0;
done:
    PQclear(res);
    PQfinish(conn);
    return code;
}

int ops_rotate_cabinet_key(const char *conninfo, long arcade_id, const char *key_hash_hex,
                           FILE *err)
{
    int rc = -1;
    char idtext[24];
    PGresult *res = NULL;
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(err, "cabinet-key: %s", PQerrorMessage(conn));
        goto done;
    }
    snprintf(idtext, sizeof idtext, "%ld", arcade_id);
    const char *params[] = {idtext, key_hash_hex};
    /* audited with the actor "cli": the command runs without an admin identity */
    res = PQexecParams(conn, "SELECT rn_admin_arcade_rotate_key('cli', $1::bigint, $2)->>'status'",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(err, "cabinet-key: %s", PQresultErrorMessage(res));
    else if (strcmp(PQgetvalue(res, 0, 0), "200") != 0)
        fprintf(err, "cabinet-key: no arcade %ld\n", arcade_id);
    else
        rc = 0;
done:
    PQclear(res);
    PQfinish(conn);
    return rc;
}
