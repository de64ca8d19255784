/*
 * version.c — run-time version queries.
 */
#include "jamba.h"

const char *jamba_version(void) { return JAMBA_VERSION_STRING; }
int jamba_version_number(void) { return JAMBA_VERSION_NUMBER; }
