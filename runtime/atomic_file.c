/*
 * atomic_file.c — temporary file + fsync + rename.
 */
#include "atomic_file.h"

#include "alloc.h"
#include "error.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

jamba_status jb_write_file_atomic(const char *path, jb_write_fn write, void *arg, jamba_error *err) {
    char *tmp = jb_asprintf("%s.tmp.%ld", path, (long)getpid());
    if (tmp == NULL)
        return jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    jamba_status st = JAMBA_OK;
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        bool ok = write(f, arg);
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        if (fclose(f) != 0 || !ok)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            st = jb_fail(err, JAMBA_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        if (st != JAMBA_OK)
            unlink(tmp);
    }
    jb_free(tmp);
    return st;
}
