/*
 * check_layers.c — the layering check: every #include "..." of every C, CUDA and header file under the
 * folders named in layers.txt must point into the file's own folder, include/, or a folder its line in
 * layers.txt allows; library layers write includes from the repository root ("base/error.h"); and no
 * two modules (a file name without its extension: x.c with x.h) include each other in a circle.
 *
 *   jamba_check_layers ROOT      exit 0: clean; 1: violations (each printed); 2: cannot check
 *
 * ROOT/layers.txt: lines "folder: dep dep ..." ("*": anything), '#' comments. A folder's files are those
 * under it that no longer-named folder claims (tools/jamba inside tools). Every source file under ROOT,
 * except in build*, .git and the folders layers.txt marks "-", must belong to some folder.
 */
#define _XOPEN_SOURCE 700
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LAYERS 64
#define MAX_DEPS 32
#define MAX_PATH 1024

typedef struct layer {
    char name[128];
    char deps[MAX_DEPS][128];
    int n_deps;
    bool any;     /* "*" */
    bool skipped; /* "-": not checked (e.g. fetched or generated code) */
} layer;

typedef struct file {
    char path[MAX_PATH];   /* relative to the root */
    char module[MAX_PATH]; /* path without extension */
    int layer;
    char **includes;       /* resolved relative paths of project includes */
    int n_includes;
} file;

static layer layers[MAX_LAYERS];
static int n_layers;
static file *files;
static int n_files, cap_files;
static int violations;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "check_layers: out of memory\n");
        exit(2);
    }
    return q;
}

static char *xstrdup(const char *s) {
    char *d = xrealloc(NULL, strlen(s) + 1);
    return strcpy(d, s);
}

/* strncpy that always terminates (long paths are cut, never overrun). */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt, ...) {
    violations++;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ---- layers.txt --------------------------------------------------------------------------------- */

static int read_layers(const char *root) {
    char path[MAX_PATH];
    snprintf(path, sizeof path, "%s/layers.txt", root);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "check_layers: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *colon = strchr(line, ':');
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            continue;
        if (colon == NULL || n_layers == MAX_LAYERS) {
            fprintf(stderr, "check_layers: %s:%d: expected \"folder: deps...\"\n", path, lineno);
            fclose(f);
            return -1;
        }
        *colon = '\0';
        layer *l = &layers[n_layers++];
        memset(l, 0, sizeof *l);
        snprintf(l->name, sizeof l->name, "%.*s", (int)strcspn(p, " \t"), p);
        for (char *tok = strtok(colon + 1, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
            if (strcmp(tok, "*") == 0)
                l->any = true;
            else if (strcmp(tok, "-") == 0)
                l->skipped = true;
            else if (l->n_deps < MAX_DEPS)
                snprintf(l->deps[l->n_deps++], sizeof l->deps[0], "%s", tok);
        }
    }
    fclose(f);
    return 0;
}

static int find_layer_named(const char *name) {
    for (int i = 0; i < n_layers; i++)
        if (strcmp(layers[i].name, name) == 0)
            return i;
    return -1;
}

/* The layer owning a relative path: the longest folder name that prefixes it; -1 when none. */
static int layer_of(const char *rel) {
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < n_layers; i++) {
        size_t n = strlen(layers[i].name);
        if (strncmp(rel, layers[i].name, n) == 0 && rel[n] == '/' && n > best_len) {
            best = i;
            best_len = n;
        }
    }
    return best;
}

static bool may_use(int from, int to) {
    if (from == to || layers[from].any)
        return true;
    for (int d = 0; d < layers[from].n_deps; d++)
        if (strcmp(layers[from].deps[d], layers[to].name) == 0)
            return true;
    return false;
}

/* The layers' own graph must be a DAG, and every dependency must name a layer. */
static void check_layer_graph(void) {
    for (int i = 0; i < n_layers; i++)
        for (int d = 0; d < layers[i].n_deps; d++) {
            int j = find_layer_named(layers[i].deps[d]);
            if (j < 0)
                violation("layers.txt: %s lists %s, which is not a folder of layers.txt", layers[i].name,
                          layers[i].deps[d]);
            else if (may_use(j, i) && !layers[j].any)
                violation("layers.txt: %s and %s may include each other (a circle)", layers[i].name,
                          layers[j].name);
        }
}

/* ---- the tree ----------------------------------------------------------------------------------- */

static bool is_source(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h") || !strcmp(dot, ".cu") || !strcmp(dot, ".cuh"));
}

static bool exists(const char *root, const char *rel) {
    char path[MAX_PATH * 2];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void add_file(const char *rel) {
    if (n_files == cap_files) {
        cap_files = cap_files ? 2 * cap_files : 256;
        files = xrealloc(files, (size_t)cap_files * sizeof *files);
    }
    file *f = &files[n_files++];
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", rel);
    snprintf(f->module, sizeof f->module, "%s", rel);
    *strrchr(f->module, '.') = '\0';
    f->layer = layer_of(rel);
}

static void walk(const char *root, const char *rel) {
    char path[MAX_PATH * 2];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !strncmp(e->d_name, "build", 5))
            continue;
        char child[MAX_PATH];
        if (snprintf(child, sizeof child, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof child)
            continue;
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", root, child);
        if (lstat(path, &st) != 0)
            continue;
        int l = layer_of(child);
        if (S_ISDIR(st.st_mode)) {
            int own = find_layer_named(child);
            if ((own >= 0 && layers[own].skipped) || (own < 0 && l >= 0 && layers[l].skipped))
                continue;
            walk(root, child);
        } else if (S_ISREG(st.st_mode) && is_source(e->d_name)) {
            add_file(child);
        }
    }
    closedir(d);
}

/* Normalise "a/b/../c" in place. */
static void normalise(char *p) {
    char *parts[128];
    int n = 0;
    for (char *tok = strtok(p, "/"); tok && n < 128; tok = strtok(NULL, "/")) {
        if (!strcmp(tok, "."))
            continue;
        if (!strcmp(tok, "..") && n > 0 && strcmp(parts[n - 1], ".."))
            n--;
        else
            parts[n++] = tok;
    }
    char out[MAX_PATH] = "";
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, "/");
        strncat(out, parts[i], sizeof out - strlen(out) - 2);
    }
    strcpy(p, out);
}

static void read_includes(const char *root, file *f) {
    char path[MAX_PATH * 2];
    snprintf(path, sizeof path, "%s/%s", root, f->path);
    FILE *in = fopen(path, "r");
    if (in == NULL)
        return;
    char line[4096];
    const bool library = f->layer >= 0 && !layers[f->layer].any;
    while (fgets(line, sizeof line, in)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p++ != '#')
            continue;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "include", 7))
            continue;
        p += 7;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '"')
            continue;
        char *end = strchr(p + 1, '"');
        if (end == NULL)
            continue;
        *end = '\0';
        const char *inc = p + 1;
        char rel[MAX_PATH], local[MAX_PATH * 2];
        snprintf(local, sizeof local, "%s", f->path);
        *strrchr(local, '/') = '\0';
        strcat(local, "/");
        strncat(local, inc, sizeof local - strlen(local) - 1);
        normalise(local);
        char pub[MAX_PATH + 16];
        snprintf(pub, sizeof pub, "include/%s", inc);
        if (exists(root, pub) && strchr(inc, '/') == NULL) {
            continue; /* the public header */
        } else if (exists(root, inc) && strstr(inc, "..") == NULL) {
            snprintf(rel, sizeof rel, "%s", inc);
        } else if (exists(root, local)) {
            copy_str(rel, sizeof rel, local);
            if (library)
                violation("%s: #include \"%s\": write includes from the repository root (\"%s\")", f->path, inc,
                          local);
        } else {
            continue; /* a system or generated header */
        }
        f->includes = xrealloc(f->includes, (size_t)(f->n_includes + 1) * sizeof *f->includes);
        f->includes[f->n_includes++] = xstrdup(rel);
    }
    fclose(in);
}

/* ---- checks ------------------------------------------------------------------------------------- */

static void check_upward(void) {
    for (int i = 0; i < n_files; i++) {
        const file *f = &files[i];
        if (f->layer < 0) {
            violation("%s: not in any folder of layers.txt", f->path);
            continue;
        }
        for (int k = 0; k < f->n_includes; k++) {
            int to = layer_of(f->includes[k]);
            if (to < 0 || to == f->layer)
                continue;
            if (!may_use(f->layer, to)) {
                char what[512];
                snprintf(what, sizeof what, "%s may not use %s", layers[f->layer].name, layers[to].name);
                violation("%s: includes \"%s\": %s (layers.txt)", f->path, f->includes[k], what);
            }
        }
    }
}

/* Modules: a file name without its extension. Edges between distinct modules of the same layer or
 * across layers; a circle is a path back to the start. */
static int n_modules;
static char (*modules)[MAX_PATH];
static int *module_of; /* per file */
static char *adj;      /* [n_modules, n_modules] */
static int *color, *parent;

static int module_index(const char *m) {
    for (int i = 0; i < n_modules; i++)
        if (!strcmp(modules[i], m))
            return i;
    return -1;
}

/* Depth-first search; every edge back to a module on the current path closes a circle. */
static void dfs(int u) {
    color[u] = 1;
    for (int v = 0; v < n_modules; v++) {
        if (!adj[(size_t)u * n_modules + v])
            continue;
        if (color[v] == 1) {
            char chain[8192] = "";
            for (int w = u; w != v && w >= 0; w = parent[w]) {
                char tmp[8192] = " -> ";
                strncat(tmp, modules[w], sizeof tmp - strlen(tmp) - 1);
                strncat(tmp, chain, sizeof tmp - strlen(tmp) - 1);
                copy_str(chain, sizeof chain, tmp);
            }
            violation("modules include each other in a circle: %s%s -> %s", modules[v], chain, modules[v]);
        } else if (color[v] == 0) {
            parent[v] = u;
            dfs(v);
        }
    }
    color[u] = 2;
}

static void check_circles(void) {
    modules = xrealloc(NULL, (size_t)(n_files + 1) * sizeof *modules);
    module_of = xrealloc(NULL, (size_t)(n_files + 1) * sizeof *module_of);
    for (int i = 0; i < n_files; i++) {
        int m = module_index(files[i].module);
        if (m < 0) {
            m = n_modules++;
            snprintf(modules[m], sizeof modules[m], "%s", files[i].module);
        }
        module_of[i] = m;
    }
    adj = calloc((size_t)n_modules * (size_t)n_modules + 1, 1);
    color = calloc((size_t)n_modules + 1, sizeof *color);
    parent = calloc((size_t)n_modules + 1, sizeof *parent);
    if (!adj || !color || !parent) {
        fprintf(stderr, "check_layers: out of memory\n");
        exit(2);
    }
    for (int i = 0; i < n_files; i++)
        for (int k = 0; k < files[i].n_includes; k++) {
            char m[MAX_PATH];
            snprintf(m, sizeof m, "%s", files[i].includes[k]);
            char *dot = strrchr(m, '.');
            if (dot)
                *dot = '\0';
            int to = module_index(m);
            if (to >= 0 && to != module_of[i])
                adj[(size_t)module_of[i] * n_modules + to] = 1;
        }
    for (int u = 0; u < n_modules; u++)
        parent[u] = -1;
    for (int u = 0; u < n_modules; u++)
        if (color[u] == 0)
            dfs(u);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s ROOT\n", argv[0]);
        return 2;
    }
    const char *root = argv[1];
    if (read_layers(root) != 0)
        return 2;
    check_layer_graph();
    walk(root, "");
    if (n_files == 0) {
        fprintf(stderr, "check_layers: no source files under %s\n", root);
        return 2;
    }
    for (int i = 0; i < n_files; i++)
        read_includes(root, &files[i]);
    check_upward();
    check_circles();
    printf("check_layers: %d files in %d folders, %d violation%s\n", n_files, n_layers, violations,
           violations == 1 ? "" : "s");
    return violations ? 1 : 0;
}
