/*
 * version.c — run-time version queries.
 *
 * The version is written once, in project(jamba VERSION ...) of CMakeLists.txt. CMake compiles this file
 * with it (JB_PROJECT_VERSION, JB_PROJECT_VERSION_NUMBER), generates jamba.pc and the CMake package's
 * version file from it, and refuses to configure when jamba.h's JAMBA_VERSION_* macros say otherwise; the
 * assertion below checks the header once more. Built without CMake, the header's macros are used.
 */
#include "jamba.h"

#ifdef JB_PROJECT_VERSION
_Static_assert(JB_PROJECT_VERSION_NUMBER == JAMBA_VERSION_NUMBER,
               "include/jamba.h's JAMBA_VERSION_* differ from project(jamba VERSION) in CMakeLists.txt");
#define JB_VERSION_STRING JB_PROJECT_VERSION
#else
#define JB_VERSION_STRING JAMBA_VERSION_STRING
#endif

const char *jamba_version(void) { return JB_VERSION_STRING; }
int jamba_version_number(void) { return JAMBA_VERSION_NUMBER; }
