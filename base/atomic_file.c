/*
 * atomic_file.c — unique temporary file + fsync + rename + fsync of the folder.
 */
#include "base/atomic_file.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder holding `path` ("." when it names no folder); NULL when out of memory. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return jb_strdup(".");
    if (slash == path)
        return jb_strdup("/");
    return jb_strndup(path, (size_t)(slash - path));
}

jamba_status jb_sync_parent(const char *path, jamba_error *err) {
    char *dir = folder_of(path);
    if (dir == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    jamba_status st = JAMBA_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        /* some file systems cannot sync a folder; the file itself is already synced */
        if (e != EINVAL && e != ENOTSUP)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot sync the folder: %s", dir, strerror(e));
    }
    if (fd >= 0)
        close(fd);
    jb_free(dir);
    return st;
}

jamba_status jb_write_file_atomic(const char *path, jb_write_fn write, void *arg, jamba_error *err) {
    /* mkstemp creates the file with O_EXCL, so it never follows a planted link or reuses a name */
    char *tmp = jb_asprintf("%s.tmp.XXXXXX", path);
    if (tmp == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        jamba_status st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                                  strerror(errno));
        jb_free(tmp);
        return st;
    }
    jamba_status st = JAMBA_OK;
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        st = jb_fail(err, JAMBA_ERR_IO, "%s: %s", tmp, strerror(errno));
        close(fd);
    } else {
        /* mkstemp gives 0600; the result is an ordinary readable file like one fopen would make */
        errno = 0;
        bool ok = fchmod(fd, 0644) == 0 && write(f, arg);
        ok = ok && fflush(f) == 0 && fsync(fd) == 0;
        int e = errno;
        if (fclose(f) != 0 && ok) {
            ok = false;
            e = errno;
        }
        if (!ok)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: write failed: %s", tmp, e != 0 ? strerror(e) : "short write");
        else if (rename(tmp, path) != 0)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        else
            st = jb_sync_parent(path, err);
    }
    if (st != JAMBA_OK)
        unlink(tmp); /* after a successful rename the name is gone and this does nothing */
    jb_free(tmp);
    return st;
}
