/* formula.c: parses the table's formulas (formula.h) and prints them in C
 * or for PyTorch. A formula is parsed each time it is printed, into a small
 * tree on the stack: formulas are a line long and printing is not hot. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "formula.h"

enum { MAX_NODES = 128, MAX_OUT = 4096 };

typedef enum { F_NUM, F_NAME, F_NEG, F_ADD, F_SUB, F_MUL, F_DIV, F_CALL, F_SELECT } fkind;

typedef struct {
    fkind kind;
    const char *text; /* F_NUM, F_NAME, F_CALL: the word in the formula */
    int len;
    int kid[4];       /* F_SELECT: l > r ? a : b as kid 0..3 */
} fnode;

typedef struct {
    const char *src, *p;
    fnode nodes[MAX_NODES];
    int n;
    const char *error; /* the first problem, or NULL */
} parser;

static const char *const functions[] = {"exp", "log", "softplus", "sigmoid", "tanh"};
enum { N_FUNCTIONS = (int)(sizeof functions / sizeof functions[0]) };
/* each function in each language, in the order of `functions` */
static const char *const function_text[][N_FUNCTIONS] = {
    [LANG_C] = {"JV_EXP", "JV_LOG", "jv_softplus", "jv_sigmoid", "JV_TANH"},
    [LANG_TORCH] = {"torch.exp", "torch.log", "F.softplus", "torch.sigmoid", "torch.tanh"},
};

/* ---------------------------------------------------------------- parse -- */

static int fail(parser *ps, const char *why)
{
    if (!ps->error)
        ps->error = why;
    return -1;
}

static int new_node(parser *ps, fkind kind, const char *text, int len)
{
    if (ps->n == MAX_NODES)
        return fail(ps, "too long");
    fnode *f = &ps->nodes[ps->n];
    *f = (fnode){kind, text, len, {-1, -1, -1, -1}};
    return ps->n++;
}

static void skip_space(parser *ps)
{
    while (*ps->p == ' ')
        ps->p++;
}

static int accept(parser *ps, char c)
{
    skip_space(ps);
    if (*ps->p != c)
        return 0;
    ps->p++;
    return 1;
}

static int parse_select(parser *ps);

static int parse_atom(parser *ps)
{
    skip_space(ps);
    const char *start = ps->p;
    if (accept(ps, '(')) {
        int inner = parse_select(ps);
        if (!accept(ps, ')'))
            return fail(ps, "expecting ')'");
        return inner;
    }
    if (isdigit((unsigned char)*ps->p) || *ps->p == '.') {
        while (isdigit((unsigned char)*ps->p) || *ps->p == '.')
            ps->p++;
        return new_node(ps, F_NUM, start, (int)(ps->p - start));
    }
    if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
        while (isalnum((unsigned char)*ps->p) || *ps->p == '_')
            ps->p++;
        int len = (int)(ps->p - start);
        if (!accept(ps, '('))
            return new_node(ps, F_NAME, start, len);
        int known = 0;
        for (int i = 0; i < N_FUNCTIONS && !known; i++)
            known = (int)strlen(functions[i]) == len && strncmp(functions[i], start, (size_t)len) == 0;
        if (!known)
            return fail(ps, "unknown function");
        int call = new_node(ps, F_CALL, start, len);
        int arg = parse_select(ps);
        if (call < 0 || arg < 0)
            return -1;
        ps->nodes[call].kid[0] = arg;
        return accept(ps, ')') ? call : fail(ps, "expecting ')' after a function's argument");
    }
    return fail(ps, *ps->p ? "unexpected character" : "unexpected end");
}

static int parse_unary(parser *ps)
{
    if (accept(ps, '-')) {
        int neg = new_node(ps, F_NEG, NULL, 0), kid = parse_unary(ps);
        if (neg < 0 || kid < 0)
            return -1;
        ps->nodes[neg].kid[0] = kid;
        return neg;
    }
    return parse_atom(ps);
}

static int binary(parser *ps, fkind kind, int left, int right)
{
    if (left < 0 || right < 0)
        return -1;
    int b = new_node(ps, kind, NULL, 0);
    if (b >= 0) {
        ps->nodes[b].kid[0] = left;
        ps->nodes[b].kid[1] = right;
    }
    return b;
}

static int parse_product(parser *ps)
{
    int left = parse_unary(ps);
    for (;;) {
        if (accept(ps, '*'))
            left = binary(ps, F_MUL, left, parse_unary(ps));
        else if (accept(ps, '/'))
            left = binary(ps, F_DIV, left, parse_unary(ps));
        else
            return left;
    }
}

static int parse_sum(parser *ps)
{
    int left = parse_product(ps);
    for (;;) {
        if (accept(ps, '+'))
            left = binary(ps, F_ADD, left, parse_product(ps));
        else if (accept(ps, '-'))
            left = binary(ps, F_SUB, left, parse_product(ps));
        else
            return left;
    }
}

/* sum, or `sum > sum ? select : select` */
static int parse_select(parser *ps)
{
    int left = parse_sum(ps);
    if (!accept(ps, '>'))
        return left;
    int sel = new_node(ps, F_SELECT, NULL, 0), right = parse_sum(ps);
    if (!accept(ps, '?'))
        return fail(ps, "expecting '?' after a comparison");
    int a = parse_select(ps);
    if (!accept(ps, ':'))
        return fail(ps, "expecting ':' in a conditional");
    int b = parse_select(ps);
    if (sel < 0 || left < 0 || right < 0 || a < 0 || b < 0)
        return -1;
    int kids[4] = {left, right, a, b};
    memcpy(ps->nodes[sel].kid, kids, sizeof kids);
    return sel;
}

static int parse(parser *ps, const char *f)
{
    ps->src = ps->p = f;
    ps->n = 0;
    ps->error = NULL;
    int root = parse_select(ps);
    skip_space(ps);
    if (root >= 0 && *ps->p)
        root = fail(ps, "unexpected text after the formula");
    return ps->error ? -1 : root;
}

/* ---------------------------------------------------------------- print -- */

typedef struct {
    parser *ps;
    language lang;
    const binding *vars;
    int n_vars;
    char out[MAX_OUT];
    size_t len;
} printer;

static void emit(printer *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(printer *pr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pr->out + pr->len, sizeof pr->out - pr->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof pr->out - pr->len) {
        fprintf(stderr, "jmvaec: internal error: formula '%s' prints longer than %d bytes\n", pr->ps->src, MAX_OUT);
        abort();
    }
    pr->len += (size_t)n;
}

static int precedence(fkind k)
{
    switch (k) {
    case F_SELECT: return 0;
    case F_ADD:
    case F_SUB: return 1;
    case F_MUL:
    case F_DIV: return 2;
    case F_NEG: return 3;
    default: return 4;
    }
}

static const char *bound_text(printer *pr, const fnode *f)
{
    for (int i = 0; i < pr->n_vars; i++)
        if ((int)strlen(pr->vars[i].name) == f->len && strncmp(pr->vars[i].name, f->text, (size_t)f->len) == 0)
            return pr->vars[i].text;
    return NULL;
}

static void print_node(printer *pr, int i, int min_prec)
{
    const fnode *f = &pr->ps->nodes[i];
    int prec = precedence(f->kind);
    if (f->kind == F_SELECT && pr->lang == LANG_TORCH)
        prec = 4; /* torch.where(...) is a call */
    int parens = prec < min_prec;
    if (parens)
        emit(pr, "(");
    switch (f->kind) {
    case F_NUM: {
        int integer = 1;
        for (int k = 0; k < f->len; k++)
            integer &= isdigit((unsigned char)f->text[k]) != 0;
        emit(pr, "%s%.*s", pr->lang == LANG_C && !integer ? "(jv_real)" : "", f->len, f->text);
        break;
    }
    case F_NAME: {
        const char *text = bound_text(pr, f);
        if (!text && f->len == 7 && strncmp(f->text, "LOG_2PI", 7) == 0)
            text = pr->lang == LANG_C ? "JV_LOG_2PI" : "LOG_2PI";
        if (!text) {
            fprintf(stderr, "jmvaec: internal error: formula '%s' names '%.*s', which is bound to nothing\n",
                    pr->ps->src, f->len, f->text);
            abort();
        }
        emit(pr, "%s", text);
        break;
    }
    case F_NEG:
        emit(pr, "-");
        print_node(pr, f->kid[0], 3);
        break;
    case F_ADD:
    case F_SUB:
    case F_MUL:
    case F_DIV: {
        static const char op_char[] = {[F_ADD] = '+', [F_SUB] = '-', [F_MUL] = '*', [F_DIV] = '/'};
        print_node(pr, f->kid[0], prec);
        emit(pr, " %c ", op_char[f->kind]);
        print_node(pr, f->kid[1], prec + 1);
        break;
    }
    case F_CALL: {
        int which = 0;
        while ((int)strlen(functions[which]) != f->len || strncmp(functions[which], f->text, (size_t)f->len) != 0)
            which++;
        emit(pr, "%s(", function_text[pr->lang][which]);
        print_node(pr, f->kid[0], 0);
        emit(pr, ")");
        break;
    }
    case F_SELECT:
        if (pr->lang == LANG_C) {
            print_node(pr, f->kid[0], 1);
            emit(pr, " > ");
            print_node(pr, f->kid[1], 1);
            emit(pr, " ? ");
            print_node(pr, f->kid[2], 1);
            emit(pr, " : ");
            print_node(pr, f->kid[3], 0);
        } else {
            emit(pr, "torch.where(");
            print_node(pr, f->kid[0], 1);
            emit(pr, " > ");
            print_node(pr, f->kid[1], 1);
            emit(pr, ", ");
            print_node(pr, f->kid[2], 0);
            emit(pr, ", ");
            print_node(pr, f->kid[3], 0);
            emit(pr, ")");
        }
        break;
    }
    if (parens)
        emit(pr, ")");
}

const char *formula_print(arena *a, language lang, const char *f, const binding *vars, int n)
{
    parser ps;
    int root = parse(&ps, f);
    if (root < 0) {
        fprintf(stderr, "jmvaec: internal error: formula '%s' at '%s': %s\n", f, ps.p, ps.error);
        abort();
    }
    printer pr = {&ps, lang, vars, n, {0}, 0};
    print_node(&pr, root, 0);
    return arena_strndup(a, pr.out, pr.len);
}

int formula_check(const char *f, const char *const *names, int n, char *why, size_t why_size)
{
    parser ps;
    if (!f) {
        snprintf(why, why_size, "no formula");
        return -1;
    }
    if (parse(&ps, f) < 0) {
        snprintf(why, why_size, "'%s' at '%s': %s", f, ps.p, ps.error);
        return -1;
    }
    for (int i = 0; i < ps.n; i++) {
        const fnode *node = &ps.nodes[i];
        if (node->kind != F_NAME || (node->len == 7 && strncmp(node->text, "LOG_2PI", 7) == 0))
            continue;
        int known = 0;
        for (int k = 0; k < n && !known; k++)
            known = (int)strlen(names[k]) == node->len && strncmp(names[k], node->text, (size_t)node->len) == 0;
        if (!known) {
            snprintf(why, why_size, "'%s' names '%.*s', which is not one of its operation's names", f, node->len,
                     node->text);
            return -1;
        }
    }
    return 0;
}
