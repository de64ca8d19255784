/*
 * cmd_tokenize.c — `jamba tokenize` and `jamba detokenize`: text ↔ token ids with a model's tokenizer.
 */
#include "tools/jamba/cli.h"
#include "tools/jamba/generation.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tok_opts {
    const char *model, *tokenizer, *text, *file;
    bool json, no_special, parse_special, keep_special;
} tok_opts;

static void help_tokenize(void) {
    printf("usage: jamba tokenize (--model DIR | --tokenizer FILE) (--text TEXT | --file FILE) [--json]\n"
           "                      [--no-special] [--parse-special]\n"
           "\n"
           "Print the token ids of a text on one line, separated by spaces (or a JSON object with --json).\n"
           "\n"
           "  -m, --model DIR    read the tokenizer of a model folder (tokenizer.json wins over tokenizer.model)\n"
           "  --tokenizer FILE   read a tokenizer.json or tokenizer.model file\n"
           "  --text TEXT        the text; or --file FILE to read it from a file (\"-\" for stdin)\n"
           "  --no-special       do not add BOS/EOS\n"
           "  --parse-special    text such as <|startoftext|> becomes the special token\n"
           "  --json             {\"ids\": [...], \"pieces\": [...]}\n");
}

static void help_detokenize(void) {
    printf("usage: jamba detokenize (--model DIR | --tokenizer FILE) (--text IDS | --file FILE) [--json]\n"
           "                        [--keep-special]\n"
           "\n"
           "Print the text of token ids given as numbers separated by spaces, commas or newlines.\n"
           "\n"
           "  -m, --model DIR    read the tokenizer of a model folder\n"
           "  --tokenizer FILE   read a tokenizer.json or tokenizer.model file\n"
           "  --text IDS         the ids; or --file FILE to read them from a file (\"-\" for stdin)\n"
           "  --keep-special     print special tokens such as <|endoftext|> too\n"
           "  --json             {\"text\": \"...\"}\n");
}

static int load_input(const char *cmd, const tok_opts *o, jamba_tokenizer **tok, char **input, size_t *len) {
    if ((o->model == NULL) == (o->tokenizer == NULL))
        return cli_usage_error(cmd, "give exactly one of --model DIR or --tokenizer FILE");
    if ((o->text == NULL) == (o->file == NULL))
        return cli_usage_error(cmd, "give exactly one of --text or --file");
    jamba_error err = {0};
    if (jamba_tokenizer_load(o->model ? o->model : o->tokenizer, tok, &err) != JAMBA_OK)
        return cli_fail(&err);
    if (o->text) {
        *len = strlen(o->text);
        *input = strdup(o->text);
    } else {
        *input = cli_read_file(o->file, len);
    }
    if (*input == NULL) {
        fprintf(stderr, "jamba: error: %s: cannot read: %s\n", o->file ? o->file : "--text", strerror(errno));
        jamba_tokenizer_free(*tok);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* Print `root` as one line of JSON; NULL (it could not be built: out of memory) is said on stderr, so the exit
 * status 1 never comes without a message. */
static int print_json(json_t *root) {
    int rc = root != NULL && json_dumpf(root, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 ? CLI_EXIT_OK
                                                                                              : CLI_EXIT_FAIL;
    json_decref(root);
    if (rc != CLI_EXIT_OK)
        fprintf(stderr, "jamba: error: out of memory for the JSON output\n");
    else
        printf("\n");
    return rc;
}

/* {"ids": [...], "pieces": [...]}; a piece that is not valid UTF-8 (a tokenizer.model may hold any bytes) has
 * each bad sequence replaced by U+FFFD, so every id keeps its piece. */
static int print_ids_json(const jamba_tokenizer *tok, const int32_t *ids, int64_t n) {
    json_t *arr = json_array(), *pieces = json_array();
    bool ok = arr != NULL && pieces != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *piece = jamba_tokenizer_piece(tok, ids[i]);
        ok = json_array_append_new(arr, json_integer(ids[i])) == 0 &&
             json_array_append_new(pieces, gen_json_text(piece, strlen(piece))) == 0;
    }
    if (!ok) {
        json_decref(arr);
        json_decref(pieces);
        return print_json(NULL);
    }
    return print_json(json_pack("{s:o,s:o}", "ids", arr, "pieces", pieces));
}

int cmd_tokenize(int argc, char **argv) {
    tok_opts o = {0};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &o.model, 0, 0},        {"--tokenizer", CLI_STRING, &o.tokenizer, 0, 0},
        {"--text", CLI_STRING, &o.text, 0, 0},          {"--file", CLI_STRING, &o.file, 0, 0},
        {"--json", CLI_FLAG, &o.json, 0, 0},            {"--no-special", CLI_FLAG, &o.no_special, 0, 0},
        {"--parse-special", CLI_FLAG, &o.parse_special, 0, 0},
    };
    int rc = cli_parse("tokenize", argc, argv, opts, sizeof opts / sizeof opts[0], help_tokenize);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    jamba_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    if ((rc = load_input("tokenize", &o, &tok, &text, &len)) != 0)
        return rc;
    int flags = (o.no_special ? 0 : JAMBA_TOKENIZE_ADD_SPECIAL) | (o.parse_special ? JAMBA_TOKENIZE_PARSE_SPECIAL : 0);
    int64_t cap = jamba_tokenizer_max_ids(tok, len), n = 0;
    int32_t *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    jamba_error err = {0};
    if (ids == NULL)
        snprintf(err.message, sizeof err.message, "out of memory for %lld token ids", (long long)cap);
    if (ids == NULL || jamba_tokenize(tok, text, len, flags, ids, cap, &n, &err) != JAMBA_OK) {
        rc = cli_fail(&err);
    } else if (o.json) {
        rc = print_ids_json(tok, ids, n);
    } else {
        for (int64_t i = 0; i < n; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    free(text);
    jamba_tokenizer_free(tok);
    return cli_finish_output(rc);
}

/* Numbers separated by spaces, commas or newlines. */
static bool parse_id_list(const char *s, int32_t **out, int64_t *n) {
    int64_t cap = 64;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    *n = 0;
    while (ids) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\r' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return false;
        }
        if (*n == cap) {
            int32_t *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (grown == NULL) {
                free(ids);
                return false;
            }
            ids = grown;
        }
        ids[(*n)++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    return ids != NULL;
}

int cmd_detokenize(int argc, char **argv) {
    tok_opts o = {0};
    const cli_option opts[] = {
        {"--model", CLI_STRING, &o.model, 0, 0},   {"--tokenizer", CLI_STRING, &o.tokenizer, 0, 0},
        {"--text", CLI_STRING, &o.text, 0, 0},     {"--file", CLI_STRING, &o.file, 0, 0},
        {"--json", CLI_FLAG, &o.json, 0, 0},       {"--keep-special", CLI_FLAG, &o.keep_special, 0, 0},
    };
    int rc = cli_parse("detokenize", argc, argv, opts, sizeof opts / sizeof opts[0], help_detokenize);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    jamba_tokenizer *tok = NULL;
    char *input = NULL;
    size_t len = 0;
    if ((rc = load_input("detokenize", &o, &tok, &input, &len)) != 0)
        return rc;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!parse_id_list(input, &ids, &n)) {
        free(input);
        jamba_tokenizer_free(tok);
        return cli_usage_error("detokenize", "the input is not a list of token ids");
    }
    jamba_error err = {0};
    size_t need = 0;
    jamba_status st = jamba_detokenize(tok, ids, n, o.keep_special, NULL, 0, &need, &err);
    char *text = st == JAMBA_ERR_BUFFER_TOO_SMALL || st == JAMBA_OK ? malloc(need + 1) : NULL;
    if (text == NULL && (st == JAMBA_ERR_BUFFER_TOO_SMALL || st == JAMBA_OK))
        snprintf(err.message, sizeof err.message, "out of memory for %zu bytes of text", need + 1);
    if (text == NULL || jamba_detokenize(tok, ids, n, o.keep_special, text, need + 1, &need, &err) != JAMBA_OK) {
        rc = cli_fail(&err);
    } else if (o.json) {
        rc = print_json(json_pack("{s:o}", "text", gen_json_text(text, need)));
    } else {
        rc = fwrite(text, 1, need, stdout) == need ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    }
    free(text);
    free(ids);
    free(input);
    jamba_tokenizer_free(tok);
    return cli_finish_output(rc);
}
