/*
 * sampler.h — the sampler as a device sampler (backend `sample`) sees it: its parameters, its distinct
 * penalised ids and the next draw of its generator, taken without consuming it, so a device-chosen token
 * advances the sampler exactly as jamba_sampler_sample would.
 */
#ifndef JB_SAMPLER_H
#define JB_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "jamba.h"

/* Fill p and penalized (up to cap distinct ids) for the device sampler; false when this sampler needs the
 * host (temperature > 0 with top_k outside [1, JB_SAMPLE_MAX_K], or more than cap penalised ids). */
bool jb_sampler_device_params(jamba_sampler *s, jb_sample_params *p, int32_t *penalized, int64_t cap);

/* Advance the generator past the draw jb_sampler_device_params peeked (when the device used it). */
void jb_sampler_consume_draw(jamba_sampler *s);

#endif /* JB_SAMPLER_H */
