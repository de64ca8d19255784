/*
 * serve_unavailable.c — `jamba serve` in a build configured without libmicrohttpd: says so.
 */
#include "tools/jamba/cli.h"

#include <stdio.h>

int cmd_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "jamba: error: this jamba was built without the HTTP server: libmicrohttpd was not found when it "
                    "was configured (install libmicrohttpd-dev, e.g. with tools/deps.sh, and configure again)\n");
    return CLI_EXIT_FAIL;
}
