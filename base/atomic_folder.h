/*
 * atomic_folder.h — write a folder so that it appears complete under its name or not at all: the files go
 * into an empty temporary sibling ("<path>.tmp.XXXXXX"), which is synced and renamed into place. A
 * destination that exists must be empty, unless the caller asks to replace it whole (then the old folder
 * is moved aside, the new one renamed in, and the old one removed; if the second rename fails the old
 * folder is put back). Failures never leave a half-written destination; the caller removes the temporary
 * folder with jb_folder_abort on every path that does not commit.
 *
 * The caller's stop request (base/stop.h; a program sets it from its SIGINT/SIGTERM handler) is polled at
 * jb_folder_begin, before each file jb_folder_commit syncs and at the last moment before the rename: when it
 * asks, the call fails with JAMBA_ERR_ABORTED and the caller's jb_folder_abort removes the temporary folder.
 * A folder already renamed into place stays (it is complete).
 */
#ifndef JB_ATOMIC_FOLDER_H
#define JB_ATOMIC_FOLDER_H

#include <stdbool.h>

#include "base/stop.h"
#include "jamba.h"

/* Check the destination (missing, an empty folder, or with replace any folder) and make the temporary
 * sibling: *tmp (caller frees with jb_free, after jb_folder_commit or jb_folder_abort). */
jamba_status jb_folder_begin(const char *path, bool replace, const jb_stop *stop, char **tmp, jamba_error *err);

/* Sync the files of tmp and tmp itself, rename it to path (as jb_folder_begin allowed), sync the parent. */
jamba_status jb_folder_commit(const char *tmp, const char *path, const jb_stop *stop, jamba_error *err);

/* Remove the temporary folder and the plain files in it. */
void jb_folder_abort(const char *tmp);


#endif /* JB_ATOMIC_FOLDER_H */
