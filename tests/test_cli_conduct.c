/*
 * test_cli_conduct.c — the `jamba` program behaving like its peers: Ctrl-C in generate and chat, a chat that
 * goes on after a full context or a refused message, lines of any length, generation_config.json defaults,
 * short flags and --flag=value, generate --json, clear limits instead of absurd allocations, honest
 * statistics and messages, and non-finite logits turned into a clear error.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/testutil.h"

#define DEMO JB_SOURCE_DIR "/models/demo"
#define CHAT_MODEL JB_FIXTURES_DIR "/tokenizers/sp-chat"

/* ---- a child process the test talks to and signals --------------------------------------------- */

typedef struct child {
    pid_t pid;
    int in, out, err; /* our ends: its stdin (-1 once closed), stdout, stderr (-1 at EOF) */
    char *text[2];    /* what it wrote to stdout and stderr so far */
    size_t len[2];
} child;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Start argv with pipes on its stdin, stdout and stderr, and SIGINT at its default action. */
static void child_start(child *c, const char *const argv[]) {
    int pi[2], po[2], pe[2];
    cr_assert(pipe(pi) == 0 && pipe(po) == 0 && pipe(pe) == 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(pi[0], 0), dup2(po[1], 1), dup2(pe[1], 2);
        close(pi[1]), close(po[0]), close(pe[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pi[0]), close(po[1]), close(pe[1]);
    signal(SIGPIPE, SIG_IGN); /* writing to a program that ended fails the test instead of killing it */
    *c = (child){.pid = pid, .in = pi[1], .out = po[0], .err = pe[0]};
    c->text[0] = calloc(1, 1);
    c->text[1] = calloc(1, 1);
}

static void child_write(child *c, const char *s) {
    size_t n = strlen(s);
    cr_assert_eq(write(c->in, s, n), (ssize_t)n);
}

static void child_close_input(child *c) {
    if (c->in >= 0)
        close(c->in);
    c->in = -1;
}

/* Read what is there within `ms` milliseconds; false when both outputs reached EOF. */
static bool child_read(child *c, int ms) {
    struct pollfd p[2] = {{.fd = c->out, .events = POLLIN}, {.fd = c->err, .events = POLLIN}};
    if (c->out < 0 && c->err < 0)
        return false;
    if (poll(p, 2, ms) <= 0)
        return true;
    int *fds[2] = {&c->out, &c->err};
    for (int k = 0; k < 2; k++) {
        if (*fds[k] < 0 || !(p[k].revents & (POLLIN | POLLHUP)))
            continue;
        char buf[4096];
        ssize_t n = read(*fds[k], buf, sizeof buf);
        if (n <= 0) {
            close(*fds[k]);
            *fds[k] = -1;
            continue;
        }
        c->text[k] = realloc(c->text[k], c->len[k] + (size_t)n + 1);
        memcpy(c->text[k] + c->len[k], buf, (size_t)n);
        c->len[k] += (size_t)n;
        c->text[k][c->len[k]] = '\0';
    }
    return true;
}

/* Wait (at most 60 s) until stdout holds at least `bytes` bytes. */
static void child_wait_output(child *c, size_t bytes) {
    for (double t0 = now_s(); c->len[0] < bytes;) {
        cr_assert(child_read(c, 100), "the program ended before writing: %s", c->text[1]);
        cr_assert_lt(now_s() - t0, 60.0, "no output within 60 s; stderr: %s", c->text[1]);
    }
}

/* Let the program run for `ms` milliseconds, collecting its output. */
static void child_pause(child *c, int ms) {
    for (double t0 = now_s(); now_s() - t0 < ms / 1000.0;)
        child_read(c, 20);
}

/* Collect everything until it exits (at most 60 s, then SIGKILL and fail); its exit status, or -signal. */
static int child_finish(child *c) {
    double t0 = now_s();
    while (child_read(c, 100))
        if (now_s() - t0 > 60.0) {
            kill(c->pid, SIGKILL);
            cr_assert_fail("the program did not end within 60 s; stderr: %s", c->text[1]);
        }
    int status;
    cr_assert_eq(waitpid(c->pid, &status, 0), c->pid);
    child_close_input(c);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static void child_free(child *c) {
    free(c->text[0]);
    free(c->text[1]);
}

/* The number after `key` in s ("generated 12 tokens" -> 12), or -1. */
static long long number_after(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Tokens of a chat turn: the first (with the system message) or a continuation. */
static int64_t chat_tokens(const char *system, const char *user, bool first) {
    jamba_tokenizer *t = NULL;
    cr_assert_eq(jamba_tokenizer_load(CHAT_MODEL, &t, NULL), JAMBA_OK);
    jamba_chat_message m[2] = {{"system", system}, {"user", user}};
    int64_t cap = jamba_tokenizer_max_ids(t, strlen(user) + strlen(system)) + 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int flags = JAMBA_CHAT_GENERATION_PROMPT | (first ? 0 : JAMBA_CHAT_CONTINUE);
    cr_assert_eq(jamba_chat_tokenize(t, first ? m : m + 1, first ? 2 : 1, flags, ids, cap, &n, NULL), JAMBA_OK);
    free(ids);
    jamba_tokenizer_free(t);
    return n;
}

/* ---- Ctrl-C ------------------------------------------------------------------------------------- */

JB_TEST(interrupt, generate_prints_statistics_and_exits_130) {
    child c;
    child_start(&c, (const char *[]){JB_CLI_PATH, "generate", "--model", DEMO, "--prompt", "ROMEO:", "--max-tokens",
                                     "4000", "--no-echo", "--threads", "1", NULL});
    child_close_input(&c);
    child_wait_output(&c, 1);
    kill(c.pid, SIGINT);
    int rc = child_finish(&c);
    cr_assert_eq(rc, 130, "exit status %d; stderr: %s", rc, c.text[1]);
    long long generated = number_after(c.text[1], "generated ");
    cr_expect(generated >= 1 && generated < 4000, "stopped early: %s", c.text[1]);
    cr_expect(strstr(c.text[1], "prompt tokens 3") != NULL, "statistics: %s", c.text[1]);
    child_free(&c);
}

/* The first Ctrl-C cuts the reply; the next message is answered in full (greedy: 8000 tokens, no EOS). */
JB_TEST(interrupt, chat_stops_the_reply_and_goes_on) {
    child c;
    child_start(&c, (const char *[]){JB_CLI_PATH, "chat", "--model", CHAT_MODEL, "--max-tokens", "8000", "--ctx",
                                     "20000", "--temperature", "0", "--threads", "1", NULL});
    child_write(&c, "Hello\n");
    child_wait_output(&c, 1);
    kill(c.pid, SIGINT);
    child_pause(&c, 300);
    child_write(&c, "Again\n");
    child_close_input(&c);
    int rc = child_finish(&c);
    cr_assert_eq(rc, 0, "exit status %d; stderr: %s", rc, c.text[1]);
    long long generated = number_after(c.text[1], "generated ");
    cr_expect(generated >= 8000 && generated < 16000, "the first reply was cut, the second not: %s", c.text[1]);
    long long want = chat_tokens("", "Hello", true) + chat_tokens("", "Again", false);
    cr_expect_eq(number_after(c.text[1], "prompt tokens "), want, "both messages read: %s", c.text[1]);
    child_free(&c);
}

JB_TEST(interrupt, chat_exits_at_the_prompt) {
    child c;
    child_start(&c, (const char *[]){JB_CLI_PATH, "chat", "--model", CHAT_MODEL, "--max-tokens", "1", "--threads",
                                     "1", NULL});
    child_write(&c, "Hello\n");
    child_wait_output(&c, 1);
    child_pause(&c, 300); /* the one-token reply is over: the program waits for the next line */
    kill(c.pid, SIGINT);
    int rc = child_finish(&c); /* stdin stays open: only Ctrl-C ends it */
    cr_assert_eq(rc, 130, "exit status %d; stderr: %s", rc, c.text[1]);
    cr_expect(strstr(c.text[1], "generated 1 tokens") != NULL, "statistics: %s", c.text[1]);
    child_free(&c);
}

/* ---- chat --------------------------------------------------------------------------------------- */

JB_TEST(chat, goes_on_after_a_full_context_and_honours_reset) {
    char *out, *err;
    int rc = tu_run_input((const char *[]){JB_CLI_PATH, "chat", "--model", CHAT_MODEL, "--ctx", "40", "--max-tokens",
                                           "100", "--temperature", "0", "--threads", "1", NULL},
                          "Hello there\nMore please\n/reset\nAgain\n", &out, &err);
    cr_expect_eq(rc, 1, "a refused message makes the exit status 1: %s", err);
    cr_expect(strstr(err, "the context of 40 tokens is full; /reset to start over") != NULL, "%s", err);
    cr_expect(strstr(err, "jamba: error: the message has") != NULL && strstr(err, "/reset to start over") != NULL,
              "%s", err);
    long long want = chat_tokens("", "Hello there", true) + chat_tokens("", "Again", true);
    cr_expect_eq(number_after(err, "prompt tokens "), want, "after /reset the conversation starts over: %s", err);
    free(out);
    free(err);
}

/* A first message longer than the context (and than fgets' old 64 KiB) is refused whole; the next one is
 * answered. */
JB_TEST(chat, long_first_message_is_an_error_that_does_not_end_the_session) {
    size_t words = 30000;
    char *line = malloc(5 * words + 8);
    for (size_t i = 0; i < words; i++)
        memcpy(line + 5 * i, "word ", 5);
    line[5 * words - 1] = '\0';
    char *input = malloc(5 * words + 8);
    snprintf(input, 5 * words + 8, "%s\nhi\n", line);
    char *out, *err;
    int rc = tu_run_input((const char *[]){JB_CLI_PATH, "chat", "--model", CHAT_MODEL, "--max-tokens", "3",
                                           "--threads", "1", NULL},
                          input, &out, &err);
    cr_expect_eq(rc, 1, "%s", err);
    char want[128];
    snprintf(want, sizeof want, "jamba: error: the message has %lld tokens, more than the context of 4096 tokens",
             (long long)chat_tokens("", line, true));
    cr_expect(strstr(err, want) != NULL, "the whole line is one message: expected '%s' in %s", want, err);
    cr_expect_eq(number_after(err, "prompt tokens "), chat_tokens("", "hi", true), "%s", err);
    cr_expect_eq(number_after(err, "generated "), 3, "%s", err);
    free(out);
    free(err);
    free(input);
    free(line);
}

/* ---- options ------------------------------------------------------------------------------------ */

JB_TEST(options, short_flags_and_equals_forms) {
    char *a, *b, *e1, *e2;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-m", DEMO, "-p", "ROMEO:", "-n", "6", "-s", "3", "-t",
                                     "1", "-c", "64", NULL},
                    &a, &e1);
    cr_assert_eq(rc, 0, "%s", e1);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--model=" DEMO, "--prompt=ROMEO:", "--max-tokens=6",
                                 "--seed=3", "--threads=1", "--ctx=64", NULL},
                &b, &e2);
    cr_assert_eq(rc, 0, "%s", e2);
    cr_expect_str_eq(a, b);
    cr_expect(strncmp(a, "ROMEO:", 6) == 0, "%s", a);
    cr_expect_eq(number_after(e1, "generated "), 6, "%s", e1);
    free(a), free(b), free(e1), free(e2);
    const char *const *usage[] = {
        (const char *[]){JB_CLI_PATH, "generate", "--no-echo=yes", NULL},
        (const char *[]){JB_CLI_PATH, "generate", "--max-tokens=", NULL},
        (const char *[]){JB_CLI_PATH, "generate", "--bogus=1", NULL},
        (const char *[]){JB_CLI_PATH, "score", "-p", "x", NULL}, /* score has no --prompt */
        (const char *[]){JB_CLI_PATH, "generate", "-n", NULL},
    };
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        rc = tu_run(usage[i], &a, &e1);
        cr_expect_eq(rc, 2, "case %zu: rc %d, %s", i, rc, e1);
        free(a), free(e1);
    }
    rc = tu_run((const char *[]){JB_CLI_PATH, "inspect", "-m", JB_SOURCE_DIR "/models/configs/jamba-1.5-mini", "-c",
                                 "256k", NULL},
                &a, &e1);
    cr_expect_eq(rc, 0, "%s", e1);
    cr_expect(strstr(a, "262,144 tokens") != NULL, "%s", a);
    free(a), free(e1);
}

/* ---- generation_config.json --------------------------------------------------------------------- */

static json_t *generate_json(const char *const argv[]) {
    char *out, *err;
    int rc = tu_run(argv, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    json_error_t jerr;
    json_t *root = json_loads(out, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", jerr.text, out);
    free(out);
    free(err);
    return root;
}

static const char *ids_string(json_t *root, char *buf, size_t size) {
    char *p = json_dumps(json_object_get(root, "generated_ids"), JSON_COMPACT);
    snprintf(buf, size, "%s", p);
    free(p);
    return buf;
}

JB_TEST(generation_config, supplies_defaults_that_flags_override) {
    char *dir = tu_clone_model(DEMO);
    char *cfg = tu_path(dir, "generation_config.json");
    tu_write_text(cfg, "{\"do_sample\": false, \"temperature\": 0.7, \"max_new_tokens\": 7, \"top_k\": null}");
    json_t *a = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "ROMEO:", "--json", "-t",
                                               "1", NULL});
    json_t *greedy = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", DEMO, "-p", "ROMEO:", "--json",
                                                    "-n", "7", "--temperature", "0", "-t", "1", NULL});
    char x[4096], y[4096];
    cr_expect_str_eq(ids_string(a, x, sizeof x), ids_string(greedy, y, sizeof y),
                     "do_sample false is greedy, max_new_tokens 7");
    json_t *b = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "ROMEO:", "--json", "-n", "3",
                                               "-t", "1", NULL});
    cr_expect_eq(json_array_size(json_object_get(b, "generated_ids")), 3, "the flag wins over max_new_tokens");
    json_decref(a), json_decref(b), json_decref(greedy);
    /* a sampled default: the same text as the flags that say the same */
    tu_write_text(cfg, "{\"temperature\": 1.3, \"top_k\": 5, \"top_p\": 0.9, \"min_p\": 0.0, \"max_new_tokens\": 12}");
    a = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "KING:", "--json", "-s", "9", "-t",
                                       "1", NULL});
    b = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", DEMO, "-p", "KING:", "--json", "-s", "9", "-t",
                                       "1", "--temperature", "1.3", "--top-k", "5", "--top-p", "0.9", "--min-p", "0",
                                       "-n", "12", NULL});
    cr_expect_str_eq(ids_string(a, x, sizeof x), ids_string(b, y, sizeof y));
    json_decref(a), json_decref(b);
    /* a malformed value is an error naming the file and the key */
    tu_write_text(cfg, "{\"top_k\": \"many\"}");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "x", NULL}, &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "generation_config.json: \"top_k\"") != NULL, "%s", err);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "--help", NULL}, &out, &err);
    cr_expect(strstr(out, "generation_config.json") != NULL, "--help says so: %s", out);
    free(out), free(err);
    tu_rmtree(dir);
    free(cfg);
    free(dir);
}

/* ---- generate --json ----------------------------------------------------------------------------- */

JB_TEST(generate, json_output) {
    json_t *root = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", DEMO, "-p", "ROMEO:", "-n", "5",
                                                  "--temperature", "0", "--json", "-t", "1", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(root, "prompt")), "ROMEO:");
    cr_expect_str_eq(json_string_value(json_object_get(root, "finish_reason")), "length");
    json_t *ids = json_object_get(root, "generated_ids"), *prompt = json_object_get(root, "prompt_ids");
    cr_assert_eq(json_array_size(ids), 5);
    jamba_tokenizer *t = NULL;
    cr_assert_eq(jamba_tokenizer_load(DEMO, &t, NULL), JAMBA_OK);
    int32_t want[16], got[16];
    int64_t n;
    cr_assert_eq(jamba_tokenize(t, "ROMEO:", 6, JAMBA_TOKENIZE_ADD_SPECIAL, want, 16, &n, NULL), JAMBA_OK);
    cr_assert_eq(json_array_size(prompt), (size_t)n);
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(json_integer_value(json_array_get(prompt, (size_t)i)), want[i]);
    for (int i = 0; i < 5; i++)
        got[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
    char text[256];
    size_t len;
    cr_assert_eq(jamba_detokenize(t, got, 5, false, text, sizeof text, &len, NULL), JAMBA_OK);
    cr_expect_str_eq(json_string_value(json_object_get(root, "text")), text);
    json_t *stats = json_object_get(root, "statistics");
    json_t *decode = json_object_get(stats, "decode"), *prefill = json_object_get(stats, "prefill");
    cr_expect_eq(json_integer_value(json_object_get(decode, "tokens")), 5);
    cr_expect_eq(json_integer_value(json_object_get(prefill, "tokens")), n);
    cr_expect(json_real_value(json_object_get(decode, "tokens_per_second")) > 0);
    cr_expect(json_real_value(json_object_get(decode, "seconds")) > 0);
    jamba_tokenizer_free(t);
    json_decref(root);
    /* text that is not UTF-8 still makes valid JSON (U+FFFD for each bad byte) */
    root = generate_json((const char *[]){JB_CLI_PATH, "generate", "-m", DEMO, "-p", "a\xff" "b", "-n", "2", "--json",
                                          "-t", "1", NULL});
    cr_expect_str_eq(json_string_value(json_object_get(root, "prompt")), "a\xef\xbf\xbd" "b");
    json_decref(root);
}

/* ---- limits, statistics, messages ---------------------------------------------------------------- */

JB_TEST(limits, max_tokens_and_long_prompts) {
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-p", "x", "--max-tokens", "99999999999", NULL}, &out,
                    &err);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "--max-tokens 99999999999 is more than the model's context of 4096 tokens") != NULL, "%s",
              err);
    cr_expect(strstr(err, "max_position_embeddings") != NULL && strstr(err, "memory") == NULL, "%s", err);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "chat", "-m", CHAT_MODEL, "-n", "99999999999", NULL}, &out, &err);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, "max_position_embeddings") != NULL, "%s", err);
    free(out), free(err);
    /* a prompt longer than the model's context: refused, or its end kept with --truncate */
    size_t words = 5000;
    char *prompt = malloc(5 * words + 1);
    for (size_t i = 0; i < words; i++)
        memcpy(prompt + 5 * i, "word ", 5);
    prompt[5 * words] = '\0';
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-p", prompt, "-n", "4", "-t", "2", NULL}, &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "the model's context of 4096 tokens (max_position_embeddings) leaves no room") != NULL, "%s",
              err);
    cr_expect_str_empty(out);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-p", prompt, "-n", "4", "-t", "2", "--truncate", "--no-echo",
                                 NULL},
                &out, &err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect(strstr(err, "jamba: warning: the prompt has") != NULL, "%s", err);
    cr_expect_eq(number_after(err, "prompt tokens "), 4096 - 4, "%s", err);
    cr_expect_eq(number_after(err, "generated "), 4, "%s", err);
    free(out), free(err);
    free(prompt);
}

JB_TEST(limits, no_rate_for_an_empty_phase) {
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-p", "", "-n", "3", "-t", "1", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect(strstr(err, "prompt tokens 1, generated 3 tokens, decode ") != NULL, "no prefill rate: %s", err);
    cr_expect_null(strstr(err, "prefill"), "%s", err);
    free(out), free(err);
}

JB_TEST(messages, quantize_reports_what_it_wrote) {
    char *tmp = tu_tmpdir();
    char *dst = tu_path(tmp, "q");
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "quantize", "-m", DEMO, "--out", dst, "-t", "2", NULL}, &out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    char *file = tu_path(dst, "model.safetensors");
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    char want[512];
    snprintf(want, sizeof want, "wrote %s (model.safetensors, %.2f MiB)\n", dst, (double)st.st_size / 1048576.0);
    cr_expect_str_eq(out, want);
    free(out), free(err);
    tu_rmtree(tmp);
    free(file), free(dst), free(tmp);
}

JB_TEST(messages, help_is_truthful_per_command) {
    char *out, *err;
    cr_assert_eq(tu_run((const char *[]){JB_CLI_PATH, "chat", "--help", NULL}, &out, &err), 0);
    cr_expect(strstr(out, "at most 4096") != NULL, "chat's --ctx default: %s", out);
    cr_expect_null(strstr(out, "prompt + max tokens"), "%s", out);
    cr_expect(strstr(out, "tokens per reply") != NULL, "%s", out);
    free(out), free(err);
    cr_assert_eq(tu_run((const char *[]){JB_CLI_PATH, "generate", "--help", NULL}, &out, &err), 0);
    cr_expect(strstr(out, "--truncate") != NULL && strstr(out, "--json") != NULL, "%s", out);
    cr_expect(strstr(out, "-n, --max-tokens") != NULL, "%s", out);
    free(out), free(err);
}

/* Every failure: a non-zero status and a "jamba: error:" line (a usage error: exit 2 and the command). */
JB_TEST(messages, every_error_exits_nonzero_with_a_message) {
    char *tmp = tu_tmpdir();
    char *notdir = tu_path(tmp, "file");
    tu_write_text(notdir, "x");
    char *under = tu_path(notdir, "out");
    struct {
        const char *const *argv;
        int rc;
        const char *needle;
    } cases[] = {
        {(const char *[]){JB_CLI_PATH, "generate", "-p", "x", "--stop", "", NULL}, 2, "--stop"},
        {(const char *[]){JB_CLI_PATH, "generate", "--stop=", "-p", "x", NULL}, 2, "--stop"},
        {(const char *[]){JB_CLI_PATH, "generate", "-m", "/no/such/model", "-p", "x", NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "generate", "--prompt-file", "/no/such/file", NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "chat", "-m", "/no/such/model", NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "tokenize", "-m", DEMO, "--file", "/no/such/file", NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "detokenize", "-m", DEMO, "--text", "99999", NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "quantize", "-m", DEMO, "--out", under, NULL}, 1, "jamba: error: "},
        {(const char *[]){JB_CLI_PATH, "score", "-m", DEMO, "--file", "/no/such/file", NULL}, 1, "jamba: error: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = tu_run(cases[i].argv, &out, &err);
        cr_expect_eq(rc, cases[i].rc, "case %zu: rc %d, stderr %s", i, rc, err);
        cr_expect(strstr(err, cases[i].needle) != NULL, "case %zu: %s", i, err);
        free(out), free(err);
    }
    tu_rmtree(tmp);
    free(under), free(notdir), free(tmp);
}

/* Run `jamba tokenize -m DEMO --file FILE [--json]` with its address space limited (RLIMIT_AS) to `mib`:
 * its exit status (-1 when a signal ended it); its stderr into *err (stdout is discarded). */
static int tokenize_limited(const char *file, bool json, rlim_t mib, char **err) {
    const char *argv[] = {JB_CLI_PATH, "tokenize", "-m", DEMO, "--file", file, json ? "--json" : NULL, NULL};
    return tu_child_wait(tu_spawn(argv, RLIMIT_AS, mib << 20), err);
}

/* Out of memory at any point of `jamba tokenize` (the id buffer, the tokenizer's work, the JSON output) is
 * exit status 1 with a "jamba: error:" line, never a silent 1 or a crash. (Not under AddressSanitizer, which
 * cannot start within a small address space.) */
JB_TEST(messages, tokenize_out_of_memory_says_so) {
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("RLIMIT_AS does not work with AddressSanitizer");
#endif
    char *tmp = tu_tmpdir(), *file = tu_path(tmp, "text.txt");
    /* 4 MB of short words: about 4 million ids, tens of MB of JSON objects */
    size_t n = 4 << 20;
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = i % 3 == 2 ? ' ' : (char)('a' + (i * 7) % 26);
    text[n] = '\0';
    tu_write_text(file, text);
    free(text);
    int failed = 0, succeeded = 0, not_started = 0;
    for (rlim_t mib = 40; mib <= 2048; mib = mib * 3 / 2) {
        for (int json = 0; json < 2; json++) {
            char *err;
            int rc = tokenize_limited(file, json, mib, &err);
            if (rc == 127 && strstr(err, "error while loading shared libraries") != NULL) {
                /* the loader could not map the program's libraries (a CUDA build's cuBLAS and NCCL reserve
                 * much address space): nothing of ours ran, so this limit tells nothing */
                not_started++;
                free(err);
                continue;
            }
            cr_expect(rc == 0 || rc == 1, "%d MiB%s: exit status %d: %s", (int)mib, json ? " --json" : "", rc, err);
            if (rc == 1)
                cr_expect(strstr(err, "jamba: error: ") != NULL && strstr(err, "memory") != NULL,
                          "%d MiB%s: exit status 1 says why: '%s'", (int)mib, json ? " --json" : "", err);
            failed += rc == 1;
            succeeded += rc == 0;
            free(err);
        }
    }
    if (succeeded + failed == 0)
        cr_skip_test("the program's libraries do not load under any of the address-space limits tried");
    cr_expect_gt(failed + not_started, 0, "small limits fail");
    cr_expect_gt(succeeded, 0, "large limits succeed (%d limits too small to start the program)", not_started);
    tu_rmtree(tmp);
    free(file), free(tmp);
}

/* ---- non-finite logits --------------------------------------------------------------------------- */

/* A copy of `src` with a NaN in the first q_proj (it loads: only small tensors are checked at load). */
static char *nan_model(const char *src) {
    char *dir = tu_clone_model(src);
    char *file = tu_path(dir, "model.safetensors");
    tu_st_list l;
    tu_st_list_read(file, &l);
    int64_t k = -1;
    for (int64_t i = 0; i < l.n && k < 0; i++)
        if (strstr(l.items[i].name, "q_proj.weight") != NULL)
            k = i;
    cr_assert_geq(k, 0);
    cr_assert_eq(l.items[k].dtype, JAMBA_DTYPE_F32);
    size_t bytes = 4;
    for (int r = 0; r < l.items[k].rank; r++)
        bytes *= (size_t)l.items[k].shape[r];
    float *copy = malloc(bytes);
    memcpy(copy, l.items[k].data, bytes);
    copy[0] = NAN;
    l.items[k].data = copy;
    tu_st_list_write(&l, file);
    tu_st_list_free(&l);
    free(copy);
    free(file);
    return dir;
}

JB_TEST(numeric, generate_and_chat_report_non_finite_logits) {
    char *dir = nan_model(CHAT_MODEL);
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "hi", "-n", "5", "-t", "1", NULL}, &out,
                    &err);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, "the model produced non-finite logits at position") != NULL, "%s", err);
    cr_expect(strstr(err, "jamba inspect --check-finite") != NULL, "%s", err);
    free(out), free(err);
    rc = tu_run_input((const char *[]){JB_CLI_PATH, "chat", "-m", dir, "-n", "5", "-t", "1", NULL}, "hello\n", &out,
                      &err);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, "non-finite logits") != NULL, "%s", err);
    free(out), free(err);
    tu_rmtree(dir);
    free(dir);
}

/* --check-finite on every command that loads weights: the model is refused at load, naming the tensor, before
 * anything is generated or written. */
JB_TEST(numeric, check_finite_refuses_the_model_on_every_loading_command) {
    char *dir = nan_model(CHAT_MODEL);
    char *tmp = tu_tmpdir(), *dst = tu_path(tmp, "q");
    const char *const *cases[] = {
        (const char *[]){JB_CLI_PATH, "generate", "-m", dir, "-p", "hi", "-n", "5", "-t", "1", "--check-finite", NULL},
        (const char *[]){JB_CLI_PATH, "chat", "-m", dir, "-n", "5", "-t", "1", "--check-finite", NULL},
        (const char *[]){JB_CLI_PATH, "quantize", "-m", dir, "--out", dst, "-t", "1", "--check-finite", NULL},
        (const char *[]){JB_CLI_PATH, "inspect", "-m", dir, "--check-finite", NULL},
        (const char *[]){JB_CLI_PATH, "score", "-m", dir, "--tokens", "1,5,9", "--check-finite", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        /* chat would read its message from stdin: it must fail before reading any */
        int rc = tu_run(cases[i], &out, &err);
        cr_expect_eq(rc, 1, "%s: exit status %d: %s", cases[i][1], rc, err);
        cr_expect(strstr(err, "jamba: error: ") != NULL && strstr(err, "q_proj.weight") != NULL,
                  "%s: the message names the tensor: %s", cases[i][1], err);
        cr_expect_null(strstr(err, "non-finite logits"), "%s: refused at load, before running: %s", cases[i][1], err);
        if (i != 4) /* score prints its table (the model's row shows the error) */
            cr_expect_str_empty(out, "%s", cases[i][1]);
        free(out), free(err);
    }
    struct stat sb;
    cr_expect_neq(stat(dst, &sb), 0, "quantize wrote nothing");
    tu_rmtree(tmp);
    tu_rmtree(dir);
    free(dst), free(tmp), free(dir);
}

JB_TEST(numeric, score_lists_a_failing_model_and_scores_the_others) {
    char *good = tu_fixture("models/tiny-hf");
    char *bad = nan_model(good);
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", good, "--model", bad, "--model", "/no/such/model",
                                     "--tokens", "1,5,9,33", "--json", NULL},
                    &out, &err);
    cr_expect_eq(rc, 1, "%s", err);
    json_t *root = json_loads(out, 0, NULL);
    cr_assert_not_null(root, "%s", out);
    json_t *models = json_object_get(root, "models");
    cr_assert_eq(json_array_size(models), 3, "%s", out);
    json_t *g = json_array_get(models, 0), *b = json_array_get(models, 1), *missing = json_array_get(models, 2);
    cr_expect(json_is_real(json_object_get(g, "mean_nll")));
    cr_expect(json_is_null(json_object_get(g, "error")));
    cr_expect(json_is_null(json_object_get(g, "bits_per_byte")), "token ids have no bytes");
    cr_expect(strstr(json_string_value(json_object_get(b, "error")), "non-finite logits at position 0") != NULL, "%s",
              out);
    cr_expect(json_is_null(json_object_get(b, "mean_nll")) && json_is_null(json_object_get(b, "perplexity")));
    cr_expect(strstr(json_string_value(json_object_get(missing, "error")), "/no/such/model") != NULL, "%s", out);
    json_decref(root);
    free(out), free(err);
    /* alone, in text: an error, no nan */
    rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", bad, "--tokens", "1,5,9,33", NULL}, &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect_null(strstr(out, "nan"), "%s", out);
    cr_expect(strstr(err, "non-finite logits") != NULL, "%s", err);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", bad, "--tokens", "1,5,9,33", "--json", NULL}, &out,
                &err);
    cr_expect_eq(rc, 1);
    root = json_loads(out, 0, NULL);
    cr_expect_eq(json_array_size(json_object_get(root, "models")), 1, "%s", out);
    json_decref(root);
    free(out), free(err);
    /* the table: the failing model's row, "-" where a figure is not defined */
    rc = tu_run((const char *[]){JB_CLI_PATH, "score", "--model", good, "--model", bad, "--tokens", "1,5,9,33", NULL},
                &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect_null(strstr(out, "nan"), "%s", out);
    const char *row = strstr(out, bad);
    cr_expect(row != NULL && strstr(row, "error: ") != NULL, "%s", out);
    free(out), free(err);
    tu_rmtree(bad);
    free(bad), free(good);
}

JB_TEST(numeric, score_allow_unexpected) {
    char *src = tu_fixture("models/tiny-hf");
    char *dir = tu_clone_model(src);
    char *file = tu_path(dir, "model.safetensors");
    tu_st_list l;
    tu_st_list_read(file, &l);
    static const float extra[4] = {1, 2, 3, 4};
    l.items[l.n++] = (jb_st_out_tensor){strdup("model.extra_probe.weight"), JAMBA_DTYPE_F32, 1, {4}, extra};
    tu_st_list_write(&l, file);
    tu_st_list_free(&l);
    char *out, *err;
    int rc = tu_run((const char *[]){JB_CLI_PATH, "score", "-m", dir, "--tokens", "1,5,9", NULL}, &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "model.extra_probe.weight") != NULL, "%s", err);
    free(out), free(err);
    rc = tu_run((const char *[]){JB_CLI_PATH, "score", "-m", dir, "--tokens", "1,5,9", "--allow-unexpected", NULL},
                &out, &err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "tokens 3, predicted 2") != NULL, "%s", out);
    free(out), free(err);
    tu_rmtree(dir);
    free(file), free(dir), free(src);
}
