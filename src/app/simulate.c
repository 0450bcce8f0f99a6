/* `evscale simulate`: the ScaledObject model, the engine and the breaker replayed over a CSV of
 * readings (include/evscale/simulate.h). A command-line tool, not part of the loop: it reads its
 * two files with plain stdio. */
#include "evscale/simulate.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/behavior.h"
#include "evscale/breaker.h"
#include "evscale/cli.h"
#include "evscale/csv.h"
#include "evscale/diag.h"
#include "evscale/engine.h"
#include "evscale/error.h"
#include "evscale/file.h"
#include "evscale/param.h"
#include "evscale/reading.h"
#include "evscale/scaledobject.h"
#include "evscale/step.h"

/* Simulated time 0: a fixed wall-clock instant, so the breaker's persisted-style times are
 * ordinary epoch milliseconds. */
#define SIM_T0_MS INT64_C(1700000000000)
#define SIM_MAX_FILE (64u << 20)
#define SIM_MAX_SECONDS 1e9
/* A runaway timer (an engine asking to look again at the same instant) must not spin forever. */
#define SIM_MAX_STEPS 10000000
/* A file of a million bad rows must not print a million lines. */
#define SIM_MAX_ROW_ERRORS 100

typedef struct {
  const char *so_path, *csv_path;
  long replicas; /* -1: minReplicaCount */
  int json;
  double until_s; /* < 0: the last reading */
  evs_breaker_config_t breaker;
} sim_opts_t;

typedef struct {
  int64_t t_ms; /* from the start */
  size_t trigger;
  double value;
  int failed;
  const char *msg; /* borrowed from the CSV text; NULL when no error */
} sim_row_t;

typedef struct {
  const sim_opts_t *o;
  const evs_so_t *so;
  FILE *out;
  evs_engine_config_t ecfg;
  evs_engine_state_t *st;
  evs_breaker_t br;
  evs_reading_t *readings;
  int32_t current;
} sim_t;

/* ---- arguments --------------------------------------------------------------------------------
 */

static const char more_options[] = "Output and CSV format: see the README.\n";

static int usage(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage(FILE *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("evscale simulate: ", err);
  vfprintf(err, fmt, ap);
  va_end(ap);
  fputs("\n\n", err);
  fputs(evs_cli_usage(EVS_CMD_SIMULATE), err);
  fputs(more_options, err);
  return EVS_EXIT_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi || s[0] == '+' || s[0] == ' ')
    return -1;
  *out = v;
  return 0;
}

/* A non-negative decimal number of seconds: digits with an optional fraction. */
static int parse_seconds(const char *s, double *out) {
  size_t i = 0, digits = 0;
  while (s[i] >= '0' && s[i] <= '9')
    i++, digits++;
  if (s[i] == '.')
    for (i++; s[i] >= '0' && s[i] <= '9'; i++)
      digits++;
  if (s[i] || digits == 0 || s[0] == '.')
    return -1;
  double v = strtod(s, NULL);
  if (!(v <= SIM_MAX_SECONDS))
    return -1;
  *out = v;
  return 0;
}

/* `--opt value` or `--opt=value`; returns the value or NULL (and advances *i). */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=')
    return a + n + 1;
  if (a[n] == '\0' && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

static int parse_option(int argc, char **argv, int *i, sim_opts_t *o, FILE *err) {
  const char *a = argv[*i], *v;
  long n;
  double s;
  if (strcmp(a, "--no-breaker") == 0) {
    o->breaker.enabled = 0;
  } else if ((v = opt_value(argc, argv, i, "--replicas"))) {
    if (parse_long(v, 0, INT32_MAX, &o->replicas))
      return usage(err, "--replicas: expected a whole number >= 0, got '%s'", v);
  } else if ((v = opt_value(argc, argv, i, "--format"))) {
    if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
      return usage(err, "--format: expected text or json, got '%s'", v);
    o->json = strcmp(v, "json") == 0;
  } else if ((v = opt_value(argc, argv, i, "--until"))) {
    if (parse_seconds(v, &o->until_s))
      return usage(err, "--until: expected seconds >= 0, got '%s'", v);
  } else if ((v = opt_value(argc, argv, i, "--max-scale-events"))) {
    if (parse_long(v, 1, EVS_BREAKER_MAX_EVENTS, &n))
      return usage(err, "--max-scale-events: expected 1..%d, got '%s'", EVS_BREAKER_MAX_EVENTS, v);
    o->breaker.max_events_per_minute = (int)n;
  } else if ((v = opt_value(argc, argv, i, "--breaker-cooldown"))) {
    if (parse_seconds(v, &s) || s < 0.001 || s > 7 * 24 * 3600)
      return usage(err, "--breaker-cooldown: expected seconds > 0, got '%s'", v);
    o->breaker.cooldown_ms = llround(s * 1000);
    if (o->breaker.max_cooldown_ms < o->breaker.cooldown_ms)
      o->breaker.max_cooldown_ms = o->breaker.cooldown_ms;
  } else if ((v = opt_value(argc, argv, i, "--fallback-replicas"))) {
    if (parse_long(v, 0, INT32_MAX, &n))
      return usage(err, "--fallback-replicas: expected a whole number >= 0, got '%s'", v);
    o->breaker.fallback_replicas = (int)n;
  } else {
    return usage(err, "unknown or incomplete option '%s'", a);
  }
  return 0;
}

static int parse_args(int argc, char **argv, sim_opts_t *o, FILE *err) {
  *o = (sim_opts_t){.replicas = -1, .until_s = -1};
  evs_breaker_config_default(&o->breaker);
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      return -1; /* help: printed to stdout by the caller, exit 0 */
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0') {
      int rc = parse_option(argc, argv, &i, o, err);
      if (rc != 0)
        return rc;
    } else if (npos == 0) {
      o->so_path = argv[i], npos++;
    } else if (npos == 1) {
      o->csv_path = argv[i], npos++;
    } else {
      return usage(err, "unexpected argument '%s'", argv[i]);
    }
  }
  if (npos != 2)
    return usage(err, "expected SCALEDOBJECT.yaml and READINGS.csv");
  return 0;
}

/* ---- inputs -----------------------------------------------------------------------------------
 */

/* Outside text made safe to print on a terminal: control bytes (C0, DEL, and the C1 controls
 * U+0080..U+009F, which terminals also obey) and bytes that are not valid UTF-8 become \xNN
 * (\n, \r, \t, \\ by name); valid UTF-8 passes. At most ESC_MAX input bytes are shown,
 * then "...". Returns buf. */
#define ESC_MAX 120
#define ESC_CAP (ESC_MAX * 4 + 8)

static size_t utf8_len(const unsigned char *p) {
  unsigned char c = p[0];
  size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
  if (n == 0 || c >= 0xf5)
    return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
      (c == 0xf4 && p[1] > 0x8f))
    return 0; /* overlong, surrogate, beyond U+10FFFF */
  if (c == 0xc2 && p[1] <= 0x9f)
    return 0; /* a C1 control */
  return n;
}

static const char *esc_n(const char *s, char *buf, size_t max_in) {
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0, i = 0;
  while (p[i] && i < max_in) {
    unsigned char c = p[i];
    size_t n = c >= 0x80 ? utf8_len(p + i) : 1;
    if (c == '\\' || c == '\n' || c == '\r' || c == '\t') {
      buf[o++] = '\\';
      buf[o++] = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
      i++;
    } else if (c < 0x20 || c == 0x7f || n == 0) {
      o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
      i++;
    } else {
      memcpy(buf + o, p + i, n);
      o += n, i += n;
    }
  }
  if (p[i])
    memcpy(buf + o, "...", 3), o += 3;
  buf[o] = '\0';
  return buf;
}

static const char *esc(const char *s, char *buf) { return esc_n(s, buf, ESC_MAX); }

/* Through the shared reader, so a FIFO, device or directory is refused at once instead of
 * hanging the command (issue 9). */
static int read_file(const char *path, char **buf, size_t *len, FILE *err) {
  int rc = evs_file_read_sync(path, SIM_MAX_FILE, buf, len);
  if (rc != 0) {
    char e[ESC_CAP];
    fprintf(err, "%s: cannot read: %s\n", esc(path, e), evs_file_strerror(rc));
    return -1;
  }
  return 0;
}

static int load_so(const char *path, evs_so_t **so, FILE *err) {
  char *buf;
  size_t len;
  if (read_file(path, &buf, &len, err) != 0)
    return -1;
  evs_diag_t diag;
  evs_diag_init(&diag);
  int rc = evs_so_parse_yaml(buf, len, path, so, &diag);
  char line[1024], e[sizeof line * 4 + 8];
  for (size_t i = 0; i < diag.n; i++) {
    evs_diag_format(&diag, i, line, sizeof line);
    fprintf(err, "%s\n", esc_n(line, e, sizeof line));
  }
  if (rc != 0 && diag.n == 0)
    fprintf(err, "%s: %s\n", esc(path, e), evs_strerror(rc));
  evs_diag_free(&diag);
  free(buf);
  return rc == 0 ? 0 : -1;
}

/* A decimal number as Go's ParseFloat reads metric values, or NaN / +Inf / -Inf / Inf as the
 * Prometheus API writes them. Hex floats and other strtod extras are refused. */
static int parse_value(const char *s, double *out) {
  if (strcmp(s, "NaN") == 0 || strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0 ||
      strcmp(s, "-Inf") == 0) {
    *out = s[0] == 'N' ? NAN : s[0] == '-' ? -INFINITY : INFINITY;
    return 0;
  }
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0, digits = 0;
  for (; s[i] >= '0' && s[i] <= '9'; i++)
    digits++;
  if (s[i] == '.')
    for (i++; s[i] >= '0' && s[i] <= '9'; i++)
      digits++;
  if (digits == 0)
    return -1;
  if (s[i] == 'e' || s[i] == 'E') {
    i++;
    if (s[i] == '+' || s[i] == '-')
      i++;
    if (!(s[i] >= '0' && s[i] <= '9'))
      return -1;
    while (s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (s[i])
    return -1;
  errno = 0;
  *out = strtod(s, NULL);
  if (errno == ERANGE && isinf(*out))
    return -1; /* strconv.ParseFloat: "value out of range", not +Inf */
  return 0;
}

/* A trigger's metadata value as KEDA's typed config reads it: trimmed, empty = absent. */
static const char *meta(const evs_trigger_t *t, const char *key, char *buf, size_t cap) {
  const char *v = evs_kvs_get(&t->metadata, key);
  if (v == NULL || evs_param_trim(v, buf, cap) != 0 || buf[0] == '\0')
    return NULL;
  return buf;
}

/* The CSV value is the backend's raw answer; each trigger type turns it into KEDA's value,
 * activity and error with the same function the live scalers use (reading.h). For cron the
 * answer is the window test: 0 outside, anything above 0 inside. UV_EINVAL when the raw value
 * cannot be an answer of that backend. */
static int convert_raw(const evs_trigger_t *t, double raw, evs_conv_t *out) {
  char buf[64];
  const char *v;
  int64_t i64 = 0;
  int b = 1;
  switch (t->kind) {
  case EVS_TRIG_REDIS:
    /* the length script returns an int64: a whole number >= 0 */
    if (!(raw >= 0 && raw < 9.2e18 && raw == floor(raw)))
      return UV_EINVAL;
    return evs_reading_redis((int64_t)raw, (int64_t)t->activation_target, out);
  case EVS_TRIG_PROMETHEUS:
    if ((v = meta(t, "ignoreNullValues", buf, sizeof buf)) != NULL && evs_param_go_bool(v, &b))
      b = 1; /* the validator refused it already */
    return evs_reading_prometheus(raw, t->activation_target, b, out);
  case EVS_TRIG_CRON:
    if (!(raw >= 0 && !isinf(raw)))
      return UV_EINVAL;
    if ((v = meta(t, "desiredReplicas", buf, sizeof buf)) != NULL)
      (void)evs_param_json_int64(v, &i64);
    return evs_reading_cron(raw > 0, i64, out);
  }
  return UV_EINVAL;
}

static const char *raw_expectation(int kind) {
  switch (kind) {
  case EVS_TRIG_REDIS:
    return "a redis list length is a whole number >= 0";
  case EVS_TRIG_CRON:
    return "a cron trigger's value is its window: 0 outside, above 0 inside";
  default:
    return "expected a number";
  }
}

static int is_index(const char *s, size_t n, size_t *out) {
  long v;
  if (parse_long(s, 0, (long)n - 1, &v) != 0 || (s[0] == '0' && s[1]))
    return 0;
  *out = (size_t)v;
  return 1;
}

typedef struct {
  size_t time, trigger, value, error; /* column indices; error = SIZE_MAX when absent */
} sim_cols_t;

static void csv_err(FILE *err, const char *path, const evs_csv_field_t *f, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void csv_err(FILE *err, const char *path, const evs_csv_field_t *f, const char *fmt, ...) {
  va_list ap;
  char e[ESC_CAP];
  if (err == NULL) /* past the cap on printed errors: counted, not printed */
    return;
  fprintf(err, "%s:%u:%u: ", esc(path, e), f->line, f->col);
  va_start(ap, fmt);
  vfprintf(err, fmt, ap);
  va_end(ap);
  fputc('\n', err);
}

/* Unknown or duplicate header columns: one error per kind, naming the first few and the count
 * (a header of 100,000 junk columns is one line, not 100,000). */
#define COLS_NAMED 3

typedef struct {
  size_t n, first[COLS_NAMED];
} col_list_t;

static void col_add(col_list_t *l, size_t k) {
  if (l->n < COLS_NAMED)
    l->first[l->n] = k;
  l->n++;
}

static void col_report(const evs_csv_t *csv, const char *path, const col_list_t *l,
                       const char *what, FILE *err) {
  char names[COLS_NAMED * (ESC_CAP + 4) + 64], e[ESC_CAP];
  size_t o = 0;
  if (l->n == 0)
    return;
  for (size_t i = 0; i < l->n && i < COLS_NAMED; i++)
    o += (size_t)snprintf(names + o, sizeof names - o, "%s'%s'", i ? ", " : "",
                          esc(evs_csv_text(csv, 0, l->first[i]), e));
  if (l->n > COLS_NAMED)
    snprintf(names + o, sizeof names - o, " and %zu more", l->n - COLS_NAMED);
  csv_err(err, path, evs_csv_at(csv, 0, l->first[0]),
          "%s column%s %s (expected time, trigger, value, error)", what, l->n > 1 ? "s" : "",
          names);
}

static int find_columns(const evs_csv_t *csv, const char *path, sim_cols_t *c, FILE *err) {
  *c = (sim_cols_t){SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX};
  col_list_t unknown = {0}, dup = {0};
  for (size_t k = 0; k < csv->n_cols; k++) {
    const char *h = evs_csv_text(csv, 0, k);
    size_t *slot = strcmp(h, "time") == 0      ? &c->time
                   : strcmp(h, "trigger") == 0 ? &c->trigger
                   : strcmp(h, "value") == 0   ? &c->value
                   : strcmp(h, "error") == 0   ? &c->error
                                               : NULL;
    if (!slot)
      col_add(&unknown, k);
    else if (*slot != SIZE_MAX)
      col_add(&dup, k);
    else
      *slot = k;
  }
  col_report(csv, path, &unknown, "unknown", err);
  col_report(csv, path, &dup, "duplicate", err);
  int bad = unknown.n > 0 || dup.n > 0;
  const evs_csv_field_t *first = evs_csv_at(csv, 0, 0);
  if (c->time == SIZE_MAX || c->trigger == SIZE_MAX || c->value == SIZE_MAX) {
    csv_err(err, path, first, "the header must name the columns time, trigger and value");
    bad = 1;
  }
  return bad ? -1 : 0;
}

/* Converts one data record; prints every problem. */
static int convert_row(const evs_csv_t *csv, size_t r, const sim_cols_t *c, const evs_so_t *so,
                       const char *path, sim_row_t *row, FILE *err) {
  int bad = 0;
  double t;
  char e[ESC_CAP];
  const char *ts = evs_csv_text(csv, r, c->time), *name = evs_csv_text(csv, r, c->trigger);
  const char *vs = evs_csv_text(csv, r, c->value);
  const char *es = c->error != SIZE_MAX ? evs_csv_text(csv, r, c->error) : "";
  if (parse_seconds(ts, &t) != 0) {
    csv_err(err, path, evs_csv_at(csv, r, c->time), "time: expected seconds >= 0, got '%s'",
            esc(ts, e));
    bad = 1;
  } else {
    row->t_ms = llround(t * 1000);
  }
  int idx = evs_so_trigger_index(so, name), trig_ok = 1;
  if (idx >= 0)
    row->trigger = (size_t)idx;
  else if (!is_index(name, so->n_triggers, &row->trigger)) {
    trig_ok = 0;
    csv_err(err, path, evs_csv_at(csv, r, c->trigger),
            "trigger: no trigger named '%s' (an unnamed trigger is given by its index, 0..%zu)",
            esc(name, e), so->n_triggers - 1);
    bad = 1;
  }
  row->failed = es[0] != '\0';
  row->msg = row->failed ? es : NULL;
  row->value = 0;
  evs_conv_t conv;
  if (!row->failed && parse_value(vs, &row->value) != 0) {
    csv_err(err, path, evs_csv_at(csv, r, c->value), "value: expected a number, got '%s'",
            esc(vs, e));
    bad = 1;
  } else if (!row->failed && trig_ok &&
             convert_raw(&so->triggers[row->trigger], row->value, &conv) != 0) {
    csv_err(err, path, evs_csv_at(csv, r, c->value), "value: %s, got '%s'",
            raw_expectation(so->triggers[row->trigger].kind), esc(vs, e));
    bad = 1;
  }
  return bad ? -1 : 0;
}

static int check_order(const sim_row_t *rows, size_t n, const evs_csv_t *csv, size_t tcol,
                       const char *path, FILE *err) {
  for (size_t i = 1; i < n; i++) {
    if (rows[i].t_ms < rows[i - 1].t_ms) {
      csv_err(err, path, evs_csv_at(csv, i + 1, tcol),
              "time: rows must be in time order (this one is before the previous row)");
      return -1;
    }
  }
  return 0;
}

static int load_rows(const char *path, const evs_so_t *so, evs_csv_t *csv, sim_row_t **rows,
                     size_t *n, FILE *err) {
  char *buf, msg[200];
  size_t len;
  uint32_t line, col;
  char e[ESC_CAP];
  if (read_file(path, &buf, &len, err) != 0)
    return -1;
  /* A UTF-8 byte-order mark (spreadsheets write one) is not part of the first column's name. */
  size_t bom = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
  int rc = evs_csv_parse(buf + bom, len - bom, csv, &line, &col, msg, sizeof msg);
  free(buf);
  if (rc != 0) {
    fprintf(err, "%s:%u:%u: %s\n", esc(path, e), line, col,
            rc == EVS_EPARSE ? msg : evs_strerror(rc));
    return -1;
  }
  sim_cols_t c;
  if (find_columns(csv, path, &c, err) != 0)
    return -1;
  *n = csv->n_records - 1;
  *rows = calloc(*n ? *n : 1, sizeof **rows);
  if (!*rows)
    return -1;
  size_t bad_rows = 0;
  for (size_t r = 1; r < csv->n_records; r++)
    bad_rows += convert_row(csv, r, &c, so, path, &(*rows)[r - 1],
                            bad_rows < SIM_MAX_ROW_ERRORS ? err : NULL) != 0;
  if (bad_rows > SIM_MAX_ROW_ERRORS)
    fprintf(err, "%s: %zu more rows with errors not shown\n", esc(path, e),
            bad_rows - SIM_MAX_ROW_ERRORS);
  int bad = bad_rows > 0;
  if (!bad)
    bad = check_order(*rows, *n, csv, c.time, path, err) != 0;
  return bad ? -1 : 0;
}

/* ---- output -----------------------------------------------------------------------------------
 */

static void emit(sim_t *s, int64_t t_ms, int32_t from, int32_t to, const char *event,
                 const char *detail) {
  double t = (double)(t_ms - SIM_T0_MS) / 1000.0;
  if (!s->o->json) {
    if (*detail)
      fprintf(s->out, "%10.3f  %5d  %5d  %-18s %s\n", t, from, to, event, detail);
    else
      fprintf(s->out, "%10.3f  %5d  %5d  %s\n", t, from, to, event);
    return;
  }
  json_t *o = json_pack("{s:f, s:i, s:i, s:s, s:s}", "time", t, "from", (json_int_t)from, "to",
                        (json_int_t)to, "event", event, "detail", detail);
  if (o) {
    json_dumpf(o, s->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    fputc('\n', s->out);
    json_decref(o);
  }
}

/* ---- the run ----------------------------------------------------------------------------------
 */

/* The fallback HPA's hold: CPU is not simulated, so it keeps at least its minReplicas. */
static int32_t fallback_hold(const sim_t *s) {
  int32_t fb = evs_breaker_fallback_min(&s->o->breaker);
  int32_t v = s->current > fb ? s->current : fb;
  int32_t max = evs_so_max(s->so);
  return v > max ? (max < 1 ? 1 : max) : v;
}

/* Prints what the step decided and applies it: a write takes effect at once and is recorded as
 * the controller records it; while the breaker is open the fallback HPA holds the target. */
static void apply_step(sim_t *s, const evs_step_t *st, int64_t now) {
  char detail[200];
  const evs_breaker_config_t *b = &s->o->breaker;
  const evs_decision_t *d = &st->decision;
  switch ((evs_breaker_verdict_t)st->verdict) {
  case EVS_BREAKER_TRIP_SCALE_TO_ONE:
    emit(s, now, s->current, 1, "BreakerScaleToOne", "at least 1 replica before the hand-over");
    s->current = 1;
    /* fall through */
  case EVS_BREAKER_TRIP:
    snprintf(detail, sizeof detail,
             "more than %d scale events in 60s: refused %d; fallback HPA minReplicas=%d for %llds",
             b->max_events_per_minute, (int)st->proposed, st->fallback_min,
             (long long)(s->br.cooldown_ms / 1000));
    int32_t hold = fallback_hold(s);
    emit(s, now, s->current, hold, "BreakerTrip", detail);
    s->current = hold;
    return;
  case EVS_BREAKER_HOLD:
    return;
  case EVS_BREAKER_CLOSE:
    emit(s, now, s->current, s->current, "BreakerClose", "cooldown over: fallback HPA removed");
    /* fall through */
  case EVS_BREAKER_WRITE:
    if (st->write) {
      emit(s, now, s->current, st->replicas, evs_engine_reason_name(d->reason), d->message);
      evs_step_written(s->so, s->st, st, now);
      s->current = st->replicas;
    }
    return;
  }
}

/* One evaluation at `now` through the shared step. Returns the next time to look. */
static int64_t evaluate(sim_t *s, int64_t now) {
  evs_engine_input_t in = {.readings = s->readings,
                           .n_readings = s->so->n_triggers,
                           .current_replicas = s->current,
                           .status_replicas = s->current,
                           .ready_replicas = s->current,
                           .now_ms = now};
  evs_step_t st;
  if (evs_step(s->so, &s->ecfg, &s->o->breaker, s->st, &s->br, &in, &st) != 0)
    return INT64_MAX;
  apply_step(s, &st, now);
  return st.next_eval_ms;
}

static void apply_row(sim_t *s, const sim_row_t *row, int64_t now) {
  const evs_trigger_t *trig = &s->so->triggers[row->trigger];
  evs_reading_t *r = &s->readings[row->trigger];
  evs_conv_t c;
  *r = (evs_reading_t){.time_ms = now};
  if (row->failed) {
    r->error = EVS_EMETRIC;
    r->error_msg = row->msg;
  } else if (convert_raw(trig, row->value, &c) == 0) { /* checked when the CSV was loaded */
    r->value = c.value;
    r->active = c.active;
    r->error = c.error;
    r->error_msg = c.error_msg;
  }
}

static int run(sim_t *s, const sim_row_t *rows, size_t n, FILE *err) {
  int64_t end =
      SIM_T0_MS + (s->o->until_s >= 0 ? llround(s->o->until_s * 1000) : (n ? rows[n - 1].t_ms : 0));
  int64_t next_eval = INT64_MAX, t = SIM_T0_MS;
  size_t i = 0;
  for (long steps = 0;; steps++) {
    if (steps > SIM_MAX_STEPS) {
      fprintf(err, "simulation stopped: more than %d evaluations\n", SIM_MAX_STEPS);
      return -1;
    }
    int64_t row_t = i < n ? SIM_T0_MS + rows[i].t_ms : INT64_MAX;
    int64_t now = row_t < next_eval ? row_t : next_eval;
    if (now > end || now == INT64_MAX)
      break;
    while (i < n && SIM_T0_MS + rows[i].t_ms == now)
      apply_row(s, &rows[i++], now);
    t = now;
    next_eval = evaluate(s, now);
    if (next_eval <= now) /* never look twice at one instant */
      next_eval = now + 1;
  }
  emit(s, end > t ? end : t, s->current, s->current, "End", "");
  return 0;
}

static int simulate(const sim_opts_t *o, const evs_so_t *so, const sim_row_t *rows, size_t n,
                    FILE *out, FILE *err) {
  sim_t s = {.o = o, .so = so, .out = out};
  evs_engine_config_default(&s.ecfg);
  evs_breaker_init(&s.br);
  s.current = o->replicas >= 0 ? (int32_t)o->replicas : evs_so_min(so);
  s.readings = calloc(so->n_triggers ? so->n_triggers : 1, sizeof *s.readings);
  if (!s.readings || evs_engine_state_new(so, SIM_T0_MS, &s.st) != 0) {
    free(s.readings);
    fprintf(err, "out of memory\n");
    return -1;
  }
  if (!o->json)
    fprintf(out, "%10s  %5s  %5s  %-18s %s\n", "TIME", "FROM", "TO", "EVENT", "DETAIL");
  char detail[64];
  snprintf(detail, sizeof detail, "%s", o->replicas >= 0 ? "--replicas" : "minReplicaCount");
  emit(&s, SIM_T0_MS, s.current, s.current, "Start", detail);
  int rc = run(&s, rows, n, err);
  evs_engine_state_free(s.st);
  free(s.readings);
  return rc;
}

int evs_simulate_run(int argc, char **argv, FILE *out, FILE *err) {
  sim_opts_t o;
  int rc = parse_args(argc, argv, &o, err);
  if (rc < 0) {
    fputs(evs_cli_usage(EVS_CMD_SIMULATE), out);
    fputs(more_options, out);
    return EVS_EXIT_OK;
  }
  if (rc != 0)
    return rc;
  evs_so_t *so = NULL;
  evs_csv_t csv = {0};
  sim_row_t *rows = NULL;
  size_t n = 0;
  rc = EVS_EXIT_CONFIG;
  if (load_so(o.so_path, &so, err) == 0 && load_rows(o.csv_path, so, &csv, &rows, &n, err) == 0)
    rc = simulate(&o, so, rows, n, out, err) == 0 ? EVS_EXIT_OK : EVS_EXIT_CONFIG;
  free(rows);
  evs_csv_free(&csv);
  evs_so_free(so);
  fflush(out);
  return rc;
}

int evs_simulate_main(int argc, char **argv) {
  return evs_simulate_run(argc, argv, stdout, stderr);
}
