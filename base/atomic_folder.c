/*
 * atomic_folder.c — see atomic_folder.h.
 */
#include "base/atomic_folder.h"

#include "base/alloc.h"
#include "base/atomic_file.h"
#include "base/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* JAMBA_ERR_ABORTED naming the destination when the caller asks to stop, else JAMBA_OK. */
static jamba_status check_cancel(const jb_stop *stop, const char *path, jamba_error *err) {
    if (!jb_stop_requested(stop))
        return JAMBA_OK;
    return jb_fail(err, JAMBA_ERR_ABORTED, "%s: the write was interrupted; the folder was not written", path);
}

/* path without trailing "/" and "/." (so "out/" and "out/." name the folder "out"); NULL when out of memory. */
static char *trimmed(const char *path) {
    char *p = jb_strdup(path);
    if (p == NULL)
        return NULL;
    for (size_t n = strlen(p); n > 1;) {
        if (p[n - 1] == '/')
            p[--n] = '\0';
        else if (n > 2 && p[n - 1] == '.' && p[n - 2] == '/')
            p[n -= 2] = '\0';
        else
            break;
    }
    return p;
}

/* Whether the folder holds nothing but "." and ".." (false when it cannot be read). */
static bool is_empty_folder(const char *path) {
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(d)) != NULL;)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* fsync every plain file of a folder, then the folder; stops (naming `dest`) when the writes are cancelled. */
static jamba_status sync_tree(const char *dir, const char *dest, const jb_stop *stop, jamba_error *err) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
    jamba_status st = JAMBA_OK;
    for (struct dirent *e; st == JAMBA_OK && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || (st = check_cancel(stop, dest, err)) != JAMBA_OK)
            continue;
        char *file = jb_asprintf("%s/%s", dir, e->d_name);
        int fd = file ? open(file, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0 || fsync(fd) != 0)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot sync: %s", file ? file : dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        jb_free(file);
    }
    closedir(d);
    if (st == JAMBA_OK) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP))
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot sync the folder: %s", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    return st;
}

void jb_folder_abort(const char *tmp) {
    if (tmp == NULL)
        return;
    DIR *d = opendir(tmp);
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *file = jb_asprintf("%s/%s", tmp, e->d_name);
            if (file)
                unlink(file);
            jb_free(file);
        }
        closedir(d);
    }
    rmdir(tmp);
}

jamba_status jb_folder_begin(const char *path, bool replace, const jb_stop *stop, char **tmp, jamba_error *err) {
    *tmp = NULL;
    JB_TRY(check_cancel(stop, path, err));
    char *dest = trimmed(path);
    if (dest == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    struct stat sb;
    jamba_status st = JAMBA_OK;
    if (stat(dest, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            st = jb_fail(err, JAMBA_ERR_IO, "%s: exists and is not a folder", path);
        else if (!replace && !is_empty_folder(dest))
            st = jb_fail(err, JAMBA_ERR_IO, "%s: the folder is not empty (replacing it whole must be asked for: "
                         "`jamba quantize --force`, jamba_model_save_replacing)", path);
    } else if (errno != ENOENT) {
        st = jb_fail(err, JAMBA_ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *name = st == JAMBA_OK ? jb_asprintf("%s.tmp.XXXXXX", dest) : NULL;
    if (st == JAMBA_OK && name == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (st == JAMBA_OK && mkdtemp(name) == NULL)
        st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot create a temporary folder beside it: %s", path, strerror(errno));
    jb_free(dest);
    if (st != JAMBA_OK) {
        jb_free(name);
        return st;
    }
    *tmp = name;
    return JAMBA_OK;
}

jamba_status jb_folder_commit(const char *tmp, const char *path, const jb_stop *stop, jamba_error *err) {
    char *dest = trimmed(path);
    if (dest == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    jamba_status st = sync_tree(tmp, path, stop, err);
    if (st == JAMBA_OK) /* the last moment the writes can still be stopped without a trace */
        st = check_cancel(stop, path, err);
    struct stat sb;
    const bool existing = stat(dest, &sb) == 0, empty = existing && is_empty_folder(dest);
    char *old = NULL;
    if (st == JAMBA_OK && existing && !empty) { /* replace whole: move the old folder aside first */
        old = jb_asprintf("%s.old.XXXXXX", dest);
        if (old == NULL || mkdtemp(old) == NULL || rmdir(old) != 0 || rename(dest, old) != 0)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot move the old folder aside: %s", path, strerror(errno));
    }
    if (st == JAMBA_OK && rename(tmp, dest) != 0) { /* onto a missing or empty folder */
        st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot rename the new folder into place: %s", path, strerror(errno));
        if (old != NULL)
            rename(old, dest); /* put the old one back */
    }
    if (st == JAMBA_OK && old != NULL)
        jb_folder_abort(old); /* the replaced model's files */
    if (st == JAMBA_OK)
        st = jb_sync_parent(dest, err);
    jb_free(old);
    jb_free(dest);
    return st;
}
