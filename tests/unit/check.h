/*
 * check: the few lines every C unit test shares. CHECK counts, a failure
 * prints where; check_report() prints the closing "N passed, M failed" line
 * and gives the exit code.
 */
#ifndef RN_CHECK_H
#define RN_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, what);                         \
        }                                                                                          \
    } while (0)

static inline int check_report(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
