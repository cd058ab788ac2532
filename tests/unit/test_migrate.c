/*
 * test_migrate: the parts of the migration runner that need no database:
 * file-name parsing, ordering and validation, and the embedded set; and two
 * rules read from the embedded SQL itself (what the binary applies):
 *   - every SQL function is defined once: in a domain file (storage/sql) as
 *     CREATE OR REPLACE, or, for a trigger's function, in the migration that
 *     creates the trigger; never in two places;
 *   - users.tickets_balance and the ledger are written only by rn_ledger_post.
 * migrate_apply needs a live PostgreSQL: it runs whenever the hub starts in the
 * integration suites (tests/integration/sql_domains.test.js: re-application by
 * hash, the refusal of a newer database, the ledger under a mixed workload).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
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

static void test_files_builtin(void)
{
    size_t n = 0;
    const sql_file_t *f = sql_files_builtin(&n);

    EXPECT(f != NULL);
    EXPECT(n >= 5);
    if (!f || n == 0)
        return;
    EXPECT(strcmp(f[0].name, "01_common.sql") == 0);
    for (size_t i = 0; i < n; i++) {
        EXPECT(f[i].sql != NULL && strlen(f[i].sql) > 0);
        EXPECT(f[i].sha256 != NULL && strlen(f[i].sha256) == 64 &&
               strspn(f[i].sha256, "0123456789abcdef") == 64);
        if (i > 0)
            EXPECT(strcmp(f[i].name, f[i - 1].name) > 0); /* applied in name order */
    }
}

/* One embedded SQL text, lower-cased, comments blanked, blanks collapsed to one space. */
typedef struct sql_text {
    const char *name;
    int migration; /* 1: storage/migrations, 0: storage/sql */
    char *code;
} sql_text_t;

static char *code_of(const char *sql)
{
    size_t len = strlen(sql), o = 0;
    char *out = malloc(len + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (sql[i] == '-' && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n')
                i++;
        }
        char c = (char)tolower((unsigned char)sql[i]);
        if (isspace((unsigned char)c)) {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
            continue;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

#define TEXTS_MAX 64

/* Every embedded migration and domain file; returns how many (free with texts_free). */
static size_t texts_all(sql_text_t *t)
{
    size_t nm = 0, nf = 0, n = 0;
    const migration_t *m = migrations_builtin(&nm);
    const sql_file_t *f = sql_files_builtin(&nf);

    for (size_t i = 0; i < nm && n < TEXTS_MAX; i++)
        t[n++] = (sql_text_t){m[i].name, 1, code_of(m[i].sql)};
    for (size_t i = 0; i < nf && n < TEXTS_MAX; i++)
        t[n++] = (sql_text_t){f[i].name, 0, code_of(f[i].sql)};
    return n;
}

static void texts_free(sql_text_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].code);
}

/*
 * The next "create [or replace] function NAME" at or after p: returns where it
 * starts (NULL: none) and copies NAME; *replace says whether it was OR REPLACE.
 */
static const char *next_function(const char *p, char *name, size_t len, int *replace)
{
    const char *a = strstr(p, "create function "), *b = strstr(p, "create or replace function ");
    const char *at = a && (!b || a < b) ? a : b;
    const char *q;
    size_t k = 0;

    if (!at)
        return NULL;
    *replace = at == b;
    q = at + (*replace ? strlen("create or replace function ") : strlen("create function "));
    while ((isalnum((unsigned char)*q) || *q == '_') && k + 1 < len)
        name[k++] = *q++;
    name[k] = '\0';
    return at;
}

#define FUNCTIONS_MAX 512

static void test_one_definition(void)
{
    sql_text_t t[TEXTS_MAX];
    size_t n = texts_all(t), nfun = 0, in_domains = 0;
    static char names[FUNCTIONS_MAX][64];
    const char *where[FUNCTIONS_MAX];
    char msg[256];

    for (size_t i = 0; i < n; i++) {
        const char *p = t[i].code;
        char name[64];
        int replace;

        EXPECT(p != NULL);
        while (p && (p = next_function(p, name, sizeof name, &replace)) != NULL) {
            const char *ret = strstr(p, " returns ");

            for (size_t j = 0; j < nfun; j++) {
                snprintf(msg, sizeof msg, "%s is defined in %s and again in %s", name, where[j],
                         t[i].name);
                CHECK(strcmp(names[j], name) != 0, msg);
            }
            if (t[i].migration) {
                snprintf(msg, sizeof msg,
                         "%s: %s is not a trigger's function: it belongs in a storage/sql file",
                         t[i].name, name);
                CHECK(ret && strncmp(ret, " returns trigger", 16) == 0, msg);
            } else {
                snprintf(msg, sizeof msg, "%s: %s must be CREATE OR REPLACE", t[i].name, name);
                CHECK(replace, msg);
                in_domains++;
            }
            if (nfun < FUNCTIONS_MAX) {
                snprintf(names[nfun], sizeof names[nfun], "%s", name);
                where[nfun++] = t[i].name;
            }
            p += 6;
        }
    }
    EXPECT(in_domains >= 100); /* the scanner does find them */
    texts_free(t, n);
}

/* The function whose definition encloses position at of code (the last one started before it). */
static void enclosing(const char *code, const char *at, char *name, size_t len)
{
    const char *p = code, *q;
    char cur[64];
    int replace;

    snprintf(name, len, "(no function)");
    while ((q = next_function(p, cur, sizeof cur, &replace)) != NULL && q < at) {
        snprintf(name, len, "%s", cur);
        p = q + 6;
    }
}

/* Counts the statements starting with `start` that mention `what`, checking each is in
 * rn_ledger_post. */
static int writes_only_in_ledger_post(const sql_text_t *t, const char *start, const char *what)
{
    int found = 0;
    char fn[64], msg[256];

    for (const char *p = strstr(t->code, start); p; p = strstr(p + 1, start)) {
        const char *end = strchr(p, ';');
        size_t stmt = end ? (size_t)(end - p) : strlen(p);
        const char *hit = strstr(p, what);

        if (!hit || (size_t)(hit - p) >= stmt)
            continue;
        enclosing(t->code, p, fn, sizeof fn);
        snprintf(msg, sizeof msg, "%s: %s writes %s: only rn_ledger_post may", t->name, fn, what);
        CHECK(strcmp(fn, "rn_ledger_post") == 0, msg);
        found++;
    }
    return found;
}

static void test_ledger_writes(void)
{
    sql_text_t t[TEXTS_MAX];
    size_t n = texts_all(t);
    int balance = 0, ledger = 0;

    for (size_t i = 0; i < n; i++) {
        if (!t[i].code)
            continue;
        balance += writes_only_in_ledger_post(&t[i], "update users ", "tickets_balance");
        balance += writes_only_in_ledger_post(&t[i], "insert into users ", "tickets_balance");
        ledger += writes_only_in_ledger_post(&t[i], "insert into ledger ", "ledger");
    }
    EXPECT(balance == 1); /* rn_ledger_post's own UPDATE, and nothing else */
    EXPECT(ledger == 1);
    texts_free(t, n);
}

int main(void)
{
    test_version_of();
    test_order();
    test_builtin();
    test_files_builtin();
    test_one_definition();
    test_ledger_writes();
    return check_report();
}
