/* report_util.h: reading what the trainer writes (train.csv, eval's JSON),
 * for the Criterion tests of the trainer. Include after criterion.h. */
#ifndef TESTS_REPORT_UTIL_H
#define TESTS_REPORT_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of column `name` in data row `row` (1 = first) of a CSV text. */
static inline double csv_value(const char *csv, int row, const char *name)
{
    int col = 0;
    size_t len = strlen(name);
    const char *p = csv;
    while (!(strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\n'))) {
        p += strcspn(p, ",\n");
        cr_assert_eq(*p, ',', "no column %s", name);
        p++;
        col++;
    }
    p = csv;
    for (int i = 0; i < row; i++) {
        p = strchr(p, '\n');
        cr_assert(p && p[1], "no row %d", row);
        p++;
    }
    for (int i = 0; i < col; i++)
        p = strchr(p, ',') + 1;
    return strtod(p, NULL);
}

static inline int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* The "mean" of "key" inside the object "group" (NULL: top level) of eval's JSON. */
static inline double json_mean(const char *json, const char *group, const char *key)
{
    char pattern[128];
    const char *p = json;
    if (group) {
        snprintf(pattern, sizeof pattern, "\"%s\": {", group);
        p = strstr(json, pattern);
        cr_assert_not_null(p, "no group %s in %s", group, json);
    }
    snprintf(pattern, sizeof pattern, "\"%s\": {\"mean\": ", key);
    p = strstr(p, pattern);
    cr_assert_not_null(p, "no %s in %s", key, json);
    char *end;
    double v = strtod(p + strlen(pattern), &end);
    cr_assert(end != p + strlen(pattern) && isfinite(v), "%s.%s is not a finite number", group ? group : "", key);
    return v;
}

#endif
