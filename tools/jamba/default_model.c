/*
 * default_model.c — where the CLI finds its default model (see default_model.h). Nothing here depends on
 * where the source tree was when the binary was built: the binary can be copied or installed.
 */
#include "tools/jamba/default_model.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INSTALLED_MODEL "../share/jamba/models/demo" /* relative to the binary's folder */
#define SOURCE_MODEL "models/demo"                   /* relative to the source tree's root */

/* `dir` holds a config.json. */
static bool is_model(const char *dir) {
    char path[PATH_MAX];
    struct stat sb;
    return snprintf(path, sizeof path, "%s/config.json", dir) < (int)sizeof path && stat(path, &sb) == 0 &&
           S_ISREG(sb.st_mode);
}

/* found[PATH_MAX] = "<dir[0 .. dir_len)>/<rel>", a folder holding a config.json. */
static bool model_at(char *found, size_t dir_len, const char *dir, const char *rel) {
    return snprintf(found, PATH_MAX, "%.*s/%s", (int)dir_len, dir, rel) < PATH_MAX && is_model(found);
}

/* The folder of the running binary into dir[PATH_MAX]; false when /proc/self/exe cannot be read. */
static bool binary_dir(char *dir) {
    ssize_t n = readlink("/proc/self/exe", dir, PATH_MAX - 1);
    if (n <= 0)
        return false;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return false;
    slash[slash == dir] = '\0'; /* "/jamba" -> "/" */
    return true;
}

/* models/demo in `dir` or the nearest folder above it that has one, into found[PATH_MAX]. */
static bool find_in_ancestors(const char *dir, char *found) {
    for (size_t len = strlen(dir);;) { /* the folder is dir[0 .. len); "" is the root */
        if (model_at(found, len, dir, SOURCE_MODEL))
            return true;
        if (len == 0)
            return false;
        while (len > 0 && dir[len - 1] != '/') /* up one level: drop the last name and its slash */
            len--;
        len -= len > 0;
    }
}

const char *cli_default_model(jamba_error *err) {
    static char found[PATH_MAX];
    const char *env = getenv("JAMBA_MODEL");
    if (env && *env)
        return env;
    char bin[PATH_MAX];
    if (!binary_dir(bin)) {
        snprintf(err->message, sizeof err->message,
                 "no --model given, $JAMBA_MODEL is not set, and /proc/self/exe cannot be read to find the demo "
                 "model beside the binary; give --model DIR");
        return NULL;
    }
    if (model_at(found, strlen(bin), bin, INSTALLED_MODEL) || find_in_ancestors(bin, found))
        return found;
    snprintf(err->message, sizeof err->message,
             "no --model given and no default model found: $JAMBA_MODEL is not set, %.300s/" INSTALLED_MODEL
             " has no config.json (an installed jamba), and neither has " SOURCE_MODEL
             " in %.300s or any folder above it (a build tree); give --model DIR or set JAMBA_MODEL",
             bin, bin); /* long paths are cut to keep the message in one jamba_error */
    return NULL;
}
