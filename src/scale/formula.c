/* scalingModifiers formulas: a lexer, a precedence-climbing parser that mirrors expr-lang/expr's
 * parser/parser.go, a static type check that mirrors its checker/checker.go, and a tree
 * evaluator with expr's run-time rules. See include/evscale/formula.h for the language and the
 * sources (expr-lang/expr 851b241a301f7c74646e65e4009c69cf290993a8). */
#include "evscale/formula.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/buf.h"
#include "evscale/error.h"

/* ---- the compiled form -------------------------------------------------------------------- */

enum { TY_INT, TY_FLOAT, TY_BOOL, TY_NIL, TY_ANY }; /* TY_ANY: known only at run time */
enum { NK_INT, NK_FLOAT, NK_BOOL, NK_NIL, NK_VAR, NK_UNARY, NK_BINARY, NK_COND, NK_CALL };
enum {
  OP_NEG,
  OP_PLUS,
  OP_NOT,
  OP_OR,
  OP_AND,
  OP_EQ,
  OP_NE,
  OP_LT,
  OP_GT,
  OP_LE,
  OP_GE,
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_MOD,
  OP_COALESCE
};
enum { FN_MIN, FN_MAX, FN_ABS, FN_CEIL, FN_FLOOR, FN_ROUND, FN_FLOAT };

/* One node of the tree, in one array: children are indices. NK_COND: c ? a : b. NK_CALL: its
 * b arguments are args[a .. a+b). Comparison chains share operand nodes. */
typedef struct {
  uint8_t kind, op, ty;
  uint16_t depth; /* height of the subtree: bounds the evaluator's recursion */
  uint32_t col;   /* 0-based byte offset of the token, for messages */
  int32_t a, b, c;
  union {
    int64_t i; /* NK_INT, NK_BOOL, NK_VAR (variable index) */
    double d;  /* NK_FLOAT */
  };
} node_t;

struct evs_formula_s {
  node_t *nodes;
  size_t n, cap;
  int32_t *args;
  size_t nargs, argcap;
  char **vars;
  size_t nvars, varcap;
  int32_t root;
  int has_coalesce; /* KEDA keeps a nil result only when the formula contains `??` */
};

/* ---- lexer ---------------------------------------------------------------------------------- */

enum { TK_EOF, TK_INT, TK_FLOAT, TK_IDENT, TK_OP, TK_LPAREN, TK_RPAREN, TK_COMMA };

typedef struct {
  int kind;
  size_t start, len; /* byte offsets into the source */
  int64_t ival;
  double dval;
} tok_t;

typedef struct {
  const char *src;
  size_t pos;
  tok_t cur;
  evs_formula_t *f;
  int depth;
  int failed; /* 0, EVS_EFORMULA or UV_ENOMEM */
  size_t err_col;
  char *err;
  size_t errcap;
} parser_t;

static void fail_at(parser_t *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(parser_t *p, size_t off, const char *fmt, ...) {
  if (p->failed)
    return;
  p->failed = EVS_EFORMULA;
  p->err_col = off + 1;
  if (p->err && p->errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errcap, fmt, ap);
    va_end(ap);
  }
}

static int is_ident_start(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}
static int is_ident_char(int c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
static int is_digit_in(int c, int base) {
  if (c >= '0' && c <= '9')
    return c - '0' < base;
  if (base == 16)
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  return 0;
}

/* Skips blanks and comments (expr's lexer accepts `// …` and `/ * … * /`). */
static void skip_space(parser_t *p) {
  const char *s = p->src;
  for (;;) {
    char c = s[p->pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      p->pos++;
    } else if (c == '/' && s[p->pos + 1] == '/') {
      while (s[p->pos] && s[p->pos] != '\n')
        p->pos++;
    } else if (c == '/' && s[p->pos + 1] == '*') {
      const char *end = strstr(s + p->pos + 2, "*/");
      if (!end) {
        fail_at(p, p->pos, "unclosed comment");
        p->pos = strlen(s);
        return;
      }
      p->pos = (size_t)(end - s) + 2;
    } else {
      return;
    }
  }
}

/* Integer digits in base (underscores already skipped by the caller's copy); Go's ParseInt range
 * is int64, so anything above INT64_MAX is an error, as in expr. */
static int parse_int_digits(const char *d, int base, int64_t *out) {
  uint64_t v = 0;
  if (!*d)
    return -1;
  for (; *d; d++) {
    int c = *d;
    int dv = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    if (!is_digit_in(c, base) || v > ((uint64_t)INT64_MAX - (uint64_t)dv) / (uint64_t)base)
      return -1;
    v = v * (uint64_t)base + (uint64_t)dv;
  }
  *out = (int64_t)v;
  return 0;
}

/* Mirrors expr's lexer scanNumber (parser/lexer/state.go) and parseSecondary's conversion. */
static void lex_number(parser_t *p, size_t start) {
  const char *s = p->src;
  size_t i = start;
  int base = 10;
  if (s[i] == '0' && strchr("xXoObB", s[i + 1]) && s[i + 1]) {
    base = (s[i + 1] | 0x20) == 'x' ? 16 : (s[i + 1] | 0x20) == 'o' ? 8 : 2;
    i += 2;
  }
  while (is_digit_in(s[i], base == 10 ? 10 : 16) || s[i] == '_')
    i++;
  int is_float = 0;
  if (base == 10 && s[i] == '.' && s[i + 1] != '.') {
    is_float = 1;
    for (i++; is_digit_in(s[i], 10) || s[i] == '_'; i++) {
    }
  }
  if (base == 10 && (s[i] == 'e' || s[i] == 'E')) {
    is_float = 1;
    i++;
    if (s[i] == '+' || s[i] == '-')
      i++;
    while (is_digit_in(s[i], 10) || s[i] == '_')
      i++;
  }
  size_t len = i - start;
  if (is_ident_char(s[i]) || s[i] == '.' || len >= 64) {
    fail_at(p, start, "bad number syntax");
    return;
  }
  char buf[64];
  size_t n = 0;
  for (size_t k = start + (base == 10 ? 0 : 2); k < i; k++)
    if (s[k] != '_')
      buf[n++] = s[k];
  buf[n] = '\0';
  p->cur = (tok_t){.kind = is_float ? TK_FLOAT : TK_INT, .start = start, .len = len};
  p->pos = i;
  if (!is_float) {
    if (parse_int_digits(buf, base, &p->cur.ival) != 0)
      fail_at(p, start, "invalid integer literal");
    return;
  }
  char *end;
  errno = 0;
  p->cur.dval = strtod(buf, &end);
  if (*end || errno == ERANGE || isinf(p->cur.dval))
    fail_at(p, start, "invalid float literal");
}

/* Two-character operators first, then one-character ones. `&`, `|`, `=`, `^`, `**`, `..`, `?.`
 * lex as operators too, so the parser can say they are unsupported. */
static const char *const two_char_ops[] = {
    "&&", "||", "==", "!=", "<=", ">=", "??", "**", "?.", "..", "::", NULL};

static void lex_op(parser_t *p, size_t start) {
  const char *s = p->src + start;
  for (int k = 0; two_char_ops[k]; k++) {
    if (s[0] == two_char_ops[k][0] && s[1] == two_char_ops[k][1]) {
      p->cur = (tok_t){.kind = TK_OP, .start = start, .len = 2};
      p->pos = start + 2;
      return;
    }
  }
  if (strchr("+-*/%<>!?:^|&=.#;[]{}", s[0])) {
    p->cur = (tok_t){.kind = TK_OP, .start = start, .len = 1};
    p->pos = start + 1;
    return;
  }
  if (s[0] == '"' || s[0] == '\'' || s[0] == '`')
    fail_at(p, start, "strings are not supported in a formula");
  else if ((unsigned char)s[0] >= 0x80)
    fail_at(p, start, "unrecognized character (trigger names must be ASCII identifiers)");
  else
    fail_at(p, start, "unrecognized character '%c'", s[0]);
}

static void next(parser_t *p) {
  skip_space(p);
  const char *s = p->src;
  size_t start = p->pos;
  char c = s[start];
  if (p->failed || c == '\0') {
    p->cur = (tok_t){.kind = TK_EOF, .start = start};
    return;
  }
  if ((c >= '0' && c <= '9') || (c == '.' && s[start + 1] >= '0' && s[start + 1] <= '9')) {
    lex_number(p, start);
  } else if (is_ident_start(c)) {
    size_t i = start;
    while (is_ident_char(s[i]))
      i++;
    p->cur = (tok_t){.kind = TK_IDENT, .start = start, .len = i - start};
    p->pos = i;
  } else if (c == '(' || c == ')' || c == ',') {
    p->cur = (tok_t){.kind = c == '('   ? TK_LPAREN
                             : c == ')' ? TK_RPAREN
                                        : TK_COMMA,
                     .start = start,
                     .len = 1};
    p->pos = start + 1;
  } else {
    lex_op(p, start);
  }
  if (p->failed)
    p->cur = (tok_t){.kind = TK_EOF, .start = start};
}

static int tok_is(const parser_t *p, const char *text) {
  size_t n = strlen(text);
  return (p->cur.kind == TK_OP || p->cur.kind == TK_IDENT) && p->cur.len == n &&
         memcmp(p->src + p->cur.start, text, n) == 0;
}

/* ---- operators (parser/operator/operator.go) ---------------------------------------------- */

typedef struct {
  const char *text;
  int op;
  int prec;
} binop_t;

static const binop_t binops[] = {
    {"or", OP_OR, 10}, {"||", OP_OR, 10}, {"and", OP_AND, 15}, {"&&", OP_AND, 15},
    {"==", OP_EQ, 20}, {"!=", OP_NE, 20}, {"<", OP_LT, 20},    {">", OP_GT, 20},
    {">=", OP_GE, 20}, {"<=", OP_LE, 20}, {"+", OP_ADD, 30},   {"-", OP_SUB, 30},
    {"*", OP_MUL, 60}, {"/", OP_DIV, 60}, {"%", OP_MOD, 60},   {"??", OP_COALESCE, 500},
    {NULL, 0, 0},
};

/* Operators expr has but evscale does not evaluate: named so the error says so. */
static const char *const unsupported_ops[] = {
    "**", "^", "|", "..", "in", "matches", "contains", "startsWith", "endsWith", "?.", ".",
    "[",  "{", "#", "::", ";",  "let",     "if",       "=",          "&",        NULL};

static const binop_t *find_binop(const parser_t *p) {
  for (int k = 0; binops[k].text; k++)
    if (tok_is(p, binops[k].text))
      return &binops[k];
  return NULL;
}

static int is_unsupported_op(const parser_t *p) {
  for (int k = 0; unsupported_ops[k]; k++)
    if (tok_is(p, unsupported_ops[k]))
      return 1;
  return 0;
}

static const char *op_name(int op) {
  static const char *const names[] = {
      [OP_NEG] = "-", [OP_PLUS] = "+",     [OP_NOT] = "!", [OP_OR] = "||", [OP_AND] = "&&",
      [OP_EQ] = "==", [OP_NE] = "!=",      [OP_LT] = "<",  [OP_GT] = ">",  [OP_LE] = "<=",
      [OP_GE] = ">=", [OP_ADD] = "+",      [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
      [OP_MOD] = "%", [OP_COALESCE] = "??"};
  return op >= 0 && op < (int)(sizeof names / sizeof names[0]) && names[op] ? names[op] : "?";
}

static const char *type_name(int ty) {
  switch (ty) {
  case TY_INT:
    return "int";
  case TY_FLOAT:
    return "float64";
  case TY_BOOL:
    return "bool";
  case TY_NIL:
    return "nil";
  default:
    return "interface {}";
  }
}

/* ---- tree building -------------------------------------------------------------------------- */

static uint16_t child_depth(const evs_formula_t *f, int32_t i) {
  return i >= 0 ? f->nodes[i].depth : 0;
}

/* The height of n's subtree. The parser's nesting limit does not bound it: `1+1+…+1` is built
 * in a loop yet evaluates recursively, one level per term. */
static unsigned node_depth(const evs_formula_t *f, const node_t *n) {
  unsigned d = 0;
  switch (n->kind) {
  case NK_COND:
    d = child_depth(f, n->c);
    /* fall through */
  case NK_BINARY:
    d = child_depth(f, n->b) > d ? child_depth(f, n->b) : d;
    /* fall through */
  case NK_UNARY:
    d = child_depth(f, n->a) > d ? child_depth(f, n->a) : d;
    break;
  case NK_CALL:
    for (int32_t k = 0; k < n->b; k++)
      d = child_depth(f, f->args[n->a + k]) > d ? child_depth(f, f->args[n->a + k]) : d;
    break;
  default:
    break;
  }
  return d + 1;
}

static int32_t add_node(parser_t *p, node_t n) {
  evs_formula_t *f = p->f;
  if (p->failed)
    return -1;
  unsigned depth = node_depth(f, &n);
  if (depth > EVS_FORMULA_MAX_TERMS) {
    fail_at(p, n.col, "formula too long (more than %d operations in a row)", EVS_FORMULA_MAX_TERMS);
    return -1;
  }
  n.depth = (uint16_t)depth;
  if (evs_buf_reserve((void **)&f->nodes, &f->cap, f->n + 1, sizeof *f->nodes, 16) != 0) {
    p->failed = UV_ENOMEM;
    return -1;
  }
  f->nodes[f->n] = n;
  return (int32_t)f->n++;
}

static int add_var(parser_t *p, const char *name, size_t len) {
  evs_formula_t *f = p->f;
  for (size_t i = 0; i < f->nvars; i++)
    if (strlen(f->vars[i]) == len && memcmp(f->vars[i], name, len) == 0)
      return (int)i;
  if (evs_buf_reserve((void **)&f->vars, &f->varcap, f->nvars + 1, sizeof *f->vars, 4) != 0)
    return -1;
  char *copy = strndup(name, len);
  if (!copy)
    return -1;
  f->vars[f->nvars] = copy;
  return (int)f->nvars++;
}

static int push_arg(parser_t *p, int32_t arg) {
  evs_formula_t *f = p->f;
  if (evs_buf_reserve((void **)&f->args, &f->argcap, f->nargs + 1, sizeof *f->args, 8) != 0) {
    p->failed = UV_ENOMEM;
    return -1;
  }
  f->args[f->nargs++] = arg;
  return 0;
}

static int node_ty(const parser_t *p, int32_t i) { return p->f->nodes[i].ty; }
static int is_num(int ty) { return ty == TY_INT || ty == TY_FLOAT; }
static int num_or_any(int ty) { return is_num(ty) || ty == TY_ANY; }

/* checker.go binaryNode: the static type of `l op r`, or -1 when expr's checker rejects it. */
static int binary_type(int op, int l, int r) {
  switch (op) {
  case OP_EQ:
  case OP_NE:
    return (l == TY_ANY || r == TY_ANY || l == TY_NIL || r == TY_NIL || (is_num(l) && is_num(r)) ||
            l == r)
               ? TY_BOOL
               : -1;
  case OP_OR:
  case OP_AND:
    return (l == TY_BOOL || l == TY_ANY) && (r == TY_BOOL || r == TY_ANY) ? TY_BOOL : -1;
  case OP_LT:
  case OP_GT:
  case OP_LE:
  case OP_GE:
    return num_or_any(l) && num_or_any(r) ? TY_BOOL : -1;
  case OP_ADD:
  case OP_SUB:
  case OP_MUL:
    if (is_num(l) && is_num(r))
      return l == TY_INT && r == TY_INT ? TY_INT : TY_FLOAT;
    return num_or_any(l) && num_or_any(r) ? TY_ANY : -1;
  case OP_DIV:
    return num_or_any(l) && num_or_any(r) ? TY_FLOAT : -1;
  case OP_MOD:
    return (l == TY_INT || l == TY_ANY) && (r == TY_INT || r == TY_ANY) ? TY_INT : -1;
  case OP_COALESCE:
    if (l == TY_NIL)
      return r;
    if (r == TY_NIL || l == r)
      return l;
    return TY_ANY;
  }
  return -1;
}

static int32_t make_binary(parser_t *p, int op, size_t col, int32_t l, int32_t r) {
  if (p->failed)
    return -1;
  int ty = binary_type(op, node_ty(p, l), node_ty(p, r));
  if (ty < 0) {
    fail_at(p, col, "invalid operation: %s (mismatched types %s and %s)", op_name(op),
            type_name(node_ty(p, l)), type_name(node_ty(p, r)));
    return -1;
  }
  return add_node(p, (node_t){.kind = NK_BINARY, .op = op, .ty = ty, .col = col, .a = l, .b = r});
}

static int32_t make_unary(parser_t *p, int op, size_t col, int32_t a) {
  if (p->failed)
    return -1;
  int t = node_ty(p, a);
  int ok = op == OP_NOT ? (t == TY_BOOL || t == TY_ANY) : num_or_any(t);
  if (!ok) {
    fail_at(p, col, "invalid operation: %s (mismatched type %s)", op_name(op), type_name(t));
    return -1;
  }
  int ty = op == OP_NOT ? TY_BOOL : t;
  return add_node(p, (node_t){.kind = NK_UNARY, .op = op, .ty = ty, .col = col, .a = a});
}

/* ---- parser (parser/parser.go) -------------------------------------------------------------- */

static int32_t parse_expression(parser_t *p, int prec);
static int32_t parse_call(parser_t *p, const char *name, size_t len, size_t col);

static int enter(parser_t *p) {
  if (++p->depth > EVS_FORMULA_MAX_DEPTH) {
    fail_at(p, p->cur.start, "formula nested too deeply (more than %d levels)",
            EVS_FORMULA_MAX_DEPTH);
    return -1;
  }
  return 0;
}

static void unexpected(parser_t *p) {
  if (p->cur.kind == TK_EOF)
    fail_at(p, p->cur.start, "unexpected end of formula");
  else if (is_unsupported_op(p))
    fail_at(p, p->cur.start, "operator '%.*s' is not supported in scalingModifiers formulas",
            (int)p->cur.len, p->src + p->cur.start);
  else
    fail_at(p, p->cur.start, "unexpected token '%.*s'", (int)p->cur.len, p->src + p->cur.start);
}

/* Member access, indexing and the like follow a primary in expr; none is meaningful on a
 * number, so any of them is an error here. */
static int32_t postfix(parser_t *p, int32_t node) {
  if (!p->failed && (tok_is(p, ".") || tok_is(p, "?.") || tok_is(p, "[")))
    unexpected(p);
  return p->failed ? -1 : node;
}

static int32_t parse_number(parser_t *p) {
  node_t n = {.col = p->cur.start};
  if (p->cur.kind == TK_INT) {
    n.kind = NK_INT, n.ty = TY_INT, n.i = p->cur.ival;
  } else {
    n.kind = NK_FLOAT, n.ty = TY_FLOAT, n.d = p->cur.dval;
  }
  next(p);
  return add_node(p, n);
}

static int32_t parse_identifier(parser_t *p) {
  tok_t t = p->cur;
  const char *name = p->src + t.start;
  next(p);
  if (p->cur.kind == TK_LPAREN)
    return parse_call(p, name, t.len, t.start);
  node_t n = {.col = t.start};
  if (t.len == 4 && memcmp(name, "true", 4) == 0) {
    n.kind = NK_BOOL, n.ty = TY_BOOL, n.i = 1;
  } else if (t.len == 5 && memcmp(name, "false", 5) == 0) {
    n.kind = NK_BOOL, n.ty = TY_BOOL, n.i = 0;
  } else if (t.len == 3 && memcmp(name, "nil", 3) == 0) {
    n.kind = NK_NIL, n.ty = TY_NIL;
  } else {
    int v = add_var(p, name, t.len);
    if (v < 0) {
      p->failed = UV_ENOMEM;
      return -1;
    }
    /* KEDA compiles the formula with every trigger as a float64 (webhook
     * validateScalingModifiersFormula), so a variable is statically a float. */
    n.kind = NK_VAR, n.ty = TY_FLOAT, n.i = v;
  }
  return postfix(p, add_node(p, n));
}

static int32_t parse_primary(parser_t *p) {
  size_t col = p->cur.start;
  if (tok_is(p, "!") || tok_is(p, "not") || tok_is(p, "-") || tok_is(p, "+")) {
    int op = tok_is(p, "-") ? OP_NEG : tok_is(p, "+") ? OP_PLUS : OP_NOT;
    int prec = op == OP_NOT ? 50 : 90;
    next(p);
    int32_t a = parse_expression(p, prec);
    return postfix(p, a < 0 ? -1 : make_unary(p, op, col, a));
  }
  if (p->cur.kind == TK_LPAREN) {
    next(p);
    int32_t e = parse_expression(p, 0);
    if (p->failed)
      return -1;
    if (p->cur.kind != TK_RPAREN) {
      if (p->cur.kind == TK_EOF)
        fail_at(p, col, "an opened parenthesis is not properly closed");
      else
        unexpected(p);
      return -1;
    }
    next(p);
    return postfix(p, e);
  }
  if (p->cur.kind == TK_INT || p->cur.kind == TK_FLOAT)
    return postfix(p, parse_number(p));
  if (p->cur.kind == TK_IDENT && !find_binop(p) && !is_unsupported_op(p))
    return parse_identifier(p);
  unexpected(p);
  return -1;
}

/* `a < b < c` is `a < b && b < c` (parseComparison); the shared operand is one node. */
static int32_t parse_comparison(parser_t *p, int32_t left, const binop_t *op) {
  int32_t root = -1;
  for (;;) {
    size_t col = p->cur.start;
    next(p);
    int32_t right = parse_expression(p, op->prec + 1);
    if (right < 0)
      return -1;
    int32_t cmp = make_binary(p, op->op, col, left, right);
    root = root < 0 ? cmp : make_binary(p, OP_AND, col, root, cmp);
    if (root < 0)
      return -1;
    left = right;
    op = find_binop(p);
    if (!op || op->prec != 20 || op->op == OP_EQ || op->op == OP_NE)
      return root;
  }
}

/* `c ? a : b` and `c ?: b` bind loosest and only at the top of an expression
 * (parseConditional); the condition must be a bool (checker.go conditionalNode). */
static int32_t parse_conditional(parser_t *p, int32_t cond) {
  while (!p->failed && tok_is(p, "?")) {
    size_t col = p->cur.start;
    next(p);
    int32_t a = cond, b;
    if (tok_is(p, ":")) {
      next(p);
    } else {
      a = parse_expression(p, 0);
      if (!p->failed && !tok_is(p, ":"))
        unexpected(p);
      next(p);
    }
    b = parse_expression(p, 0);
    if (p->failed)
      return -1;
    int ct = node_ty(p, cond);
    if (ct != TY_BOOL && ct != TY_ANY) {
      fail_at(p, p->f->nodes[cond].col, "non-bool expression (type %s) used as condition",
              type_name(ct));
      return -1;
    }
    int ta = node_ty(p, a), tb = node_ty(p, b);
    cond = add_node(
        p,
        (node_t){
            .kind = NK_COND, .ty = ta == tb ? ta : TY_ANY, .col = col, .a = a, .b = b, .c = cond});
  }
  return p->failed ? -1 : cond;
}

static int32_t parse_expression(parser_t *p, int prec) {
  if (enter(p) != 0)
    return -1;
  int32_t left = parse_primary(p);
  int prev_op = -1;
  while (!p->failed && left >= 0) {
    const binop_t *op = find_binop(p);
    if (!op) {
      if (is_unsupported_op(p) || tok_is(p, "not"))
        unexpected(p);
      break;
    }
    if (op->prec < prec)
      break;
    size_t col = p->cur.start;
    if (prev_op == OP_COALESCE && op->op != OP_COALESCE) {
      fail_at(p, col,
              "Operator (%s) and coalesce expressions (?\?) cannot be mixed. Wrap either by "
              "parentheses.",
              op->text);
      break;
    }
    if (op->prec == 20 && op->op != OP_EQ && op->op != OP_NE) {
      left = parse_comparison(p, left, op);
    } else {
      next(p);
      int32_t right = parse_expression(p, op->prec + 1);
      left = right < 0 ? -1 : make_binary(p, op->op, col, left, right);
    }
    prev_op = op->op;
  }
  if (prec == 0 && left >= 0)
    left = parse_conditional(p, left);
  p->depth--;
  return p->failed ? -1 : left;
}

/* ---- functions (builtin/builtin.go) --------------------------------------------------------- */

static const struct {
  const char *name;
  int fn, min_args, max_args;
} funcs[] = {
    {"min", FN_MIN, 1, 255},   {"max", FN_MAX, 1, 255},   {"abs", FN_ABS, 1, 1},
    {"ceil", FN_CEIL, 1, 1},   {"floor", FN_FLOOR, 1, 1}, {"round", FN_ROUND, 1, 1},
    {"float", FN_FLOAT, 1, 1}, {NULL, 0, 0, 0},
};

static const char *fn_name(int fn) {
  for (int k = 0; funcs[k].name; k++)
    if (funcs[k].fn == fn)
      return funcs[k].name;
  return "?";
}

/* The static type of a call (validateAggregateFunc, validateRoundFunc, Abs, Float). */
static int call_type(parser_t *p, int fn, size_t first, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int t = node_ty(p, p->f->args[first + i]);
    if (!num_or_any(t)) {
      fail_at(p, p->f->nodes[p->f->args[first + i]].col, "invalid argument for %s (type %s)",
              fn_name(fn), type_name(t));
      return -1;
    }
  }
  if (fn == FN_MIN || fn == FN_MAX || fn == FN_ABS)
    return node_ty(p, p->f->args[first]);
  return TY_FLOAT;
}

static int find_func(const char *name, size_t len) {
  for (int k = 0; funcs[k].name; k++)
    if (strlen(funcs[k].name) == len && memcmp(funcs[k].name, name, len) == 0)
      return k;
  return -1;
}

static int32_t parse_call(parser_t *p, const char *name, size_t len, size_t col) {
  int k = find_func(name, len);
  if (k < 0) {
    fail_at(p, col, "unknown function %.*s (supported: min, max, abs, ceil, floor, round, float)",
            (int)len, name);
    return -1;
  }
  next(p); /* ( */
  /* Arguments go to the shared argument array only once all are parsed: a nested call appends
   * its own arguments meanwhile. */
  int32_t tmp[256];
  size_t n = 0;
  while (!p->failed && p->cur.kind != TK_RPAREN) {
    if (n == 255) {
      fail_at(p, p->cur.start, "too many arguments to call %s", funcs[k].name);
      return -1;
    }
    int32_t a = parse_expression(p, 0);
    if (a < 0)
      return -1;
    tmp[n++] = a;
    if (p->cur.kind == TK_COMMA)
      next(p);
    else if (p->cur.kind != TK_RPAREN)
      unexpected(p);
  }
  if (p->failed)
    return -1;
  if (n < (size_t)funcs[k].min_args || n > (size_t)funcs[k].max_args) {
    if (funcs[k].max_args > 1)
      fail_at(p, col, "not enough arguments to call %s", funcs[k].name);
    else
      fail_at(p, col, "invalid number of arguments (expected 1, got %zu)", n);
    return -1;
  }
  size_t first = p->f->nargs;
  for (size_t i = 0; i < n; i++)
    if (push_arg(p, tmp[i]) != 0)
      return -1;
  next(p); /* ) */
  int ty = call_type(p, funcs[k].fn, first, n);
  if (ty < 0)
    return -1;
  return postfix(p, add_node(p, (node_t){.kind = NK_CALL,
                                         .op = funcs[k].fn,
                                         .ty = ty,
                                         .col = col,
                                         .a = (int32_t)first,
                                         .b = (int32_t)n}));
}

/* ---- public API ------------------------------------------------------------------------------ */

void evs_formula_free(evs_formula_t *f) {
  if (!f)
    return;
  for (size_t i = 0; i < f->nvars; i++)
    free(f->vars[i]);
  free(f->vars);
  free(f->nodes);
  free(f->args);
  free(f);
}

/* KEDA wraps the formula in float(...) (or, with `??`, a nil-preserving float): a formula whose
 * value is statically a bool cannot be a metric (webhook castToFloatIfNecessary). */
static void check_result_type(parser_t *p) {
  int ty = node_ty(p, p->f->root);
  if (ty == TY_BOOL)
    fail_at(p, 0, "invalid argument for float (type bool): the formula must yield a number");
  else if (ty == TY_NIL && !p->f->has_coalesce)
    fail_at(p, 0, "invalid argument for float (type nil): the formula must yield a number");
}

int evs_formula_parse(const char *src, evs_formula_t **out, size_t *err_col, char *err,
                      size_t errcap) {
  *out = NULL;
  if (err && errcap)
    err[0] = '\0';
  if (err_col)
    *err_col = 0;
  evs_formula_t *f = calloc(1, sizeof *f);
  if (!f)
    return UV_ENOMEM;
  parser_t p = {.src = src ? src : "", .f = f, .err = err, .errcap = errcap};
  f->has_coalesce = strstr(p.src, "??") != NULL;
  next(&p);
  if (!p.failed && p.cur.kind == TK_EOF)
    fail_at(&p, p.cur.start, "empty formula");
  int32_t root = p.failed ? -1 : parse_expression(&p, 0);
  if (!p.failed && p.cur.kind != TK_EOF)
    unexpected(&p);
  if (!p.failed) {
    f->root = root;
    check_result_type(&p);
  }
  if (p.failed) {
    if (err_col)
      *err_col = p.failed == EVS_EFORMULA ? p.err_col : 0;
    evs_formula_free(f);
    return p.failed;
  }
  *out = f;
  return 0;
}

size_t evs_formula_var_count(const evs_formula_t *f) { return f ? f->nvars : 0; }

const char *evs_formula_var_name(const evs_formula_t *f, size_t i) {
  return f && i < f->nvars ? f->vars[i] : NULL;
}

/* ---- evaluation (expr's vm/runtime) -----------------------------------------------------------
 */

typedef struct {
  int t; /* TY_INT, TY_FLOAT, TY_BOOL or TY_NIL */
  int64_t i;
  double d;
} value_t;

typedef struct {
  const evs_formula_t *f;
  const double *vars;
  const int *vars_ok;
  char *err;
  size_t errcap;
} eval_t;

static int eval_node(eval_t *e, int32_t idx, value_t *out);

static int eval_fail(eval_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int eval_fail(eval_t *e, const char *fmt, ...) {
  if (e->err && e->errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, e->errcap, fmt, ap);
    va_end(ap);
  }
  return EVS_EFORMULA;
}

static double as_double(const value_t *v) { return v->t == TY_INT ? (double)v->i : v->d; }
static int v_is_num(const value_t *v) { return v->t == TY_INT || v->t == TY_FLOAT; }

/* Go's int arithmetic wraps; going through uint64 gives the same bits without C's UB. */
static int64_t wrap(uint64_t u) {
  int64_t r;
  memcpy(&r, &u, sizeof r);
  return r;
}

static int arith(eval_t *e, int op, const value_t *l, const value_t *r, value_t *out) {
  if (!v_is_num(l) || !v_is_num(r) || (op == OP_MOD && (l->t != TY_INT || r->t != TY_INT)))
    return eval_fail(e, "invalid operation: %s (mismatched types %s and %s)", op_name(op),
                     type_name(l->t), type_name(r->t));
  if (op == OP_DIV) {
    *out = (value_t){.t = TY_FLOAT, .d = as_double(l) / as_double(r)};
    return 0;
  }
  if (op == OP_MOD) {
    if (r->i == 0)
      return eval_fail(e, "integer divide by zero");
    /* Go defines MinInt64 % -1 as 0; in C it traps. */
    *out = (value_t){.t = TY_INT, .i = r->i == -1 ? 0 : l->i % r->i};
    return 0;
  }
  if (l->t == TY_INT && r->t == TY_INT) {
    uint64_t a = (uint64_t)l->i, b = (uint64_t)r->i;
    uint64_t u = op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b;
    *out = (value_t){.t = TY_INT, .i = wrap(u)};
    return 0;
  }
  double a = as_double(l), b = as_double(r);
  *out = (value_t){.t = TY_FLOAT, .d = op == OP_ADD ? a + b : op == OP_SUB ? a - b : a * b};
  return 0;
}

/* runtime.Equal: numbers compare by value across int and float; nil equals only nil. */
static int values_equal(const value_t *l, const value_t *r) {
  if (v_is_num(l) && v_is_num(r))
    return l->t == TY_INT && r->t == TY_INT ? l->i == r->i : as_double(l) == as_double(r);
  if (l->t != r->t)
    return 0;
  return l->t == TY_NIL || l->i == r->i;
}

static int compare(eval_t *e, int op, const value_t *l, const value_t *r, value_t *out) {
  if (op == OP_EQ || op == OP_NE) {
    int eq = values_equal(l, r);
    *out = (value_t){.t = TY_BOOL, .i = op == OP_EQ ? eq : !eq};
    return 0;
  }
  if (!v_is_num(l) || !v_is_num(r))
    return eval_fail(e, "invalid operation: %s (mismatched types %s and %s)", op_name(op),
                     type_name(l->t), type_name(r->t));
  int res;
  if (l->t == TY_INT && r->t == TY_INT)
    res = op == OP_LT   ? l->i < r->i
          : op == OP_GT ? l->i > r->i
          : op == OP_LE ? l->i <= r->i
                        : l->i >= r->i;
  else {
    double a = as_double(l), b = as_double(r);
    res = op == OP_LT ? a < b : op == OP_GT ? a > b : op == OP_LE ? a <= b : a >= b;
  }
  *out = (value_t){.t = TY_BOOL, .i = res};
  return 0;
}

static int eval_bool(eval_t *e, int32_t idx, const char *what, int *out) {
  value_t v;
  int rc = eval_node(e, idx, &v);
  if (rc != 0)
    return rc;
  if (v.t != TY_BOOL)
    return eval_fail(e, "invalid operation: %s (mismatched type %s)", what, type_name(v.t));
  *out = (int)v.i;
  return 0;
}

static int eval_binary(eval_t *e, const node_t *n, value_t *out) {
  if (n->op == OP_AND || n->op == OP_OR) {
    int l = 0, r = 0, rc = eval_bool(e, n->a, op_name(n->op), &l);
    if (rc != 0)
      return rc;
    if ((n->op == OP_AND && !l) || (n->op == OP_OR && l)) { /* short-circuit, as expr */
      *out = (value_t){.t = TY_BOOL, .i = l};
      return 0;
    }
    rc = eval_bool(e, n->b, op_name(n->op), &r);
    *out = (value_t){.t = TY_BOOL, .i = r};
    return rc;
  }
  value_t l, r;
  int rc = eval_node(e, n->a, &l);
  if (rc != 0)
    return rc;
  if (n->op == OP_COALESCE && l.t != TY_NIL) {
    *out = l;
    return 0;
  }
  if ((rc = eval_node(e, n->b, &r)) != 0)
    return rc;
  switch (n->op) {
  case OP_COALESCE:
    *out = r;
    return 0;
  case OP_EQ:
  case OP_NE:
  case OP_LT:
  case OP_GT:
  case OP_LE:
  case OP_GE:
    return compare(e, n->op, &l, &r, out);
  default:
    return arith(e, n->op, &l, &r, out);
  }
}

static int eval_unary(eval_t *e, const node_t *n, value_t *out) {
  int rc = eval_node(e, n->a, out);
  if (rc != 0)
    return rc;
  if (n->op == OP_NOT) {
    if (out->t != TY_BOOL)
      return eval_fail(e, "invalid operation: ! (mismatched type %s)", type_name(out->t));
    out->i = !out->i;
    return 0;
  }
  if (!v_is_num(out))
    return eval_fail(e, "invalid operation: %s (mismatched type %s)", op_name(n->op),
                     type_name(out->t));
  if (n->op == OP_NEG) {
    if (out->t == TY_INT)
      out->i = wrap(0 - (uint64_t)out->i);
    else
      out->d = -out->d;
  }
  return 0;
}

static int num_less(const value_t *a, const value_t *b) {
  if (a->t == TY_INT && b->t == TY_INT)
    return a->i < b->i;
  return as_double(a) < as_double(b);
}

static int eval_call(eval_t *e, const node_t *n, value_t *out) {
  const int32_t *args = e->f->args + n->a;
  for (int32_t k = 0; k < n->b; k++) {
    value_t v;
    int rc = eval_node(e, args[k], &v);
    if (rc != 0)
      return rc;
    if (!v_is_num(&v))
      return eval_fail(e, "invalid argument for %s (type %s)", fn_name(n->op), type_name(v.t));
    /* min/max keep the first extreme value, with its type (builtin/lib.go minMax). */
    if (k == 0 || (n->op == FN_MAX && num_less(out, &v)) || (n->op == FN_MIN && num_less(&v, out)))
      *out = v;
  }
  switch (n->op) {
  case FN_ABS:
    if (out->t == TY_INT && out->i < 0)
      out->i = wrap(0 - (uint64_t)out->i);
    else if (out->t == TY_FLOAT && out->d < 0)
      out->d = -out->d;
    return 0;
  case FN_CEIL:
  case FN_FLOOR:
  case FN_ROUND:
  case FN_FLOAT: {
    double d = as_double(out);
    /* Go's math.Round rounds half away from zero, as C's round does. */
    d = n->op == FN_CEIL    ? ceil(d)
        : n->op == FN_FLOOR ? floor(d)
        : n->op == FN_ROUND ? round(d)
                            : d;
    *out = (value_t){.t = TY_FLOAT, .d = d};
    return 0;
  }
  default:
    return 0;
  }
}

static int eval_node(eval_t *e, int32_t idx, value_t *out) {
  const node_t *n = &e->f->nodes[idx];
  switch (n->kind) {
  case NK_INT:
    *out = (value_t){.t = TY_INT, .i = n->i};
    return 0;
  case NK_FLOAT:
    *out = (value_t){.t = TY_FLOAT, .d = n->d};
    return 0;
  case NK_BOOL:
    *out = (value_t){.t = TY_BOOL, .i = n->i};
    return 0;
  case NK_NIL:
    *out = (value_t){.t = TY_NIL};
    return 0;
  case NK_VAR:
    if (e->vars_ok && !e->vars_ok[n->i])
      *out = (value_t){.t = TY_NIL};
    else
      *out = (value_t){.t = TY_FLOAT, .d = e->vars[n->i]};
    return 0;
  case NK_UNARY:
    return eval_unary(e, n, out);
  case NK_BINARY:
    return eval_binary(e, n, out);
  case NK_CALL:
    return eval_call(e, n, out);
  default: { /* NK_COND */
    int c = 0, rc = eval_bool(e, n->c, "?:", &c);
    return rc != 0 ? rc : eval_node(e, c ? n->a : n->b, out);
  }
  }
}

int evs_formula_eval_ex(const evs_formula_t *f, const double *vars, const int *vars_ok, double *out,
                        int *is_nil, char *err, size_t errcap) {
  eval_t e = {.f = f, .vars = vars, .vars_ok = vars_ok, .err = err, .errcap = errcap};
  value_t v;
  *out = NAN;
  if (is_nil)
    *is_nil = 0;
  if (err && errcap)
    err[0] = '\0';
  int rc = eval_node(&e, f->root, &v);
  if (rc != 0)
    return rc;
  if (v.t == TY_NIL) {
    /* KEDA's wrapper keeps nil only for formulas with `??`; otherwise float(nil) fails. */
    if (!f->has_coalesce || !is_nil)
      return eval_fail(&e, "invalid argument for float (type nil)");
    *is_nil = 1;
    return 0;
  }
  if (v.t == TY_BOOL)
    return eval_fail(&e, "invalid argument for float (type bool)");
  *out = as_double(&v);
  return 0;
}

int evs_formula_eval(const evs_formula_t *f, const double *vars, const int *vars_ok, double *out) {
  return evs_formula_eval_ex(f, vars, vars_ok, out, NULL, NULL, 0);
}
