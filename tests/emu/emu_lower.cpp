/*
 * emu_lower.cpp — turns a CUDA source of cuda/ into C++ that g++ compiles against emu.h, at build time:
 *
 *   emu_lower IN.cu OUT.cpp
 *
 * Everything else of CUDA's device language is provided by emu.h as functions and macros; three constructs
 * have no C++ spelling a macro could produce, and only they are lowered, token by token (comments, string
 * and character literals are copied untouched; every line keeps its number, and OUT starts with a #line
 * naming IN, so diagnostics point into the real file):
 *   1. `K<<<grid, block, smem, stream>>>(args)` becomes
 *      `::jb_emu::launch(grid, block, smem, stream)([&](const auto &...a) { K(a...); })(args)` (C++ has no
 *      expression in which `<<` is followed by `<`), K being the kernel's name with its template arguments,
 *      if any, on the line of the `<<<`; the call inside keeps the deduction of template arguments.
 *   2. `extern __shared__ T name[];` becomes `T *const name = (T *)::jb_emu::dynamic_shared();` (a static
 *      __shared__ is a function static, but an extern one cannot be).
 *   3. Inline PTX of the table below becomes its C++ equivalent; any other `asm` stops the build, naming it.
 * Exit status 0, or 1 with a message "IN:LINE: ..." when the input has a construct it does not know.
 */
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace {

/* The inline PTX the kernels use, statement by statement, with what the emulation runs instead. */
struct ptx_lowering {
    const char *statement, *replacement;
};
const ptx_lowering k_ptx[] = {
    {"asm(\"ex2.approx.ftz.f32 %0, %1;\" : \"=f\"(y) : \"f\"(x));", "y = ::jb_emu::ex2_approx_ftz(x);"},
};

struct lowering {
    const std::string &in;
    const char *path;
    std::string out;
    size_t i = 0;
    int line = 1;
    bool failed = false;

    void fail(const std::string &what) {
        std::fprintf(stderr, "%s:%d: emu_lower: %s\n", path, line, what.c_str());
        failed = true;
    }
    bool at(const char *s) const { return in.compare(i, std::char_traits<char>::length(s), s) == 0; }
    /* Copy n characters, counting lines. */
    void copy(size_t n) {
        for (size_t k = 0; k < n && i < in.size(); k++, i++) {
            line += in[i] == '\n';
            out += in[i];
        }
    }
    /* Copy up to and including `end`, or to the end of the input. */
    void copy_through(const char *end) {
        const size_t e = in.find(end, i);
        copy(e == std::string::npos ? in.size() - i : e - i + std::char_traits<char>::length(end));
    }
    void copy_literal(char quote) {
        copy(1);
        while (i < in.size() && in[i] != quote && in[i] != '\n')
            copy(in[i] == '\\' ? 2 : 1);
        copy(1);
    }
    static bool ident_char(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

    /* `extern __shared__ T name[];` at i (just past "extern"). */
    void lower_extern_shared(size_t decl_start) {
        const size_t semi = in.find(';', i);
        const std::string decl = in.substr(decl_start, semi == std::string::npos ? 0 : semi - decl_start);
        const size_t open = decl.rfind('[');
        if (semi == std::string::npos || decl.find('\n') != std::string::npos || open == std::string::npos ||
            decl.find_first_not_of(" \t", open + 1) != decl.find(']', open)) {
            fail("an extern __shared__ declaration not of the form `extern __shared__ T name[];`");
            return;
        }
        size_t name_end = decl.find_last_not_of(" \t", open - 1) + 1, name_begin = name_end;
        while (name_begin > 0 && ident_char(decl[name_begin - 1]))
            name_begin--;
        const std::string name = decl.substr(name_begin, name_end - name_begin);
        std::string type = decl.substr(0, name_begin);
        type = type.substr(type.find_first_not_of(" \t"));
        type = type.substr(0, type.find_last_not_of(" \t") + 1);
        out += type + " *const " + name + " = (" + type + " *)::jb_emu::dynamic_shared();";
        i = semi + 1;
    }

    /* Remove from the output, and return, the kernel expression before a `<<<`: a name (maybe qualified)
     * and its template argument list, if any, leaving the white space between it and the `<<<`. */
    std::string take_kernel_name() {
        size_t end = out.find_last_not_of(" \t\n") + 1, p = end;
        if (p > 0 && out[p - 1] == '>') {
            int depth = 0;
            while (p > 0) {
                const char c = out[--p];
                depth += c == '>' ? 1 : c == '<' ? -1 : 0;
                if (depth == 0)
                    break;
            }
            while (p > 0 && (out[p - 1] == ' ' || out[p - 1] == '\t'))
                p--;
        }
        while (p > 0 && (ident_char(out[p - 1]) || out[p - 1] == ':'))
            p--;
        const std::string k = out.substr(p, end - p);
        if (k.empty() || !(std::isalpha((unsigned char)k[0]) || k[0] == '_' || k[0] == ':') ||
            k.find('\n') != std::string::npos) {
            fail("a launch whose kernel is not a name (with template arguments) ending on the line of its `<<<`");
            return "";
        }
        const std::string gap = out.substr(end);
        out.resize(p);
        out += gap;
        return k;
    }

    void run() {
        bool in_launch = false;
        std::string kernel;
        int launch_line = 0;
        while (i < in.size() && !failed) {
            if (at("//")) {
                copy_through("\n");
            } else if (at("/*")) {
                copy_through("*/");
            } else if (in[i] == '"' || in[i] == '\'') {
                copy_literal(in[i]);
            } else if (at("<<<")) {
                if (in_launch)
                    fail("a `<<<` inside a launch configuration");
                kernel = take_kernel_name();
                out += "::jb_emu::launch(";
                i += 3;
                in_launch = true;
                launch_line = line;
            } else if (in_launch && at(">>>")) {
                out += ")([&](const auto &...jb_emu_arg) { " + kernel + "(jb_emu_arg...); })";
                i += 3;
                in_launch = false;
            } else if (ident_char(in[i]) && (i == 0 || !ident_char(in[i - 1]))) {
                size_t e = i;
                while (e < in.size() && ident_char(in[e]))
                    e++;
                const std::string word = in.substr(i, e - i);
                if (word == "asm" || word == "__asm__") {
                    bool known = false;
                    for (const ptx_lowering &p : k_ptx)
                        if (at(p.statement)) {
                            out += p.replacement;
                            i += std::char_traits<char>::length(p.statement);
                            known = true;
                            break;
                        }
                    if (!known)
                        fail("inline assembly the emulation does not know (add its C++ equivalent to emu_lower.cpp)");
                } else if (word == "extern" && in.find_first_not_of(" \t", e) != std::string::npos &&
                           in.compare(in.find_first_not_of(" \t", e), 10, "__shared__") == 0) {
                    const size_t start = in.find_first_not_of(" \t", e) + 10;
                    i = start;
                    lower_extern_shared(start);
                } else {
                    copy(e - i);
                }
            } else {
                copy(1);
            }
        }
        if (in_launch && !failed) {
            line = launch_line;
            fail("a `<<<` without its `>>>`");
        }
    }
};

} // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: emu_lower IN.cu OUT.cpp\n");
        return 2;
    }
    std::ifstream f(argv[1], std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "emu_lower: cannot read %s\n", argv[1]);
        return 1;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string in = ss.str();
    lowering l{in, argv[1], {}};
    l.run();
    if (l.failed)
        return 1;
    std::ofstream o(argv[2], std::ios::binary);
    o << "#include \"tests/emu/emu.h\"\n#line 1 \"" << argv[1] << "\"\n" << l.out;
    o.close();
    if (!o) {
        std::fprintf(stderr, "emu_lower: cannot write %s\n", argv[2]);
        return 1;
    }
    return 0;
}
