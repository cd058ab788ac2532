/* audit: `retronova-hub audit`, the check of the ticket books (see audit.h). */
#include "audit.h"

#include <libpq-fe.h>
#include <stdlib.h>

int audit_run(const char *conninfo, FILE *out, FILE *err)
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
