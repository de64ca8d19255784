/*
 * test_stop_text.c — the stop-string matcher of the CLI and the server (tools/jamba/stop_text.c): text that
 * may begin a stop string is held, the earliest stop string ends the text, empty strings never match.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/support/testutil.h"
#include "tools/jamba/stop_text.h"

static size_t scan(const char *held, const char *const *stops, int n, bool *found) {
    return stop_text_scan(held, strlen(held), stops, n, found);
}

JB_TEST(stop_text, releases_all_but_a_tail_that_may_begin_a_stop_string) {
    const char *stops[] = {"END", "\n\nUser:"};
    bool found;
    cr_assert_eq(scan("hello world", stops, 2, &found), 11);
    cr_assert_not(found);
    cr_assert_eq(scan("hello EN", stops, 2, &found), 6, "\"EN\" may become END");
    cr_assert_not(found);
    cr_assert_eq(scan("line\n\nUse", stops, 2, &found), 4, "the longest tail wins");
    cr_assert_eq(scan("", stops, 2, &found), 0);
    cr_assert_not(found);
}

JB_TEST(stop_text, the_earliest_stop_string_ends_the_text) {
    const char *stops[] = {"b", "a"}; /* "b" is listed first but "a" occurs first */
    bool found;
    cr_assert_eq(scan("xxab", stops, 2, &found), 2);
    cr_assert(found);
    const char *one[] = {"stop"};
    cr_assert_eq(scan("go stop stop", one, 1, &found), 3);
    cr_assert(found);
    const char *empty[] = {"", "z"};
    cr_assert_eq(scan("abc", empty, 2, &found), 3, "an empty stop string matches nothing");
    cr_assert_not(found);
}
