/*
 * migrate: the schema migrations runner.
 *
 * Two kinds of SQL, both embedded in the binary at build time:
 *   - migrations, storage/migrations/NNNN_name.sql (migrations_builtin()):
 *     tables, indexes, data changes, append-only; each is applied once and
 *     recorded in schema_migrations;
 *   - domain files, storage/sql/NN_domain.sql (sql_files_builtin()): every
 *     SQL function, once, as CREATE OR REPLACE; a file is applied again
 *     whenever its content changed (its SHA-256 is recorded in
 *     schema_sql_files), after the migrations.
 * The pending migrations and the changed domain files are applied in ONE
 * transaction, under an advisory lock so that several hub processes starting
 * together apply each once: a failure anywhere leaves the database as it was.
 * The runner refuses a database whose newest applied version is newer than
 * the newest this binary knows (and then applies no domain file either).
 *
 * Blocking (PQexec): never on the loop thread. The hub runs it on libuv's thread pool
 * (uv_queue_work) while it waits for PostgreSQL; the CLI `migrate` runs it without a loop.
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

typedef struct sql_file {
    const char *name;   /* file name, e.g. "03_queue.sql" */
    const char *sha256; /* of the content, 64 lower-case hex digits */
    const char *sql;
} sql_file_t;

/* The SQL domain files compiled into this binary, in the order they are applied. */
const sql_file_t *sql_files_builtin(size_t *count);

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
 * Connects with conninfo, applies the pending migrations of m (sorted), then
 * the domain files of sql_files_builtin() whose recorded hash differs, in one
 * transaction, and disconnects. Returns the number of migrations applied
 * (>= 0; *files_applied, when not NULL, gets the number of domain files), or
 * -1 with a message in err (connection failed, a migration or domain file
 * failed and everything was rolled back, or the database is newer than the
 * binary).
 */
int migrate_apply(const char *conninfo, const migration_t *m, size_t n, char *err, size_t errlen);

/* migrate_apply, also counting the domain files applied (files_applied may be NULL). */
int migrate_apply_counted(const char *conninfo, const migration_t *m, size_t n, int *files_applied,
                          char *err, size_t errlen);

#endif
