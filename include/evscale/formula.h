/* KEDA's `advanced.scalingModifiers.formula`: the subset of expr-lang/expr that KEDA users write,
 * parsed once into a compact tree and evaluated purely.
 *
 * Semantics follow expr-lang/expr v1.17 (the version KEDA pins in go.mod at kedacore/keda
 * 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a), read at expr-lang/expr
 * 851b241a301f7c74646e65e4009c69cf290993a8: parser/operator/operator.go (precedence),
 * parser/parser.go (parseExpression, parseConditional, parseComparison, number literals),
 * checker/checker.go (binaryNode / unaryNode type rules), vm/runtime/helpers/main.go (Divide
 * returns float64, Modulo is integer-only), builtin/builtin.go + builtin/lib.go (min, max, abs,
 * ceil, floor, round, float).
 *
 * Supported:
 * - numbers: integers (decimal, 0x hex, 0o octal, 0b binary, `_` separators) and floats
 *   (`1.5`, `.5`, `1e3`); integers stay 64-bit integers (Go int, wrapping) until mixed with a
 *   float, as in expr;
 * - trigger names as variables: identifiers `[A-Za-z_$][A-Za-z0-9_$]*`. KEDA puts every named
 *   trigger into the environment as a float64 (apis/keda/v1alpha1/scaledobject_webhook.go
 *   validateScalingModifiersFormula), so variables are floats. KEDA does not restrict the
 *   characters of a trigger name (scaletriggers_types.go ValidateTriggers only checks
 *   uniqueness), but a name such as `queue-depth` cannot be referenced in a formula: expr reads
 *   it as `queue - depth`. evscale does the same;
 * - `true false nil`, `+ - * / %`, unary `- + ! not`, `== != < <= > >=` (with expr's chaining:
 *   `a < b < c` is `a < b && b < c`), `&& || and or`, `cond ? a : b`, `a ?: b`, `a ?? b`,
 *   parentheses, line and block comments, and the functions min(x, ...), max(x, ...), abs(x),
 * ceil(x), floor(x), round(x), float(x).
 * - `/` always yields a float; division by zero gives ±Inf or NaN, as Go's float division does.
 *   `%` takes integers only (a trigger variable is a float, so `queue % 2` is rejected when
 *   parsed, as expr's checker does); `x % 0` is an evaluation error (Go's integer divide by zero).
 * - `??` is the highest-precedence binary operator; expr refuses to mix it with another
 *   operator without parentheses (`a ?? 0 + 1` is an error, `(a ?? 0) + 1` is not).
 * - A variable whose trigger failed (vars_ok[i] == 0) is nil, which only `??`, `==` and `!=`
 *   accept; any other use is an evaluation error, as KEDA's expr.Run reports it.
 * Everything else (strings, arrays, maps, `**`, `^`, `in`, `let`, `if`, member access, other
 * functions) is rejected with the 1-based column of the offending token. */
#ifndef EVSCALE_FORMULA_H
#define EVSCALE_FORMULA_H

#include <stddef.h>

/* Formulas nested deeper than this (parentheses, operators, calls) are rejected when parsed, so
 * evaluation's recursion is bounded. */
#define EVS_FORMULA_MAX_DEPTH 64
/* A chain of operators longer than this (`1+1+…`, 512 terms) is rejected too: it evaluates one
 * recursion level per operator. */
#define EVS_FORMULA_MAX_TERMS 512

typedef struct evs_formula_s evs_formula_t;

/* Parses src; on error returns EVS_EFORMULA and fills err (message, NUL-terminated, may be
 * truncated; err may be NULL when errcap is 0) and *err_col (1-based byte column). Returns
 * UV_ENOMEM on allocation failure. *out is new: free with evs_formula_free. */
int evs_formula_parse(const char *src, evs_formula_t **out, size_t *err_col, char *err,
                      size_t errcap);
void evs_formula_free(evs_formula_t *f);

/* The distinct variables the formula uses, in order of first appearance. */
size_t evs_formula_var_count(const evs_formula_t *f);
const char *evs_formula_var_name(const evs_formula_t *f, size_t i); /* borrowed */

/* vars[i] is the value of evs_formula_var_name(f, i); vars_ok[i] == 0 means that trigger failed
 * (the `??` operator falls back on failed/missing operands). vars_ok may be NULL (all ok).
 * Returns 0 or EVS_EFORMULA (a type error at run time, integer modulo by zero, a nil or boolean
 * result). */
int evs_formula_eval(const evs_formula_t *f, const double *vars, const int *vars_ok, double *out);

/* Like evs_formula_eval, but tells a nil result (*is_nil = 1, return 0, *out = NAN) apart from an
 * error: KEDA replaces a nil composite value with fallback.replicas × target
 * (pkg/scaling/modifiers/formula.go calculateScalingModifiersFormula). err receives the message
 * of an error (may be NULL with errcap 0). */
int evs_formula_eval_ex(const evs_formula_t *f, const double *vars, const int *vars_ok, double *out,
                        int *is_nil, char *err, size_t errcap);

#endif
