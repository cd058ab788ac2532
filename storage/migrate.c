/*
 * migrate: applies the embedded SQL migrations at start-up (see migrate.h).
 *
 * Blocking libpq on purpose: this runs before the event loop exists.
 *
 * The sequence, on one connection:
 *   1. pg_advisory_lock(MIGRATE_LOCK_KEY): hub processes that start together
 *      queue up here, so each migration is applied once. The lock is taken
 *      before CREATE TABLE IF NOT EXISTS, which is not safe against a
 *      concurrent creator on its own.
 *   2. schema_migrations and schema_sql_files are created if missing, the
 *      applied versions and the domain files' recorded hashes read.
 *   3. A database newer than this binary is refused, and so is one that lacks
 *      a migration older than its newest (the histories have diverged).
 *   4. One BEGIN/COMMIT around: each pending migration with its
 *      schema_migrations row, then each domain file whose hash differs from
 *      the recorded one with its schema_sql_files row. Domain files come
 *      after the migrations because their functions name the tables (row
 *      types, and LANGUAGE sql bodies are checked at CREATE); a migration
 *      that must DROP an old function signature runs before the file that
 *      creates the new one, in the same transaction, so no caller ever sees
 *      the function missing. On error, ROLLBACK and stop: nothing changed.
 *   5. Unlock and disconnect (disconnecting would release the lock anyway).
 *
 * A file is run as one simple-protocol query string, so it may hold many
 * statements but must not contain BEGIN/COMMIT itself, nor anything that
 * refuses to run in a transaction (CREATE INDEX CONCURRENTLY, ...). A
 * migration may be comments only (its functions moved to a domain file).
 */
#include "migrate.h"

#include "pg_pool.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* "RnMigrat" read as a big-endian bigint: any constant will do, as long as it never changes. */
#define MIGRATE_LOCK_KEY "5939770073650717044"

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int migration_version_of(const char *name)
{
    const char *p = name;
    long v = 0;
    size_t digits = 0, rest;

    if (!name)
        return -1;
    /* At most 9 digits: the version always fits an int. */
    while (isdigit((unsigned char)*p) && digits < 10) {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 9 || *p != '_')
        return -1;
    p++;
    /* A non-empty name of [A-Za-z0-9_.-], then ".sql" (same rule as embed_migrations.cmake). */
    rest = strlen(p);
    if (rest <= 4 || strcmp(p + rest - 4, ".sql") != 0)
        return -1;
    for (size_t i = 0; i < rest - 4; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-')
            return -1;
    }
    if (v < 1)
        return -1;
    return (int)v;
}

static int cmp_version(const void *a, const void *b)
{
    const migration_t *x = a, *y = b;

    return (x->version > y->version) - (x->version < y->version);
}

int migrations_order(migration_t *m, size_t n, char *err, size_t errlen)
{
    if (n > 0 && !m) {
        set_err(err, errlen, "migrations: NULL array");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version < 1) {
            set_err(err, errlen, "migration %s: version %d (must be >= 1)",
                    m[i].name ? m[i].name : "(unnamed)", m[i].version);
            return -1;
        }
        if (!m[i].name || !m[i].sql) {
            set_err(err, errlen, "migration version %d: missing name or SQL", m[i].version);
            return -1;
        }
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), cmp_version);
    for (size_t i = 1; i < n; i++) {
        if (m[i].version == m[i - 1].version) {
            set_err(err, errlen, "migrations %s and %s have the same version %d", m[i - 1].name,
                    m[i].name, m[i].version);
            return -1;
        }
    }
    return 0;
}

/* Runs one statement that returns no rows or some; 0 or -1 with err set. */
static int exec_ok(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    char line[512];

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return 0;
    }
    set_err(err, errlen, "migrate: %s failed: %s", what,
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
    PQclear(res);
    return -1;
}

/* Discards NOTICEs ("relation already exists, skipping") instead of printing them. */
static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*
 * Reads the applied versions, sorted. Returns their count (>= 0) with
 * *out malloc'ed (NULL when none), or -1 with err set.
 */
static int applied_versions(PGconn *pg, int **out, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, "SELECT version FROM schema_migrations ORDER BY version");
    char line[512];
    int n, *v = NULL;

    *out = NULL;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_err(
            err, errlen, "migrate: reading schema_migrations failed: %s",
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
        PQclear(res);
        return -1;
    }
    n = PQntuples(res);
    if (n > 0) {
        v = malloc((size_t)n * sizeof(*v));
        if (!v) {
            set_err(err, errlen, "migrate: out of memory");
            PQclear(res);
            return -1;
        }
        for (int i = 0; i < n; i++)
            v[i] = atoi(PQgetvalue(res, i, 0));
    }
    PQclear(res);
    *out = v;
    return n;
}

static int is_applied(const int *v, int n, int version)
{
    for (int i = 0; i < n; i++)
        if (v[i] == version)
            return 1;
    return 0;
}

/* Runs one file's SQL (comments only is fine); 0 or -1 with err set. kind: "migration", ... */
static int exec_file(PGconn *pg, const char *kind, const char *name, const char *sql, char *err,
                     size_t errlen)
{
    PGresult *res = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    char line[1024];

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
        PQclear(res);
        return 0;
    }
    set_err(err, errlen, "%s %s failed, everything rolled back: %s", kind, name,
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
    PQclear(res);
    return -1;
}

/* Runs a parameterised statement that returns no rows; 0 or -1 with err set. */
static int exec_params(PGconn *pg, const char *sql, int nparams, const char *const *params,
                       const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    char line[1024];

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        return 0;
    }
    set_err(err, errlen, "%s: recording it failed, rolled back: %s", what,
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
    PQclear(res);
    return -1;
}

/* Applies one migration and records it (inside the caller's transaction). */
static int apply_one(PGconn *pg, const migration_t *mg, char *err, size_t errlen)
{
    char version[16];
    const char *params[2] = {version, mg->name};

    if (exec_file(pg, "migration", mg->name, mg->sql, err, errlen) < 0)
        return -1;
    snprintf(version, sizeof(version), "%d", mg->version);
    return exec_params(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                       params, mg->name, err, errlen);
}

/* Applies one domain file and records its hash (inside the caller's transaction). */
static int apply_file(PGconn *pg, const sql_file_t *f, char *err, size_t errlen)
{
    const char *params[2] = {f->name, f->sha256};

    if (exec_file(pg, "SQL domain file", f->name, f->sql, err, errlen) < 0)
        return -1;
    return exec_params(pg,
                       "INSERT INTO schema_sql_files (name, sha256) VALUES ($1, $2)"
                       " ON CONFLICT (name) DO UPDATE"
                       " SET sha256 = EXCLUDED.sha256, applied_at = now()",
                       2, params, f->name, err, errlen);
}

/*
 * Reads the recorded domain-file hashes: a result of (name, sha256) rows the
 * caller PQclear()s, or NULL with err set.
 */
static PGresult *recorded_files(PGconn *pg, char *err, size_t errlen)
{
    PGresult *res = PQexec(pg, "SELECT name, sha256 FROM schema_sql_files");
    char line[512];

    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    set_err(err, errlen, "migrate: reading schema_sql_files failed: %s",
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
    PQclear(res);
    return NULL;
}

/* Whether f's content is the one recorded in rec (recorded_files()). */
static int file_is_current(const PGresult *rec, const sql_file_t *f)
{
    for (int i = 0; i < PQntuples(rec); i++)
        if (!strcmp(PQgetvalue(rec, i, 0), f->name))
            return !strcmp(PQgetvalue(rec, i, 1), f->sha256);
    return 0;
}

/*
 * Applies the pending migrations and the changed domain files in one
 * transaction. Returns the number of migrations applied (*nfiles: domain
 * files), or -1 after ROLLBACK.
 */
static int apply_all(PGconn *pg, const migration_t *m, size_t n, const int *applied, int napplied,
                     const PGresult *rec, int *nfiles, char *err, size_t errlen)
{
    size_t nf = 0;
    const sql_file_t *files = sql_files_builtin(&nf);
    int count = 0, began = 0;
    PGresult *res;
    char line[512];

    *nfiles = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_applied(applied, napplied, m[i].version))
            continue;
        if (!began && exec_ok(pg, "BEGIN", "BEGIN", err, errlen) < 0)
            return -1;
        began = 1;
        if (apply_one(pg, &m[i], err, errlen) < 0)
            goto fail;
        count++;
    }
    for (size_t i = 0; i < nf; i++) {
        if (file_is_current(rec, &files[i]))
            continue;
        if (!began && exec_ok(pg, "BEGIN", "BEGIN", err, errlen) < 0)
            return -1;
        began = 1;
        if (apply_file(pg, &files[i], err, errlen) < 0)
            goto fail;
        (*nfiles)++;
    }
    if (!began)
        return 0;
    /* COMMIT can fail too (deferred constraints): then nothing was applied. */
    res = PQexec(pg, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_err(
            err, errlen, "migrate: COMMIT failed: %s",
            pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(pg), line, sizeof(line)));
        PQclear(res);
        goto fail;
    }
    PQclear(res);
    return count;

fail:
    /* Best effort: if the connection is gone, the server rolls back anyway. */
    PQclear(PQexec(pg, "ROLLBACK"));
    *nfiles = 0;
    return -1;
}

int migrate_apply(const char *conninfo, const migration_t *m, size_t n, char *err, size_t errlen)
{
    return migrate_apply_counted(conninfo, m, n, NULL, err, errlen);
}

int migrate_apply_counted(const char *conninfo, const migration_t *m, size_t n, int *files_applied,
                          char *err, size_t errlen)
{
    PGconn *pg = NULL;
    PGresult *rec = NULL;
    int *applied = NULL, napplied, newest_db, newest_bin, count = 0, nfiles = 0, locked = 0;
    char line[512];

    if (files_applied)
        *files_applied = 0;

    if (!conninfo || (n > 0 && !m)) {
        set_err(err, errlen, "migrate: bad arguments");
        return -1;
    }
    /* The caller passes them sorted (migrations_order); check rather than trust. */
    for (size_t i = 0; i < n; i++) {
        if (m[i].version < 1 || !m[i].name || !m[i].sql ||
            (i > 0 && m[i].version <= m[i - 1].version)) {
            set_err(err, errlen, "migrate: migrations not sorted by unique version >= 1 at %s",
                    m[i].name ? m[i].name : "(unnamed)");
            return -1;
        }
    }
    newest_bin = n > 0 ? m[n - 1].version : 0;

    pg = PQconnectdb(conninfo);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        set_err(err, errlen, "migrate: cannot connect to PostgreSQL: %s",
                pg ? pg_one_line(PQerrorMessage(pg), line, sizeof(line)) : "out of memory");
        goto fail;
    }
    PQsetNoticeProcessor(pg, quiet_notice, NULL);

    if (exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "taking the migration lock",
                err, errlen) < 0)
        goto fail;
    locked = 1;

    if (exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_migrations", err, errlen) < 0)
        goto fail;
    if (exec_ok(pg,
                "CREATE TABLE IF NOT EXISTS schema_sql_files ("
                " name text PRIMARY KEY,"
                " sha256 text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_sql_files", err, errlen) < 0)
        goto fail;

    napplied = applied_versions(pg, &applied, err, errlen);
    if (napplied < 0)
        goto fail;
    newest_db = napplied > 0 ? applied[napplied - 1] : 0;

    if (newest_db > newest_bin) {
        set_err(err, errlen,
                "migrate: the database schema is at version %d but this binary knows versions "
                "up to %d only; refusing to run against a newer schema (upgrade the binary)",
                newest_db, newest_bin);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].version < newest_db && !is_applied(applied, napplied, m[i].version)) {
            set_err(err, errlen,
                    "migrate: migration %s was never applied but the database is already at "
                    "version %d; refusing to apply it out of order",
                    m[i].name, newest_db);
            goto fail;
        }
    }

    rec = recorded_files(pg, err, errlen);
    if (!rec)
        goto fail;
    count = apply_all(pg, m, n, applied, napplied, rec, &nfiles, err, errlen);
    if (count < 0)
        goto fail;

    PQclear(PQexec(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    PQclear(rec);
    free(applied);
    PQfinish(pg);
    if (files_applied)
        *files_applied = nfiles;
    return count;

fail:
    if (locked)
        PQclear(PQexec(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    PQclear(rec);
    free(applied);
    PQfinish(pg);
    return -1;
}
