/*
 * log.c — formatting a line for the model's log callback.
 */
#include "runtime/log.h"

#include <stdarg.h>
#include <stdio.h>

void jb_log(const jamba_model *m, jamba_log_level level, const char *fmt, ...) {
    if (m == NULL || m->log == NULL)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    m->log(level, line, m->log_data);
}
