/*
 * default_model.h — the model folder the CLI uses when no --model is given.
 */
#ifndef JAMBA_CLI_DEFAULT_MODEL_H
#define JAMBA_CLI_DEFAULT_MODEL_H

#include "jamba.h"

/* The first of:
 *   1. $JAMBA_MODEL (a model folder), when set;
 *   2. <bindir>/../share/jamba/models/demo, the demo model of an installed jamba;
 *   3. models/demo in the nearest of <bindir> and the folders above it that holds models/demo/config.json
 *      (a build tree inside the source tree, e.g. build/cpu/jamba -> models/demo),
 * where <bindir> is the folder of the running binary (/proc/self/exe). Returns the folder (static storage,
 * overwritten by the next call), or NULL with err saying everything that was tried. */
const char *cli_default_model(jamba_error *err);

#endif /* JAMBA_CLI_DEFAULT_MODEL_H */
