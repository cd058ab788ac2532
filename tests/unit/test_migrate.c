/*
 * test_migrate: the parts of the migration runner that need no database:
 * file-name parsing, ordering and validation, and the embedded set.
 * migrate_apply needs a live PostgreSQL: it runs whenever the hub starts in the
 * integration suites.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "migrate.h"

/* CHECK with the condition itself as the message. */
#define EXPECT(cond) CHECK(cond, #cond)

static void test_version_of(void)
{
    EXPECT(migration_version_of("0001_init.sql") == 1);
    EXPECT(migration_version_of("0042_add-things.v2.sql") == 42);
    EXPECT(migration_version_of("7_short.sql") == 7);
    EXPECT(migration_version_of("123456789_max.sql") == 123456789);

    EXPECT(migration_version_of(NULL) == -1);
    EXPECT(migration_version_of("") == -1);
    EXPECT(migration_version_of("0000_zero.sql") == -1);     /* versions start at 1 */
    EXPECT(migration_version_of("init.sql") == -1);          /* no number */
    EXPECT(migration_version_of("0001init.sql") == -1);      /* no '_' */
    EXPECT(migration_version_of("0001_.sql") == -1);         /* empty name */
    EXPECT(migration_version_of("0001_init") == -1);         /* no .sql */
    EXPECT(migration_version_of("0001_init.sql.bak") == -1); /* not .sql at the end */
    EXPECT(migration_version_of("0001_init.SQL") == -1);
    EXPECT(migration_version_of("0001_in it.sql") == -1); /* blank in the name */
    EXPECT(migration_version_of("0001_a/b.sql") == -1);   /* no paths */
    EXPECT(migration_version_of("-001_neg.sql") == -1);
    EXPECT(migration_version_of(" 0001_x.sql") == -1);
    EXPECT(migration_version_of("1234567890_too_big.sql") == -1); /* beyond 9 digits */
    EXPECT(migration_version_of("99999999999999999999_overflow.sql") == -1);
}

static void test_order(void)
{
    char err[256];
    migration_t m[] = {
        {3, "0003_c.sql", "SELECT 3"},
        {1, "0001_a.sql", "SELECT 1"},
        {10, "0010_j.sql", "SELECT 10"},
        {2, "0002_b.sql", "SELECT 2"},
    };
    migration_t dup[] = {
        {1, "0001_a.sql", "SELECT 1"},
        {2, "0002_b.sql", "SELECT 2"},
        {1, "0001_again.sql", "SELECT 1"},
    };
    migration_t zero[] = {
        {1, "0001_a.sql", "SELECT 1"},
        {0, "0000_z.sql", "SELECT 0"},
    };
    migration_t neg[] = {{-4, "x.sql", "SELECT 1"}};
    migration_t nosql[] = {{1, "0001_a.sql", NULL}};

    err[0] = '\0';
    EXPECT(migrations_order(m, 4, err, sizeof(err)) == 0);
    EXPECT(err[0] == '\0');
    EXPECT(m[0].version == 1 && strcmp(m[0].name, "0001_a.sql") == 0);
    EXPECT(m[1].version == 2 && strcmp(m[1].sql, "SELECT 2") == 0);
    EXPECT(m[2].version == 3);
    EXPECT(m[3].version == 10); /* numeric, not lexical */

    err[0] = '\0';
    EXPECT(migrations_order(dup, 3, err, sizeof(err)) == -1);
    EXPECT(strstr(err, "same version 1") != NULL);

    err[0] = '\0';
    EXPECT(migrations_order(zero, 2, err, sizeof(err)) == -1);
    EXPECT(strstr(err, "0000_z.sql") != NULL);

    EXPECT(migrations_order(neg, 1, err, sizeof(err)) == -1);
    EXPECT(migrations_order(nosql, 1, err, sizeof(err)) == -1);

    /* Empty sets are fine; a NULL err buffer is tolerated. */
    EXPECT(migrations_order(NULL, 0, err, sizeof(err)) == 0);
    EXPECT(migrations_order(dup, 3, NULL, 0) == -1);
}

static void test_builtin(void)
{
    size_t n = 0;
    const migration_t *m = migrations_builtin(&n);

    EXPECT(m != NULL);
    EXPECT(n >= 1);
    if (!m || n == 0)
        return;
    EXPECT(m[0].version == 1);
    EXPECT(strcmp(m[0].name, "0001_init.sql") == 0);
    EXPECT(strstr(m[0].sql, "CREATE TABLE users") != NULL);
    for (size_t i = 0; i < n; i++) {
        EXPECT(m[i].sql != NULL && strlen(m[i].sql) > 0);
        EXPECT(migration_version_of(m[i].name) == m[i].version);
        if (i > 0)
            EXPECT(m[i].version > m[i - 1].version);
    }
}

int main(void)
{
    test_version_of();
    test_order();
    test_builtin();
    return check_report();
}
