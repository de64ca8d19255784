/*
 * file.c — non-blocking, regular-files-only opening (see file.h).
 */
#include "base/file.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* What a non-regular file is, for messages. */
static const char *file_kind(mode_t mode) {
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISLNK(mode))
        return "a symbolic link";
    return "of an unknown kind";
}

/* fstat, the regular-file check and the switch back to blocking reads; the caller closes fd on failure. */
static jamba_status check_regular(int fd, const char *label, struct stat *sb, jamba_error *err) {
    if (fstat(fd, sb) != 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot stat: %s", label, strerror(errno));
    if (!S_ISREG(sb->st_mode))
        return jb_fail(err, JAMBA_ERR_IO, "%s: not a regular file (%s)", label, file_kind(sb->st_mode));
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot switch to blocking reads: %s", label, strerror(errno));
    return JAMBA_OK;
}

jamba_status jb_open_regular(const char *path, const char *label, int extra_flags, int *fd, struct stat *sb,
                             jamba_error *err) {
    *fd = -1;
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | extra_flags);
    if (f < 0)
        return jb_fail(err, JAMBA_ERR_IO, "%s: cannot open: %s", label, strerror(errno));
    struct stat local;
    jamba_status st = check_regular(f, label, sb ? sb : &local, err);
    if (st != JAMBA_OK) {
        close(f);
        return st;
    }
    *fd = f;
    return JAMBA_OK;
}

jamba_status jb_fopen_regular(const char *path, const char *label, FILE **out, jamba_error *err) {
    *out = NULL;
    int fd;
    JB_TRY(jb_open_regular(path, label, 0, &fd, NULL, err));
    FILE *f = fdopen(fd, "rb");
    if (f == NULL) {
        int e = errno;
        close(fd);
        return jb_fail(err, e == ENOMEM ? JAMBA_ERR_OUT_OF_MEMORY : JAMBA_ERR_IO, "%s: cannot open: %s", label,
                       strerror(e));
    }
    *out = f;
    return JAMBA_OK;
}

/* Exactly `size` bytes from fd into buf; a file that shrinks while read is an error. */
static jamba_status read_all(int fd, char *buf, size_t size, const char *label, jamba_error *err) {
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            return jb_fail(err, JAMBA_ERR_IO, "%s: read failed after %zu of %zu bytes%s%s", label, got, size,
                           e ? ": " : " (file shrank)", e ? strerror(e) : "");
        }
        got += (size_t)r;
    }
    return JAMBA_OK;
}

jamba_status jb_read_regular_file(const char *path, const char *label, uint64_t max_bytes, jamba_status too_big,
                                  char **out, size_t *len, jamba_error *err) {
    *out = NULL;
    *len = 0;
    int fd;
    struct stat sb;
    JB_TRY(jb_open_regular(path, label, 0, &fd, &sb, err));
    jamba_status st = JAMBA_OK;
    uint64_t size = (uint64_t)sb.st_size;
    char *buf = NULL;
    if (size > max_bytes || size >= SIZE_MAX)
        st = jb_fail(err, too_big, "%s: file is %llu bytes, more than the %llu-byte limit", label,
                     (unsigned long long)size, (unsigned long long)max_bytes);
    else if ((buf = jb_malloc((size_t)size + 1)) == NULL)
        st = jb_fail(err, JAMBA_ERR_OUT_OF_MEMORY, "%s: out of memory reading %llu bytes", label,
                     (unsigned long long)size);
    else
        st = read_all(fd, buf, (size_t)size, label, err);
    close(fd);
    if (st != JAMBA_OK) {
        jb_free(buf);
        return st;
    }
    buf[size] = '\0';
    *out = buf;
    *len = (size_t)size;
    return JAMBA_OK;
}
