/*
 * cmd_generate.c — `jamba generate` (one prompt, streamed continuation) and `jamba chat` (a multi-turn
 * REPL in the Jamba-1.5+ chat format that keeps the conversation in the sequence state instead of
 * re-reading it every turn).
 */
#include "tools/jamba/cli.h"
#include "tools/jamba/default_model.h"
#include "tools/jamba/generation.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct sampling_args {
    double temperature, top_p, min_p, repeat_penalty, presence_penalty;
    int64_t top_k, seed, threads, batch, ctx, max_tokens;
    cli_device_args dev;
} sampling_args;

static sampling_args default_sampling(void) {
    jamba_sampler_params d = jamba_sampler_default_params();
    return (sampling_args){.temperature = d.temperature, .top_p = d.top_p, .min_p = d.min_p,
                           .repeat_penalty = d.repetition_penalty, .presence_penalty = d.presence_penalty,
                           .top_k = d.top_k, .seed = (int64_t)d.seed, .batch = 0, .max_tokens = 256};
}

#define SAMPLING_OPTIONS(a)                                                                         \
    {"--temperature", CLI_FLOAT, &(a).temperature, 0, 100}, {"--top-k", CLI_COUNT, &(a).top_k, 0, 1 << 24}, \
        {"--top-p", CLI_FLOAT, &(a).top_p, 0, 1}, {"--min-p", CLI_FLOAT, &(a).min_p, 0, 1},                \
        {"--repeat-penalty", CLI_FLOAT, &(a).repeat_penalty, 0, 100},                                      \
        {"--presence-penalty", CLI_FLOAT, &(a).presence_penalty, -100, 100},                                \
        {"--seed", CLI_COUNT, &(a).seed, 0, INT64_MAX}, {"--threads", CLI_COUNT, &(a).threads, 1, 1024},     \
        {"--batch", CLI_COUNT, &(a).batch, 0, 1 << 16}, {"--ctx", CLI_COUNT, &(a).ctx, 1, INT64_C(1) << 40}, \
        {"--max-tokens", CLI_COUNT, &(a).max_tokens, 1, INT64_C(1) << 40}, CLI_DEVICE_OPTIONS((a).dev)

#define SAMPLING_HELP                                                                                            \
    "  --max-tokens N        most tokens to generate (default 256)\n"                                            \
    "  --temperature T       0 = greedy (default 0.8)\n"                                                         \
    "  --top-k K             keep the K most likely tokens, 0 = all (default 40)\n"                              \
    "  --top-p P             nucleus sampling mass (default 0.95)\n"                                             \
    "  --min-p P             drop tokens below P x the best probability (default 0.05)\n"                       \
    "  --repeat-penalty R    > 1 discourages recent tokens (default 1.0)\n"                                      \
    "  --presence-penalty P  subtracted from recent tokens' logits (default 0)\n"                                \
    "  --seed N              random seed (default 24301); the same seed gives the same text\n"                   \
    "  --ctx N               context size (default: prompt + max tokens); k/M suffixes accepted\n"               \
    "  --threads N           worker threads (default: all CPUs)\n"                                               \
    "  --batch N             prompt tokens per step; default 0: 512 on the CPU, on CUDA the largest chunk\n" \
    "                        of 4096 ... 16 whose workspace fits the device (the memory plan)\n"                                       \
    CLI_DEVICE_HELP

/* 0; CLI_EXIT_USAGE after a bad device argument; CLI_EXIT_FAIL after saying so when there is no `model`
 * and no default model (cli_default_model). */
static int to_options(const char *cmd, const char *model, const sampling_args *a, gen_options *out) {
    gen_options o = {.model = model, .n_ctx = a->ctx, .n_batch = a->batch, .threads = a->threads, .progress = true};
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
    o.sampling.temperature = (float)a->temperature;
    o.sampling.top_k = (int32_t)a->top_k;
    o.sampling.top_p = (float)a->top_p;
    o.sampling.min_p = (float)a->min_p;
    o.sampling.repetition_penalty = (float)a->repeat_penalty;
    o.sampling.presence_penalty = (float)a->presence_penalty;
    o.sampling.seed = (uint64_t)a->seed;
    *out = o;
    return 0;
}

/* ---- generate --------------------------------------------------------------------------------- */

static void help_generate(void) {
    printf("usage: jamba generate [--model DIR] [--prompt TEXT | --prompt-file FILE] [options]\n"
           "\n"
           "Continue a prompt, streaming the text to stdout. The prompt comes from --prompt, --prompt-file, or\n"
           "stdin; a long prompt shows a progress bar on stderr while it is prefilled. Statistics (prompt\n"
           "tokens, prefill and decode tok/s, peak memory) go to stderr at the end.\n"
           "\n"
           "  --model DIR           model folder (default: $JAMBA_MODEL, else the bundled demo model: installed\n"
           "                        beside the binary in ../share/jamba/models/demo, or models/demo of the\n"
           "                        source tree the binary is in, e.g. build/cpu/jamba)\n"
           "  --prompt TEXT         the prompt\n"
           "  --prompt-file FILE    read the prompt from FILE\n"
           "  --chat                wrap the prompt as a user message in the model's chat format\n"
           "  --system TEXT         the system message with --chat\n"
           "  --stop TEXT           stop when TEXT is generated (repeatable); EOS ids always stop\n"
           "  --no-echo             do not print the prompt before the continuation\n"
           SAMPLING_HELP);
}

static int32_t *prompt_ids(gen_session *s, const char *text, size_t len, bool chat, const char *system, int64_t *n,
                           jamba_error *err) {
    int64_t cap = jamba_tokenizer_max_ids(s->tok, len + (system ? strlen(system) : 0)) + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (ids == NULL)
        return NULL;
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

int cmd_generate(int argc, char **argv) {
    sampling_args a = default_sampling();
    const char *model = NULL, *prompt = NULL, *prompt_file = NULL, *system = NULL;
    bool chat = false, no_echo = false;
    cli_strings stops = {0};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &model, 0, 0},       {"--prompt", CLI_STRING, &prompt, 0, 0},
        {"--prompt-file", CLI_STRING, &prompt_file, 0, 0}, {"--system", CLI_STRING, &system, 0, 0},
        {"--chat", CLI_FLAG, &chat, 0, 0},            {"--no-echo", CLI_FLAG, &no_echo, 0, 0},
        {"--stop", CLI_STRINGS, &stops, 0, 0},        SAMPLING_OPTIONS(a),
    };
    int rc = cli_parse("generate", argc, argv, opts, sizeof opts / sizeof opts[0], help_generate);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (prompt && prompt_file)
        return cli_usage_error("generate", "give --prompt or --prompt-file, not both");
    gen_options o;
    if ((rc = to_options("generate", model, &a, &o)) != 0)
        return rc;
    size_t len = 0;
    char *text = NULL;
    if (prompt) {
        text = strdup(prompt);
        len = strlen(prompt);
    } else {
        if (prompt_file == NULL && isatty(STDIN_FILENO))
            fprintf(stderr, "jamba: reading the prompt from stdin (end with Ctrl-D)\n");
        text = cli_read_file(prompt_file ? prompt_file : "-", &len);
    }
    if (text == NULL) {
        fprintf(stderr, "jamba: error: %s: cannot read the prompt: %s\n", prompt_file ? prompt_file : "stdin",
                strerror(errno));
        return CLI_EXIT_FAIL;
    }
    jamba_error err = {0};
    gen_session s;
    /* open with a provisional context, tokenize, then size the real one */
    jamba_tokenizer *tok = NULL;
    const char *dir = o.model;
    if (jamba_tokenizer_load(dir, &tok, &err) != JAMBA_OK) {
        free(text);
        return cli_fail(&err);
    }
    if (chat && !jamba_chat_supported(tok)) {
        jamba_tokenizer_free(tok);
        free(text);
        fprintf(stderr, "jamba: error: %s: the tokenizer has no Jamba chat tokens; --chat needs a chat model\n", dir);
        return CLI_EXIT_FAIL;
    }
    gen_session probe = {.tok = tok};
    int64_t n = 0;
    int32_t *ids = prompt_ids(&probe, text, len, chat, system, &n, &err);
    jamba_tokenizer_free(tok);
    if (ids == NULL) {
        free(text);
        return cli_fail(&err);
    }
    int64_t n_ctx = a.ctx ? a.ctx : n + a.max_tokens;
    if (n >= n_ctx) {
        fprintf(stderr, "jamba: error: the prompt has %lld tokens; --ctx %lld leaves no room to generate\n",
                (long long)n, (long long)n_ctx);
        free(ids);
        free(text);
        return CLI_EXIT_FAIL;
    }
    rc = gen_open(&s, &o, n_ctx, &err);
    if (rc == CLI_EXIT_OK && jamba_chat_supported(s.tok) && chat)
        s.stop_ids[s.n_stop_ids++] = jamba_tokenizer_find(s.tok, "<|eom|>");
    if (rc == CLI_EXIT_OK && gen_prefill(&s, ids, n, true, o.progress, &err) != JAMBA_OK)
        rc = CLI_EXIT_FAIL;
    if (rc == CLI_EXIT_OK && !no_echo && !chat) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    gen_end end;
    int32_t last;
    gen_stop stop = {.strings = stops.v, .n_strings = stops.n, .max_tokens = a.max_tokens};
    if (rc == CLI_EXIT_OK && gen_run(&s, &stop, stdout, &end, &last, &err) != JAMBA_OK)
        rc = CLI_EXIT_FAIL;
    if (rc == CLI_EXIT_OK) {
        printf("\n");
        fflush(stdout);
        if (end == GEN_END_CONTEXT)
            fprintf(stderr, "jamba: the context of %lld tokens is full\n", (long long)n_ctx);
        gen_print_stats(&s);
    } else {
        cli_fail(&err);
    }
    gen_close(&s);
    free(ids);
    free(text);
    return rc;
}

/* ---- chat ------------------------------------------------------------------------------------- */

static void help_chat(void) {
    printf("usage: jamba chat [--model DIR] [--system TEXT] [options]\n"
           "\n"
           "An interactive conversation in the Jamba-1.5+ chat format. Each line on stdin is a user message;\n"
           "the reply streams to stdout. The conversation stays in the model's state, so a turn only reads the\n"
           "new message. Commands: /reset starts over, /exit (or end of input) quits.\n"
           "\n"
           "  --model DIR           a chat model's folder (its tokenizer must have the chat tokens)\n"
           "  --system TEXT         the system message\n" SAMPLING_HELP);
}

int cmd_chat(int argc, char **argv) {
    sampling_args a = default_sampling();
    a.ctx = 8192;
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
    gen_session s;
    if ((rc = gen_open(&s, &o, a.ctx, &err)) != CLI_EXIT_OK) {
        gen_close(&s);
        return cli_fail(&err);
    }
    if (!jamba_chat_supported(s.tok)) {
        fprintf(stderr, "jamba: error: %s: the tokenizer has no Jamba chat tokens; chat needs a chat model\n",
                o.model);
        gen_close(&s);
        return CLI_EXIT_FAIL;
    }
    int32_t eom = jamba_tokenizer_find(s.tok, "<|eom|>");
    s.stop_ids[s.n_stop_ids++] = eom;
    bool tty = isatty(STDIN_FILENO), fresh = true;
    char line[1 << 16];
    const int64_t cap = jamba_tokenizer_max_ids(s.tok, sizeof line + strlen(system)) + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    while (rc == CLI_EXIT_OK && ids) {
        if (tty)
            fprintf(stderr, "> ");
        if (fgets(line, sizeof line, stdin) == NULL)
            break;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (strcmp(line, "/exit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            jamba_seq_reset(s.ctx, 0, NULL);
            fresh = true;
            continue;
        }
        jamba_chat_message m[2] = {{"system", system}, {"user", line}};
        int64_t n = 0;
        int flags = JAMBA_CHAT_GENERATION_PROMPT | (fresh ? 0 : JAMBA_CHAT_CONTINUE);
        if (jamba_chat_tokenize(s.tok, fresh ? m : m + 1, fresh ? 2 : 1, flags, ids, cap,
                                &n, &err) != JAMBA_OK ||
            gen_prefill(&s, ids, n, true, true, &err) != JAMBA_OK) {
            rc = err.status == JAMBA_ERR_CONTEXT_FULL ? CLI_EXIT_OK : CLI_EXIT_FAIL;
            cli_fail(&err);
            break;
        }
        fresh = false;
        gen_end end;
        int32_t last;
        gen_stop stop = {.max_tokens = a.max_tokens};
        if (gen_run(&s, &stop, stdout, &end, &last, &err) != JAMBA_OK) {
            rc = cli_fail(&err);
            break;
        }
        printf("\n");
        fflush(stdout);
        if (end == GEN_END_CONTEXT) {
            fprintf(stderr, "jamba: the context of %lld tokens is full; /reset to start over\n", (long long)a.ctx);
            break;
        }
        /* the <|eom|> that ended the reply opens the next turn (JAMBA_CHAT_CONTINUE renders it) */
    }
    gen_print_stats(&s);
    free(ids);
    gen_close(&s);
    return rc;
}
