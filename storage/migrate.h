/*
 * migrate: the schema migrations runner.
 *
 * Migrations are the files storage/migrations/NNNN_name.sql, embedded in the
 * binary at build time (see migrations_builtin()). Each pending one is applied
 * in its own transaction and recorded in schema_migrations. The runner takes
 * an advisory lock so that several hub processes starting together apply each
 * migration once, and it refuses a database whose newest applied version is
 * newer than the newest this binary knows.
 *
 * Blocking (PQexec): call it only at start-up, before the loop runs.
 */
#ifndef RN_MIGRATE_H
#define RN_MIGRATE_H

#include <stddef.h>

typedef struct migration {
    int version;      /* from the NNNN prefix, >= 1 */
    const char *name; /* file name, e.g. "0001_init.sql" */
    const char *sql;
} migration_t;

/* The migrations compiled into this binary, sorted by version. */
const migration_t *migrations_builtin(size_t *count);

/*
 * Parses the version of a file name "NNNN_name.sql". Returns the version
 * (>= 1) or -1 when the name does not have that form.
 */
int migration_version_of(const char *name);

/*
 * Sorts m by version in place and checks the set: every version >= 1, none
 * repeated. Returns 0, or -1 with a message in err.
 */
int migrations_order(migration_t *m, size_t n, char *err, size_t errlen);

/*
 * Connects with conninfo, applies the pending migrations of m (sorted),
 * disconnects. Returns the number applied (>= 0), or -1 with a message in err
 * (connection failed, a migration failed and was rolled back, or the database
 * is newer than the binary).
 */
int migrate_apply(const char *conninfo, const migration_t *m, size_t n, char *err, size_t errlen);

#endif
