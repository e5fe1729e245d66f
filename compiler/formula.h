/* formula.h: the arithmetic of the operation table (ops.c), written once in
 * a small language of its own and printed in each back end's language.
 *
 * A formula is an expression over scalars: numbers (`1`, `0.5`), names
 * (the operation's operands, its temporaries, the constant LOG_2PI), the
 * operators + - * / and unary -, parentheses, the functions exp, log,
 * softplus, sigmoid and tanh, and one conditional form, `c > 0 ? a : b`.
 * The printers keep the formula's structure and add only the parentheses
 * that precedence needs, so `0.5 * (exp(lq) + mq * mq - 1 - lq)` prints as
 *   C:       (jv_real)0.5 * (JV_EXP(lq[j]) + mq[j] * mq[j] - 1 - lq[j])
 *   PyTorch: 0.5 * (torch.exp(lq) + mq * mq - 1 - lq)
 * with each name replaced by the text the caller binds to it. A formula
 * that does not parse, or a name bound to nothing, is a mistake in the
 * table: the compiler stops with an internal error (tests/test_frontend.c
 * parses every formula of the table with its operation's names). */
#ifndef JMVAEC_FORMULA_H
#define JMVAEC_FORMULA_H

#include "ast.h"

typedef enum { LANG_C, LANG_TORCH } language;

/* A name of a formula and the text that stands for it in the output. */
typedef struct {
    const char *name;
    const char *text;
} binding;

/* `f` printed in `lang`, each name as its binding's text (the first binding
 * of that name among the n given); allocated in `a`. */
const char *formula_print(arena *a, language lang, const char *f, const binding *vars, int n);

/* 0 when `f` parses and names only the n given names (or LOG_2PI);
 * otherwise -1, with the reason in `why` (for the table's tests). */
int formula_check(const char *f, const char *const *names, int n, char *why, size_t why_size);

#endif
