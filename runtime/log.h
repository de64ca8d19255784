/*
 * log.h — messages to the log callback a model was loaded with (jamba_model_params.log); nothing is
 * printed when there is none. Contexts log through their model's callback.
 */
#ifndef JB_RUNTIME_LOG_H
#define JB_RUNTIME_LOG_H

#include "backend/model.h"
#include "base/error.h"
#include "jamba.h"

/* Format one line (truncated to 1 KiB) and hand it to m's callback, if any. */
void jb_log(const jamba_model *m, jamba_log_level level, const char *fmt, ...) JB_PRINTF(3, 4);

#endif /* JB_RUNTIME_LOG_H */
