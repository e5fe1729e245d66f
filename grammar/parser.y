/* parser.y: the grammar of the spec language (a pure parser with locations).
 * grammar/README.md is the reference for what each construct means. */
%require "3.8"
%define api.pure full
%define api.prefix {spec_}
%define parse.error custom
%locations
%expect 0
%param {yyscan_t scanner}
%parse-param {ctx *c}

%code requires {
#include "ast.h"
typedef void *yyscan_t;
}

%code provides {
int spec_lex(SPEC_STYPE *yylval, SPEC_LTYPE *yylloc, yyscan_t scanner);
}

%code {
#include <string.h>
#define YYSTYPE SPEC_STYPE
#define YYLTYPE SPEC_LTYPE
#include "lexer.h"

static loc L(SPEC_LTYPE l)
{
    loc at = {l.first_line, l.first_column};
    return at;
}

static void spec_error(SPEC_LTYPE *l, yyscan_t scanner, ctx *c, const char *msg)
{
    (void)scanner;
    diag_error(c, L(*l), "%s", msg);
}

static ident *box_ident(ctx *c, ident id)
{
    ident *p = arena_alloc(&c->mem, sizeof *p);
    *p = id;
    return p;
}

static vec *box_vec(ctx *c, vec v)
{
    vec *p = arena_alloc(&c->mem, sizeof *p);
    *p = v;
    return p;
}

static dist_ref *make_dist(ctx *c, char family, ident target, vec given, SPEC_LTYPE at)
{
    dist_ref *d = arena_alloc(&c->mem, sizeof *d);
    d->family = family;
    d->target = target;
    d->given = given;
    d->at = L(at);
    return d;
}
}

%union {
    ident id;
    number *num;
    dist_ref *dist;
    vec list;
    net_node *net;
    term_node *term;
    setting_node *setting;
    layer_node *layer;
    layer_arg *larg;
    hyper_node *hyper;
    char family;
}

%token MODEL "model" MODALITY "modality" LATENT "latent" NET "net" HYPER "hyper"
%token LOSS "loss" TRAIN "train" WARMUP "warmup" FROM "from" OVER "over" EPOCHS "epochs"
%token CONCAT "concat" SUM "sum" KL "KL" KLSAMPLE "KLsample" LOG "log" P "p" Q "q" IN "in" IF "if"
%token ARROW "->" BARBAR "||"
%token <id> IDENT "name"
%token <num> INT "integer" NUMBER "number"

%type <num> scalar
%type <id> setting_key
%type <list> names given_opt dims layers layer_args settings_args dists set_list
%type <layer> layer
%type <larg> layer_arg
%type <dist> dist dist_or_var
%type <id> combine
%type <family> family
%type <net> net_input
%type <term> term_rhs weighted_term

%%

spec
  : "model" IDENT { c->spec->name = $2; } decls
  | error decls
  ;

decls
  : %empty
  | decls decl
  | decls error
  ;

/* A declaration's keyword ends error recovery: errors after it are reported
   even when fewer than three tokens separate them from the last one. */
kw_modality : "modality" { yyerrok; } ;
kw_latent   : "latent"   { yyerrok; } ;
kw_net      : "net"      { yyerrok; } ;
kw_hyper    : "hyper"    { yyerrok; } ;
kw_loss     : "loss"     { yyerrok; c->loop = NULL; } ;
kw_train    : "train"    { yyerrok; } ;

decl
  : modality
  | latent
  | net
  | rule
  | hyper
  | loss
  | train
  ;

scalar
  : INT
  | NUMBER
  ;

names
  : IDENT               { vec v = {0}; vec_push(&c->mem, &v, box_ident(c, $1)); $$ = v; }
  | names ',' IDENT     { $$ = $1; vec_push(&c->mem, &$$, box_ident(c, $3)); }
  ;

/* modality x[784] ~ bernoulli      modality x[28, 28] ~ bernoulli
   modality y[5] ~ gaussian(learned) */
modality
  : kw_modality IDENT '[' dims ']' '~' IDENT
      {
        modality_node *m = arena_alloc(&c->mem, sizeof *m);
        m->name = $2; m->dims = $4; m->likelihood = $7; m->at = L(@1);
        vec_push(&c->mem, &c->spec->modalities, m);
      }
  | kw_modality IDENT '[' dims ']' '~' IDENT '(' IDENT ')'
      {
        modality_node *m = arena_alloc(&c->mem, sizeof *m);
        m->name = $2; m->dims = $4; m->likelihood = $7; m->likelihood_arg = $9; m->at = L(@1);
        vec_push(&c->mem, &c->spec->modalities, m);
      }
  ;

dims
  : INT                 { vec v = {0}; vec_push(&c->mem, &v, $1); $$ = v; }
  | dims ',' INT        { $$ = $1; vec_push(&c->mem, &$$, $3); }
  ;

/* latent z[64] ~ normal      latent z1[64] ~ p(z1 | z2) */
latent
  : kw_latent IDENT '[' INT ']' '~' IDENT
      {
        latent_node *l = arena_alloc(&c->mem, sizeof *l);
        l->name = $2; l->size = $4; l->prior_name = $7; l->at = L(@1);
        vec_push(&c->mem, &c->spec->latents, l);
      }
  | kw_latent IDENT '[' INT ']' '~' dist
      {
        latent_node *l = arena_alloc(&c->mem, sizeof *l);
        l->name = $2; l->size = $4; l->prior = $7; l->at = L(@1);
        vec_push(&c->mem, &c->spec->latents, l);
      }
  ;

family
  : "p"                 { $$ = 'p'; }
  | "q"                 { $$ = 'q'; }
  ;

given_opt
  : %empty              { vec v = {0}; $$ = v; }
  | '|' names           { $$ = $2; }
  ;

dist
  : family '(' IDENT given_opt ')'   { $$ = make_dist(c, $1, $3, $4, @1); }
  ;

/* a distribution, or a loop's variable that stands for one */
dist_or_var
  : dist
  | IDENT                            { vec none = {0}; $$ = make_dist(c, 0, $1, none, @1); }
  ;

dists
  : dist                { vec v = {0}; vec_push(&c->mem, &v, $1); $$ = v; }
  | dists ',' dist      { $$ = $1; vec_push(&c->mem, &$$, $3); }
  ;

/* q(z | x, w) = poe(p(z), q(z | x), q(z | w)) */
rule
  : dist '=' IDENT '(' dists ')'
      {
        rule_node *r = arena_alloc(&c->mem, sizeof *r);
        r->target = $1; r->rule = $3; r->experts = $5; r->at = L(@1);
        vec_push(&c->mem, &c->spec->rules, r);
      }
  ;

/* net q_x = x -> relu(512) -> relu(512) -> q(z | x) var=softplus */
net
  : kw_net IDENT '=' net_input layers
      {
        $4->name = $2; $4->layers = $5; $4->at = L(@1);
        vec_push(&c->mem, &c->spec->nets, $4);
      }
  | kw_net IDENT '=' net_input layers "->" dist
      {
        $4->name = $2; $4->layers = $5; $4->head = $7; $4->at = L(@1);
        vec_push(&c->mem, &c->spec->nets, $4);
      }
  | kw_net IDENT '=' net_input layers "->" dist IDENT '=' IDENT
      {
        $4->name = $2; $4->layers = $5; $4->head = $7; $4->at = L(@1);
        if (strcmp($8.text, "var") != 0)
            diag_error(c, $8.at, "unexpected '%s' after the head; expecting 'var=softplus' or 'var=logvar'", $8.text);
        $4->variance = $10;
        vec_push(&c->mem, &c->spec->nets, $4);
      }
  ;

net_input
  : IDENT                     { $$ = arena_alloc(&c->mem, sizeof *$$); $$->combine = COMBINE_ONE; vec_push(&c->mem, &$$->inputs, box_ident(c, $1)); }
  | "concat" '(' names ')'    { $$ = arena_alloc(&c->mem, sizeof *$$); $$->combine = COMBINE_CONCAT; $$->inputs = $3; }
  | "sum" '(' names ')'       { $$ = arena_alloc(&c->mem, sizeof *$$); $$->combine = COMBINE_SUM; $$->inputs = $3; }
  ;

layers
  : %empty              { vec v = {0}; $$ = v; }
  | layers "->" layer   { $$ = $1; vec_push(&c->mem, &$$, $3); }
  ;

/* relu(512)   silu(conv(64, 4, stride=2, pad=1, bias=no))   flatten   reshape(128, 7, 7) */
layer
  : IDENT
      {
        $$ = arena_alloc(&c->mem, sizeof *$$);
        $$->word = $1; $$->at = L(@1);
      }
  | IDENT '(' layer_args ')'
      {
        $$ = arena_alloc(&c->mem, sizeof *$$);
        $$->word = $1; $$->has_call = 1; $$->args = $3; $$->at = L(@1);
      }
  ;

layer_args
  : layer_arg                 { vec v = {0}; vec_push(&c->mem, &v, $1); $$ = v; }
  | layer_args ',' layer_arg  { $$ = $1; vec_push(&c->mem, &$$, $3); }
  ;

layer_arg
  : INT                 { $$ = arena_alloc(&c->mem, sizeof *$$); $$->num = $1; $$->at = L(@1); }
  | layer               { $$ = arena_alloc(&c->mem, sizeof *$$); $$->call = $1; $$->at = L(@1); }
  | IDENT '=' INT       { $$ = arena_alloc(&c->mem, sizeof *$$); $$->key = $1; $$->num = $3; $$->at = L(@1); }
  | IDENT '=' IDENT     { $$ = arena_alloc(&c->mem, sizeof *$$); $$->key = $1; $$->word = $3; $$->at = L(@1); }
  ;

/* hyper alpha = 0.1      hyper beta = 1 warmup from 0 over 10 epochs */
hyper
  : kw_hyper IDENT '=' scalar
      {
        hyper_node *h = arena_alloc(&c->mem, sizeof *h);
        h->name = $2; h->value = $4; h->at = L(@1);
        vec_push(&c->mem, &c->spec->hypers, h);
      }
  | kw_hyper IDENT '=' scalar "warmup" "from" scalar "over" scalar "epochs"
      {
        hyper_node *h = arena_alloc(&c->mem, sizeof *h);
        h->name = $2; h->value = $4; h->warmup_from = $7; h->warmup_epochs = $9; h->at = L(@1);
        vec_push(&c->mem, &c->spec->hypers, h);
      }
  ;

loss
  : kw_loss '{' loss_items '}'
      {
        c->loop = NULL;
        if (c->spec->n_loss_blocks++ == 0) c->spec->loss_at = L(@1);
        else diag_error(c, L(@1), "a second 'loss' block; write every term in one");
      }
  ;

loss_items
  : %empty
  | loss_items loss_item
  | loss_items error
  ;

loss_item
  : loop_item
  | loop_head '{' loop_items '}'
      { if (c->loop) c->loop->end = L(@4); c->loop = NULL; }
  | given_head '{' loop_items '}'
      { if (c->loop) c->loop->end = L(@4); c->loop = NULL; }
  ;

/* given (x) { ... }: what examples that observe only x contribute */
given_head
  : IDENT '(' names ')'
      {
        c->loop = arena_alloc(&c->mem, sizeof *c->loop);
        c->loop->kind = LOOP_GIVEN; c->loop->func = $1; c->loop->at = L(@1);
        c->loop->combine.text = "sum"; c->loop->combine.at = L(@1);
        vec_push(&c->mem, &c->loop->sets, box_vec(c, $3));
        vec_push(&c->mem, &c->spec->loops, c->loop);
      }
  ;

loop_items
  : %empty
  | loop_items loop_item
  | loop_items error
  ;

loop_item
  : IDENT '~' dist_or_var
      {
        sample_node *s = arena_alloc(&c->mem, sizeof *s);
        s->latent = $1; s->from = $3; s->loop = c->loop; s->at = L(@1);
        vec_push(&c->mem, &c->spec->samples, s);
      }
  | IDENT '=' weighted_term
      {
        $3->name = $1; $3->at = L(@1); $3->loop = c->loop;
        vec_push(&c->mem, &c->spec->terms, $3);
      }
  | IDENT '=' weighted_term "if" IDENT "in" IDENT
      {
        $3->name = $1; $3->at = L(@1); $3->loop = c->loop; $3->guard = $5; $3->guard_set = $7;
        vec_push(&c->mem, &c->spec->terms, $3);
      }
  ;

combine
  : IDENT
  | "sum"               { $$.text = "sum"; $$.at = L(@1); }
  ;

/* mean over S in subsets(x, w)     sum over S in (x, w), (x), (w)
   mean over q_s in components(q(z | x, w)) */
loop_head
  : combine "over" IDENT "in" loop_sets
      {
        c->loop->combine = $1; c->loop->var = $3; c->loop->at = L(@1);
        vec_push(&c->mem, &c->spec->loops, c->loop);
      }
  ;

loop_sets
  : IDENT '(' names ')'
      {
        c->loop = arena_alloc(&c->mem, sizeof *c->loop);
        c->loop->kind = LOOP_SUBSETS; c->loop->func = $1; vec_push(&c->mem, &c->loop->sets, box_vec(c, $3));
      }
  | IDENT '(' dist ')'
      {
        c->loop = arena_alloc(&c->mem, sizeof *c->loop);
        c->loop->kind = LOOP_COMPONENTS; c->loop->func = $1; c->loop->of = $3;
      }
  | set_list
      {
        c->loop = arena_alloc(&c->mem, sizeof *c->loop);
        c->loop->kind = LOOP_SETS; c->loop->sets = $1;
      }
  ;

set_list
  : '(' names ')'                 { vec v = {0}; vec_push(&c->mem, &v, box_vec(c, $2)); $$ = v; }
  | set_list ',' '(' names ')'    { $$ = $1; vec_push(&c->mem, &$$, box_vec(c, $4)); }
  ;

weighted_term
  : term_rhs
  | scalar '*' term_rhs         { $$ = $3; $$->weight_const = $1; }
  | IDENT '*' term_rhs          { $$ = $3; $$->weight_hyper = $1; }
  ;

term_rhs
  : '-' "log" dist
      { $$ = arena_alloc(&c->mem, sizeof *$$); $$->kind = TERM_NLL; $$->a = $3; }
  | "KL" '(' dist_or_var "||" dist_or_var ')'
      { $$ = arena_alloc(&c->mem, sizeof *$$); $$->kind = TERM_KL; $$->a = $3; $$->b = $5; }
  | "KLsample" '(' dist_or_var "||" dist_or_var ')'
      { $$ = arena_alloc(&c->mem, sizeof *$$); $$->kind = TERM_KL_SAMPLE; $$->a = $3; $$->b = $5; }
  ;

/* train { optimizer = adam(lr = 1e-3) batch = 100 ... } */
train
  : kw_train '{' settings '}'
      {
        if (c->spec->n_train_blocks++ == 0) c->spec->train_at = L(@1);
        else diag_error(c, L(@1), "a second 'train' block; write every setting in one");
      }
  ;

settings
  : %empty
  | settings setting
  | settings error
  ;

setting_key
  : IDENT
  | "epochs"            { $$.text = "epochs"; $$.at = L(@1); }
  ;

setting
  : setting_key '=' scalar
      {
        setting_node *s = arena_alloc(&c->mem, sizeof *s);
        s->key = $1; s->value = $3; s->at = L(@1);
        vec_push(&c->mem, &c->spec->settings, s);
      }
  | setting_key '=' IDENT '(' settings_args ')'
      {
        setting_node *s = arena_alloc(&c->mem, sizeof *s);
        s->key = $1; s->word = $3; s->args = $5; s->has_call = 1; s->at = L(@1);
        vec_push(&c->mem, &c->spec->settings, s);
      }
  | setting_key '=' IDENT
      {
        setting_node *s = arena_alloc(&c->mem, sizeof *s);
        s->key = $1; s->word = $3; s->at = L(@1);
        vec_push(&c->mem, &c->spec->settings, s);
      }
  ;

settings_args
  : %empty                              { vec v = {0}; $$ = v; }
  | IDENT '=' scalar
      {
        setting_node *s = arena_alloc(&c->mem, sizeof *s);
        s->key = $1; s->value = $3; s->at = L(@1);
        vec v = {0}; vec_push(&c->mem, &v, s); $$ = v;
      }
  | settings_args ',' IDENT '=' scalar
      {
        setting_node *s = arena_alloc(&c->mem, sizeof *s);
        s->key = $3; s->value = $5; s->at = L(@3);
        $$ = $1; vec_push(&c->mem, &$$, s);
      }
  ;

%%

/* A token's name as messages show it: keywords quoted, classes ("name") not. */
static const char *token_name(yysymbol_kind_t sym, char *buf, size_t cap)
{
    const char *name = yysymbol_name(sym);
    if (sym == YYSYMBOL_YYEOF)
        return "end of file";
    if (sym == YYSYMBOL_IDENT || sym == YYSYMBOL_INT || sym == YYSYMBOL_NUMBER || name[0] == '\'')
        return name;
    snprintf(buf, cap, "'%s'", name);
    return buf;
}

/* "unexpected X, expecting A, B or C", located at the offending token. */
static int yyreport_syntax_error(const yypcontext_t *pctx, yyscan_t scanner, ctx *c)
{
    (void)scanner;
    enum { MAX_EXPECTED = 16 }; /* bison gives none at all when they do not fit */
    yysymbol_kind_t expected[MAX_EXPECTED];
    int n = yypcontext_expected_tokens(pctx, expected, MAX_EXPECTED);
    yysymbol_kind_t got = yypcontext_token(pctx);
    char msg[512];
    char buf[64];
    size_t len = (size_t)snprintf(msg, sizeof msg, "unexpected %s", token_name(got, buf, sizeof buf));
    for (int i = 0; n > 0 && i < n && len < sizeof msg; i++)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s",
                                i == 0 ? ", expecting " : i == n - 1 ? " or " : ", ",
                                token_name(expected[i], buf, sizeof buf));
    diag_error(c, L(*yypcontext_location(pctx)), "%s", msg);
    return 0;
}

/* A NUL byte means binary data: one error, located, instead of hundreds. */
static int reject_binary(ctx *c)
{
    const char *nul = memchr(c->source, 0, c->source_len);
    if (!nul)
        return 0;
    loc at = {1, 1};
    for (const char *p = c->source; p < nul; p++) {
        if (*p == '\n') {
            at.line++;
            at.col = 1;
        } else {
            at.col++;
        }
    }
    diag_error(c, at, "NUL byte in the spec: this is not a text file");
    return 1;
}

int parse_spec(ctx *c)
{
    yyscan_t scanner;
    int before = c->n_errors;
    c->spec = arena_alloc(&c->mem, sizeof *c->spec);
    if (reject_binary(c))
        return 1;
    if (spec_lex_init_extra(c, &scanner) != 0) {
        fputs("jmvaec: cannot start the scanner\n", stderr);
        return 1;
    }
    YY_BUFFER_STATE buf = spec__scan_bytes(c->source, (int)c->source_len, scanner);
    int rc = spec_parse(scanner, c);
    spec__delete_buffer(buf, scanner);
    spec_lex_destroy(scanner);
    if (rc != 0 && c->n_errors == before)
        diag_error(c, (loc){0, 0}, "cannot parse the spec");
    if (!c->spec->name.text && c->n_errors == before)
        diag_error(c, (loc){1, 1}, "the spec must begin with 'model NAME'");
    return c->n_errors - before;
}
