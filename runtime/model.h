/*
 * model.h — the jamba_model object (internal layout shared by the runtime's files).
 */
#ifndef JB_MODEL_H
#define JB_MODEL_H

#include "../ckpt/checkpoint.h"
#include "../ckpt/weights.h"
#include "jamba.h"
#include "strlist.h"

struct jamba_model {
    char *path;             /* the folder as given */
    jamba_config config;
    bool has_weights;
    jb_checkpoint ckpt;     /* mapped shards; empty for a planning-only model */
    jb_weights weights;     /* views into ckpt */
    jb_strlist notes;       /* warnings gathered while loading */
};

#endif /* JB_MODEL_H */
