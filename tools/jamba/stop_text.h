/*
 * stop_text.h — stop strings over streamed text: text is held back while it may still be the beginning of a
 * stop string and released once it cannot; the first stop string to occur ends the text before it. Shared by
 * `jamba generate` / `chat` (generation.c) and `jamba serve` (serve_choice.c).
 */
#ifndef JB_CLI_STOP_TEXT_H
#define JB_CLI_STOP_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Look at the held text held[0 .. n) for the stop strings stops[0 .. n_stops). When one occurs, *found is
 * true and the result is where the earliest occurrence begins: the text before it is the last to release
 * and the rest is dropped. Otherwise the result is how many leading bytes can be released: all but the
 * longest tail that begins some stop string (that tail stays held for the text still to come).
 */
size_t stop_text_scan(const char *held, size_t n, const char *const *stops, int n_stops, bool *found);

#endif /* JB_CLI_STOP_TEXT_H */
