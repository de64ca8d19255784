/*
 * cmd_generate.c — `jamba generate` (one prompt, streamed continuation, or one JSON object) and `jamba chat`
 * (a multi-turn REPL in the Jamba-1.5+ chat format that keeps the conversation in the sequence state instead
 * of re-reading it every turn).
 */
#include "tools/jamba/chat_format.h"
#include "tools/jamba/cli.h"
#include "tools/jamba/default_model.h"
#include "tools/jamba/generation.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* The sampling flags. NAN / -1: not given (then generation_config.json, else the library's default). */
typedef struct sampling_args {
    double temperature, top_p, min_p, repeat_penalty, presence_penalty;
    int64_t top_k, seed, max_tokens, threads, batch, ctx;
    cli_device_args dev;
} sampling_args;

static sampling_args unset_sampling(void) {
    jamba_sampler_params d = jamba_sampler_default_params();
    return (sampling_args){.temperature = NAN, .top_p = NAN, .min_p = NAN, .repeat_penalty = NAN,
                           .presence_penalty = d.presence_penalty, .top_k = -1, .seed = (int64_t)d.seed,
                           .max_tokens = -1};
}

#define SAMPLING_OPTIONS(a)                                                                                    \
    {"--temperature", CLI_FLOAT, &(a).temperature, 0, 100}, {"--top-k", CLI_COUNT, &(a).top_k, 0, 1 << 24},     \
        {"--top-p", CLI_FLOAT, &(a).top_p, 0, 1}, {"--min-p", CLI_FLOAT, &(a).min_p, 0, 1},                    \
        {"--repeat-penalty", CLI_FLOAT, &(a).repeat_penalty, 0, 100},                                          \
        {"--presence-penalty", CLI_FLOAT, &(a).presence_penalty, -100, 100},                                    \
        {"--seed", CLI_COUNT, &(a).seed, 0, INT64_MAX}, {"--threads", CLI_COUNT, &(a).threads, 1, 1024},         \
        {"--batch", CLI_COUNT, &(a).batch, 0, 1 << 16}, {"--ctx", CLI_COUNT, &(a).ctx, 1, INT64_C(1) << 40},     \
        {"--max-tokens", CLI_COUNT, &(a).max_tokens, 1, INT64_C(1) << 40}, CLI_DEVICE_OPTIONS((a).dev)

#define SAMPLING_HELP                                                                                          \
    "  --temperature T       0 = greedy (default 0.8)\n"                                                       \
    "  --top-k K             keep the K most likely tokens, 0 = all (default 40)\n"                            \
    "  --top-p P             nucleus sampling mass (default 0.95)\n"                                           \
    "  --min-p P             drop tokens below P x the best probability (default 0.05)\n"                     \
    "  --repeat-penalty R    > 1 discourages recent tokens (default 1.0)\n"                                    \
    "  --presence-penalty P  subtracted from recent tokens' logits (default 0)\n"                              \
    "  -s, --seed N          random seed (default 24301); the same seed gives the same text\n"                 \
    "  -t, --threads N       worker threads (default: all CPUs)\n"                                             \
    "  --batch N             prompt tokens per step; default 0: 512 on the CPU, on CUDA the largest chunk\n"   \
    "                        of 4096 ... 16 whose workspace fits the device (the memory plan)\n"               \
    CLI_DEVICE_HELP                                                                                            \
    "\n"                                                                                                       \
    "A generation_config.json in the model folder supplies the defaults of --temperature, --top-p, --top-k,\n" \
    "--min-p, --repeat-penalty and --max-tokens (its temperature, top_p, top_k, min_p, repetition_penalty,\n"  \
    "max_new_tokens; \"do_sample\": false means greedy); flags override it, and the defaults above apply to\n" \
    "what neither gives. Every option is also accepted as --option=VALUE.\n"                                  \
    "Ctrl-C stops the generation (a second one ends the program at once).\n"

/* 0; CLI_EXIT_USAGE after a bad device argument; CLI_EXIT_FAIL after saying so when there is no `model`
 * and no default model (cli_default_model) or its generation_config.json is malformed. */
static int to_options(const char *cmd, const char *model, const sampling_args *a, gen_options *out) {
    gen_options o = {.model = model, .n_batch = a->batch, .threads = a->threads, .progress = true, .max_tokens = 256};
    o.device = jamba_context_default_params();
    o.load = jamba_model_default_params();
    int rc = cli_device_params(cmd, &a->dev, &o.device);
    if (rc == 0)
        rc = cli_model_params(cmd, &a->dev, &o.load);
    if (rc != 0)
        return rc;
    jamba_error err = {0};
    if (o.model == NULL && (o.model = cli_default_model(&err)) == NULL)
        return cli_fail(&err);
    o.sampling = jamba_sampler_default_params();
    if (gen_read_defaults(o.model, &o.sampling, &o.max_tokens, &err) != JAMBA_OK)
        return cli_fail(&err);
    if (!isnan(a->temperature))
        o.sampling.temperature = (float)a->temperature;
    if (!isnan(a->top_p))
        o.sampling.top_p = (float)a->top_p;
    if (!isnan(a->min_p))
        o.sampling.min_p = (float)a->min_p;
    if (!isnan(a->repeat_penalty))
        o.sampling.repetition_penalty = (float)a->repeat_penalty;
    if (a->top_k >= 0)
        o.sampling.top_k = (int32_t)a->top_k;
    if (a->max_tokens > 0)
        o.max_tokens = a->max_tokens;
    o.sampling.presence_penalty = (float)a->presence_penalty;
    o.sampling.seed = (uint64_t)a->seed;
    *out = o;
    return 0;
}

/* The tokens to generate must fit the model's context (max_position_embeddings), or a larger --ctx. */
static int check_max_tokens(const gen_session *s, const gen_options *o, int64_t ctx_flag) {
    const int64_t max_pos = jamba_model_config(s->model)->max_position_embeddings;
    if (o->max_tokens <= max_pos || o->max_tokens <= ctx_flag)
        return CLI_EXIT_OK;
    fprintf(stderr,
            "jamba: error: --max-tokens %lld is more than the model's context of %lld tokens "
            "(max_position_embeddings in %s/config.json)\n",
            (long long)o->max_tokens, (long long)max_pos, s->dir);
    return CLI_EXIT_FAIL;
}

/* ---- generate --------------------------------------------------------------------------------- */

typedef struct generate_args {
    sampling_args a;
    const char *model, *prompt, *prompt_file, *system;
    bool chat, no_echo, truncate, json;
    cli_strings stops;
} generate_args;

static void help_generate(void) {
    printf("usage: jamba generate [--model DIR] [--prompt TEXT | --prompt-file FILE] [options]\n"
           "\n"
           "Continue a prompt, streaming the text to stdout. The prompt comes from --prompt, --prompt-file, or\n"
           "stdin; a long prompt shows a progress bar on stderr while it is prefilled. Statistics (prompt\n"
           "tokens, prefill and decode tok/s, peak memory) go to stderr at the end.\n"
           "\n"
           "  -m, --model DIR       model folder (default: $JAMBA_MODEL, else the bundled demo model: installed\n"
           "                        beside the binary in ../share/jamba/models/demo, or models/demo of the\n"
           "                        source tree the binary is in, e.g. build/cpu/jamba)\n"
           "  -p, --prompt TEXT     the prompt\n"
           "  --prompt-file FILE    read the prompt from FILE\n"
           "  --chat                wrap the prompt as a user message in the model's chat format\n"
           "  --system TEXT         the system message with --chat\n"
           "  --stop TEXT           stop when TEXT (not empty) is generated (repeatable); EOS ids always stop\n"
           "  --no-echo             do not print the prompt before the continuation\n"
           "  --json                print one JSON object instead: model, prompt, text, prompt_ids,\n"
           "                        generated_ids, finish_reason (eos, stop, length, context, interrupted) and\n"
           "                        statistics (prefill and decode tokens, seconds, tokens_per_second)\n"
           "  -n, --max-tokens N    most tokens to generate (default 256); at most the model's\n"
           "                        max_position_embeddings (or --ctx)\n"
           "  -c, --ctx N           context size (default: the prompt + --max-tokens, at most the model's\n"
           "                        max_position_embeddings); k/M suffixes accepted\n"
           "  --truncate            a prompt that does not fit the context keeps its last (context - max tokens)\n"
           "                        tokens (and BOS), with a warning; without it such a prompt is refused\n"
           SAMPLING_HELP
           "\n"
           "Exit status: 0 ok, 1 failure (one line on stderr), 2 usage error, 130 stopped by Ctrl-C (the text so\n"
           "far and the statistics are printed).\n");
}

static int32_t *prompt_ids(gen_session *s, const char *text, size_t len, bool chat, const char *system, int64_t *n,
                           jamba_error *err) {
    int64_t cap = jamba_tokenizer_max_ids(s->tok, len + (system ? strlen(system) : 0)) + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (ids == NULL) {
        snprintf(err->message, sizeof err->message, "out of memory for the prompt's %lld token ids", (long long)cap);
        return NULL;
    }
    jamba_status st;
    if (chat) {
        jamba_chat_message m[2] = {{"system", system ? system : ""}, {"user", text}};
        st = jamba_chat_tokenize(s->tok, m, 2, JAMBA_CHAT_GENERATION_PROMPT, ids, cap, n, err);
    } else {
        st = jamba_tokenize(s->tok, text, len, JAMBA_TOKENIZE_ADD_SPECIAL, ids, cap, n, err);
    }
    if (st != JAMBA_OK) {
        free(ids);
        return NULL;
    }
    return ids;
}

/* The context for a prompt of *n tokens: --ctx, else the prompt plus the tokens to generate, within the
 * model's max_position_embeddings. A prompt that leaves no room to generate is refused, or with --truncate
 * cut to its last (context - max tokens) tokens, BOS kept. */
static int fit_prompt(const gen_session *s, const gen_options *o, const generate_args *g, int32_t *ids, int64_t *n,
                      int64_t *n_ctx) {
    const int64_t max_pos = jamba_model_config(s->model)->max_position_embeddings;
    if (*n == 0) {
        fprintf(stderr, "jamba: error: the prompt is empty and %s's tokenizer adds no BOS token: nothing to continue\n",
                s->dir);
        return CLI_EXIT_FAIL;
    }
    *n_ctx = g->a.ctx ? g->a.ctx : *n + o->max_tokens < max_pos ? *n + o->max_tokens : max_pos;
    if (*n < *n_ctx)
        return CLI_EXIT_OK;
    char limit[128];
    if (g->a.ctx)
        snprintf(limit, sizeof limit, "--ctx %lld", (long long)*n_ctx);
    else
        snprintf(limit, sizeof limit, "the model's context of %lld tokens (max_position_embeddings)",
                 (long long)max_pos);
    if (!g->truncate) {
        fprintf(stderr, "jamba: error: the prompt has %lld tokens; %s leaves no room to generate (--truncate keeps "
                        "the prompt's end)\n", (long long)*n, limit);
        return CLI_EXIT_FAIL;
    }
    const int64_t keep = *n_ctx - (o->max_tokens < *n_ctx ? o->max_tokens : *n_ctx - 1);
    const int32_t bos = jamba_tokenizer_bos(s->tok);
    const int64_t head = bos >= 0 && ids[0] == bos && keep > 1 ? 1 : 0;
    memmove(ids + head, ids + *n - (keep - head), (size_t)(keep - head) * sizeof *ids);
    fprintf(stderr, "jamba: warning: the prompt has %lld tokens; kept its last %lld%s (--truncate) to fit %s\n",
            (long long)*n, (long long)(keep - head), head ? " and BOS" : "", limit);
    *n = keep;
    return CLI_EXIT_OK;
}

static json_t *ids_json(const int32_t *ids, int64_t n) {
    json_t *a = json_array();
    for (int64_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* What one generation made, for the JSON output. */
typedef struct generated {
    const int32_t *prompt_ids;
    int64_t n_prompt;
    gen_ids ids;
    char *text;
    size_t len;
    gen_end end;
} generated;

static int print_json(const gen_session *s, const char *prompt, size_t prompt_len, const generated *r) {
    json_t *root = json_pack("{s:o,s:o,s:o,s:o,s:o,s:s,s:o}", "model", gen_json_text(s->dir, strlen(s->dir)),
                             "prompt", gen_json_text(prompt, prompt_len), "text", gen_json_text(r->text, r->len),
                             "prompt_ids", ids_json(r->prompt_ids, r->n_prompt), "generated_ids",
                             ids_json(r->ids.v, r->ids.n), "finish_reason", gen_end_name(r->end), "statistics",
                             gen_stats_json(s));
    int ok = root && json_dumpf(root, stdout, JSON_INDENT(2)) == 0;
    json_decref(root);
    if (!ok) {
        fprintf(stderr, "jamba: error: out of memory for the JSON output\n");
        return CLI_EXIT_FAIL;
    }
    printf("\n");
    return CLI_EXIT_OK;
}

/* Prefill the prompt and generate (into r->text with --json, else to stdout). */
static int prefill_and_run(gen_session *s, const gen_options *o, const generate_args *g, const char *text, size_t len,
                           generated *r, jamba_error *err) {
    if (g->json)
        s->record = &r->ids;
    gen_arm_interrupt();
    if (gen_prefill(s, r->prompt_ids, r->n_prompt, true, o->progress, err) != JAMBA_OK)
        return cli_fail(err);
    if (!g->no_echo && !g->chat && !g->json && !gen_interrupted()) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    FILE *out = g->json ? open_memstream(&r->text, &r->len) : stdout;
    if (out == NULL) {
        fprintf(stderr, "jamba: error: out of memory for the generated text\n");
        return CLI_EXIT_FAIL;
    }
    int32_t last;
    gen_stop stop = {.strings = g->stops.v, .n_strings = g->stops.n, .max_tokens = o->max_tokens};
    jamba_status st = gen_run(s, &stop, out, &r->end, &last, err);
    if (g->json)
        fclose(out);
    if (gen_interrupted())
        r->end = GEN_END_INTERRUPT;
    return st == JAMBA_OK ? CLI_EXIT_OK : cli_fail(err);
}

static int run_generate(gen_session *s, const gen_options *o, const generate_args *g, const char *text, size_t len) {
    jamba_error err = {0};
    if (g->chat && !jamba_chat_supported(s->tok)) {
        fprintf(stderr, "jamba: error: %s: the tokenizer has no Jamba chat tokens; --chat needs a chat model\n",
                s->dir);
        return CLI_EXIT_FAIL;
    }
    int rc = check_max_tokens(s, o, g->a.ctx);
    int64_t n = 0, n_ctx = 0;
    int32_t *ids = rc == CLI_EXIT_OK ? prompt_ids(s, text, len, g->chat, g->system, &n, &err) : NULL;
    if (rc == CLI_EXIT_OK && ids == NULL)
        rc = cli_fail(&err);
    if (rc == CLI_EXIT_OK)
        rc = fit_prompt(s, o, g, ids, &n, &n_ctx);
    if (rc == CLI_EXIT_OK && gen_start(s, o, n_ctx, &err) != CLI_EXIT_OK)
        rc = cli_fail(&err);
    if (rc == CLI_EXIT_OK && g->chat)
        s->stop_ids[s->n_stop_ids++] = jamba_tokenizer_find(s->tok, "<|eom|>");
    generated r = {.prompt_ids = ids, .n_prompt = n, .end = GEN_END_MAX_TOKENS};
    if (rc == CLI_EXIT_OK)
        rc = prefill_and_run(s, o, g, text, len, &r, &err);
    if (rc == CLI_EXIT_OK && g->json) {
        rc = print_json(s, text, len, &r);
    } else if (rc == CLI_EXIT_OK) {
        printf("\n");
        fflush(stdout);
        if (r.end == GEN_END_CONTEXT)
            fprintf(stderr, "jamba: the context of %lld tokens is full\n", (long long)n_ctx);
        if (r.end == GEN_END_INTERRUPT)
            fprintf(stderr, "jamba: interrupted\n");
        gen_print_stats(s);
    }
    if (rc == CLI_EXIT_OK && r.end == GEN_END_INTERRUPT)
        rc = CLI_EXIT_INTERRUPTED;
    free(r.ids.v);
    free(r.text);
    free(ids);
    return rc;
}

/* The prompt text from --prompt, --prompt-file or stdin (NULL after saying why). */
static char *read_prompt(const generate_args *g, size_t *len) {
    char *text = NULL;
    if (g->prompt) {
        text = strdup(g->prompt);
        *len = strlen(g->prompt);
    } else {
        if (g->prompt_file == NULL && isatty(STDIN_FILENO))
            fprintf(stderr, "jamba: reading the prompt from stdin (end with Ctrl-D)\n");
        text = cli_read_file(g->prompt_file ? g->prompt_file : "-", len);
    }
    if (text == NULL)
        fprintf(stderr, "jamba: error: %s: cannot read the prompt: %s\n", g->prompt_file ? g->prompt_file : "stdin",
                strerror(errno));
    return text;
}

int cmd_generate(int argc, char **argv) {
    generate_args g = {.a = unset_sampling()};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &g.model, 0, 0},       {"--prompt", CLI_STRING, &g.prompt, 0, 0},
        {"--prompt-file", CLI_STRING, &g.prompt_file, 0, 0}, {"--system", CLI_STRING, &g.system, 0, 0},
        {"--chat", CLI_FLAG, &g.chat, 0, 0},            {"--no-echo", CLI_FLAG, &g.no_echo, 0, 0},
        {"--truncate", CLI_FLAG, &g.truncate, 0, 0},    {"--json", CLI_FLAG, &g.json, 0, 0},
        {"--stop", CLI_STRINGS, &g.stops, 0, 0},        SAMPLING_OPTIONS(g.a),
    };
    int rc = cli_parse("generate", argc, argv, opts, sizeof opts / sizeof opts[0], help_generate);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (g.prompt && g.prompt_file)
        return cli_usage_error("generate", "give --prompt or --prompt-file, not both");
    for (int i = 0; i < g.stops.n; i++)
        if (g.stops.v[i][0] == '\0')
            return cli_usage_error("generate", "--stop needs a non-empty text (an empty one would stop at once)");
    gen_options o;
    if ((rc = to_options("generate", g.model, &g.a, &o)) != 0)
        return rc;
    size_t len = 0;
    char *text = read_prompt(&g, &len);
    if (text == NULL)
        return CLI_EXIT_FAIL;
    jamba_error err = {0};
    gen_session s;
    rc = gen_open(&s, &o, &err) == CLI_EXIT_OK ? run_generate(&s, &o, &g, text, len) : cli_fail(&err);
    gen_close(&s);
    free(text);
    return cli_finish_output(rc);
}

/* ---- chat ------------------------------------------------------------------------------------- */

static void help_chat(void) {
    printf("usage: jamba chat [--model DIR] [--system TEXT] [options]\n"
           "\n"
           "An interactive conversation in the Jamba-1.5+ chat format (a model whose tokenizer lacks its chat\n"
           "tokens, such as the bundled demo, chats as a plain transcript: \"User:\" and \"Assistant:\" turns, a\n"
           "reply ending at a blank line; docs/serve.md). Each line on stdin (of any length) is a\n"
           "user message; the reply streams to stdout. The conversation stays in the model's state, so a turn\n"
           "only reads the new message. Commands: /reset starts over, /exit (or end of input) quits. Ctrl-C\n"
           "stops the reply and returns to the prompt; a second Ctrl-C, or one at the prompt, quits. When the\n"
           "context is full the reply ends and the session goes on: /reset to start over. A message that does\n"
           "not fit is refused (one line on stderr) and the conversation is unchanged.\n"
           "\n"
           "  -m, --model DIR       model folder (default: $JAMBA_MODEL, else the bundled demo model)\n"
           "  --system TEXT         the system message\n"
           "  -n, --max-tokens N    most tokens per reply (default 256)\n"
           "  -c, --ctx N           tokens the whole conversation can hold (default: the model's\n"
           "                        max_position_embeddings, at most " STR(JAMBA_DEFAULT_N_CTX) "); k/M suffixes\n"
           "                        accepted\n"
           SAMPLING_HELP
           "\n"
           "Exit status: 0 ok, 1 a message was refused or the model failed, 2 usage error, 130 quit by Ctrl-C.\n");
}

typedef struct chat_state {
    gen_session s;
    const char *system;
    int64_t max_tokens;
    bool fresh;  /* the next message starts the conversation (after the system message) */
    bool failed; /* a message was refused */
} chat_state;

/* Refuse a message of n tokens that does not fit what is left of the context (true when refused). */
static bool refuse_long_message(chat_state *c, int64_t n) {
    const int64_t used = jamba_seq_length(c->s.ctx, 0), left = c->s.n_ctx - used;
    if (n <= left)
        return false;
    if (used == 0)
        fprintf(stderr, "jamba: error: the message has %lld tokens, more than the context of %lld tokens (--ctx)\n",
                (long long)n, (long long)c->s.n_ctx);
    else
        fprintf(stderr,
                "jamba: error: the message has %lld tokens but only %lld of the context's %lld are left; /reset to "
                "start over\n",
                (long long)n, (long long)left, (long long)c->s.n_ctx);
    c->failed = true;
    return true;
}

/* Start the conversation over. */
static void chat_reset(chat_state *c) {
    jamba_seq_reset(c->s.ctx, 0, NULL);
    c->fresh = true;
}

/* The reply to one message. CLI_EXIT_OK also when the message was refused (c->failed) or Ctrl-C stopped
 * the reply (*stopped); CLI_EXIT_FAIL (after saying why) when the model failed. */
static int chat_reply(chat_state *c, const int32_t *ids, int64_t n, bool *stopped) {
    jamba_error err = {0};
    const int64_t before = jamba_seq_length(c->s.ctx, 0);
    if (gen_prefill(&c->s, ids, n, true, true, &err) != JAMBA_OK)
        return cli_fail(&err);
    if (gen_interrupted()) {
        *stopped = true;
        if (jamba_seq_length(c->s.ctx, 0) != before) { /* part of the message is in the state: start over */
            chat_reset(c);
            fprintf(stderr, "jamba: interrupted while reading the message; the conversation starts over\n");
        }
        return CLI_EXIT_OK;
    }
    c->fresh = false;
    gen_end end;
    int32_t last;
    int n_stops = 0;
    const char *const *stops = chat_stop_strings(chat_style_of(c->s.tok), &n_stops);
    gen_stop stop = {.strings = stops, .n_strings = n_stops, .max_tokens = c->max_tokens};
    if (gen_run(&c->s, &stop, stdout, &end, &last, &err) != JAMBA_OK)
        return cli_fail(&err);
    printf("\n");
    fflush(stdout);
    *stopped = end == GEN_END_INTERRUPT;
    if (end == GEN_END_CONTEXT)
        fprintf(stderr, "jamba: the context of %lld tokens is full; /reset to start over\n", (long long)c->s.n_ctx);
    /* the <|eom|> that ended the reply (or none, when it was cut) opens the next turn: JAMBA_CHAT_CONTINUE */
    return CLI_EXIT_OK;
}

static int chat_turn(chat_state *c, const char *line, bool *stopped) {
    jamba_error err = {0};
    jamba_chat_message m[2] = {{"system", c->system}, {"user", line}};
    int32_t *ids = NULL;
    int64_t n = 0;
    int flags = JAMBA_CHAT_GENERATION_PROMPT | (c->fresh ? 0 : JAMBA_CHAT_CONTINUE);
    int rc = CLI_EXIT_OK;
    if (chat_render(c->s.tok, c->fresh ? m : m + 1, c->fresh ? 2 : 1, flags, &ids, &n, NULL, &err) != JAMBA_OK) {
        c->failed = true;
        cli_fail(&err);
    } else if (!refuse_long_message(c, n)) {
        rc = chat_reply(c, ids, n, stopped);
    }
    free(ids);
    return rc;
}

/* Read messages until /exit, end of input or Ctrl-C at the prompt. A Ctrl-C that stopped a reply re-arms
 * the handler; one that came after the reply ended counts as at the prompt. */
static int chat_loop(chat_state *c) {
    const bool tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    int rc = CLI_EXIT_OK;
    gen_arm_interrupt();
    while (rc == CLI_EXIT_OK) {
        if (!gen_interrupted() && tty)
            fprintf(stderr, "> ");
        ssize_t len = gen_interrupted() ? -1 : getline(&line, &cap, stdin);
        if (len < 0) {
            if (gen_interrupted()) {
                fprintf(stderr, "\n");
                rc = CLI_EXIT_INTERRUPTED;
            } else if (ferror(stdin)) {
                fprintf(stderr, "jamba: error: cannot read a message from stdin: %s\n", strerror(errno));
                rc = CLI_EXIT_FAIL;
            }
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        bool stopped = false;
        if (len == 0)
            continue;
        if (strcmp(line, "/exit") == 0)
            break;
        if (strcmp(line, "/reset") == 0)
            chat_reset(c);
        else
            rc = chat_turn(c, line, &stopped);
        if (stopped)
            gen_arm_interrupt();
    }
    free(line);
    return rc == CLI_EXIT_OK && c->failed ? CLI_EXIT_FAIL : rc;
}

int cmd_chat(int argc, char **argv) {
    sampling_args a = unset_sampling();
    const char *model = NULL, *system = "";
    const cli_option opts[] = {{"--model", CLI_STRING, &model, 0, 0},
                               {"--system", CLI_STRING, &system, 0, 0},
                               SAMPLING_OPTIONS(a)};
    int rc = cli_parse("chat", argc, argv, opts, sizeof opts / sizeof opts[0], help_chat);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    gen_options o;
    if ((rc = to_options("chat", model, &a, &o)) != 0)
        return rc;
    jamba_error err = {0};
    chat_state c = {.system = system, .max_tokens = o.max_tokens, .fresh = true};
    rc = gen_open(&c.s, &o, &err) == CLI_EXIT_OK ? CLI_EXIT_OK : cli_fail(&err);
    if (rc == CLI_EXIT_OK && chat_style_of(c.s.tok) == CHAT_STYLE_TRANSCRIPT)
        fprintf(stderr, "jamba: note: %s: the tokenizer has no Jamba chat tokens; chatting as a plain transcript "
                        "(User:/Assistant:, a reply ends at a blank line)\n", o.model);
    if (rc == CLI_EXIT_OK)
        rc = check_max_tokens(&c.s, &o, a.ctx);
    if (rc == CLI_EXIT_OK && gen_start(&c.s, &o, a.ctx, &err) != CLI_EXIT_OK)
        rc = cli_fail(&err);
    if (rc == CLI_EXIT_OK) {
        if (chat_end_token(c.s.tok) >= 0)
            c.s.stop_ids[c.s.n_stop_ids++] = chat_end_token(c.s.tok);
        rc = chat_loop(&c);
        gen_print_stats(&c.s);
    }
    gen_close(&c.s);
    return cli_finish_output(rc);
}
