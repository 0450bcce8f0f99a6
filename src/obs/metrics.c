/* Metrics registry and Prometheus text exposition 0.0.4. See include/evscale/metrics.h.
 *
 * The output follows prometheus/common expfmt/text_create.go (commit
 * 08bb632dfe0f8dee4689f8f4f93d8af23fa43176): HELP escapes \ and newline, label values escape
 * \ " and newline, histograms print cumulative _bucket{le=...} lines ending with le="+Inf",
 * then _sum and _count, and values go through writeFloat (Go's strconv 'g' shortest). */
#include "evscale/metrics.h"
#include "evscale/buf.h"
#include "evscale/error.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double EVS_METRICS_DEFAULT_BUCKETS[EVS_METRICS_DEFAULT_BUCKETS_N] = {
    .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

typedef union {
  double d;
  unsigned long long u;
} evs_mval_t;

/* One series. A counter or gauge keeps v[0]; a histogram keeps v[0] = sum, v[1] = count and
 * v[2 + i] = observations in bucket i alone (made cumulative when printed). The label values
 * follow the values, packed and NUL-separated, so a child is a single allocation. */
struct evs_metric_s {
  evs_metric_t *hnext; /* hash chain; once dead, the registry's graveyard list */
  evs_metric_family_t *fam;
  uint32_t hash;
  uint32_t labels_len : 31;
  uint32_t dead : 1; /* removed while a stream may still hold it in its sorted view */
  evs_mval_t v[];
};

/* A family's children in output order. Shared between the family and the streams rendering it:
 * a stream keeps its view while series come and go, so what it walks is never reallocated. */
typedef struct {
  size_t refs;
  size_t n;
  const void *v[]; /* children (evs_metric_t), or a source's records */
} kids_t;

struct evs_metric_family_s {
  evs_metrics_t *reg;
  char *name;
  char *help;
  evs_metric_type_t type;
  size_t n_labels;
  char **label_names;
  double *buckets;
  size_t n_buckets;
  evs_metric_t **table;
  size_t cap;
  size_t size;
  evs_metric_collect_cb collect;
  void *collect_data;
  /* Children in output order, rebuilt only after a child was added or removed: series change
   * rarely compared with scrapes, and sorting tens of thousands per scrape is the main cost. */
  kids_t *sorted;
  int sorted_valid;
  /* A family printed from a source's records (evs_metrics_source_new): its position there. */
  evs_metrics_source_t *src;
  size_t src_index;
};

struct evs_metrics_source_s {
  evs_metrics_t *reg;
  evs_metrics_source_ops_t ops;
  void *data;
  size_t n;         /* live records, as the owner last said */
  kids_t *sorted;   /* the records in output order, shared with streams as a family's */
  int sorted_valid; /* 0 after evs_metrics_source_changed */
  evs_metrics_source_family_t *fams;
  size_t n_fams;
};

struct evs_metrics_s {
  evs_metric_family_t **fams; /* sorted by name */
  size_t n;
  size_t cap;
  size_t last_len;         /* size of the previous exposition: the next buffer starts that big */
  size_t streams;          /* expositions in progress */
  evs_metric_t *graveyard; /* children removed while streams > 0, freed when the last ends */
  evs_metrics_source_t **sources;
  size_t n_sources, cap_sources;
  void *retired; /* sources' records retired while streams > 0 (linked by their first word) */
};

static void kids_release(kids_t *k) {
  if (k && --k->refs == 0)
    free(k);
}

static size_t nvals(const evs_metric_family_t *fam) {
  return fam->type == EVS_METRIC_HISTOGRAM ? 2 + fam->n_buckets : 1;
}

static const char *child_labels(const evs_metric_t *m) {
  return (const char *)(m->v + nvals(m->fam));
}

/* The value of label `index` of m, in its packed block. */
static const char *label_at(const evs_metric_t *m, size_t index) {
  const char *p = child_labels(m);
  for (size_t i = 0; i < index; i++)
    p += strlen(p) + 1;
  return p;
}

static int valid_name(const char *s, int allow_colon) {
  if (s == NULL || *s == '\0')
    return 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

/* Label names beginning with "__" are reserved by Prometheus; "le" is the histogram's own. */
static int valid_labels(const evs_metric_desc_t *d) {
  for (size_t i = 0; i < d->n_labels; i++) {
    const char *l = d->label_names[i];
    if (!valid_name(l, 0) || strncmp(l, "__", 2) == 0)
      return 0;
    if (d->type == EVS_METRIC_HISTOGRAM && strcmp(l, "le") == 0)
      return 0;
    for (size_t j = 0; j < i; j++)
      if (strcmp(l, d->label_names[j]) == 0)
        return 0;
  }
  return 1;
}

static int valid_buckets(const double *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
      return 0;
  }
  return 1;
}

evs_metrics_t *evs_metrics_new(void) { return calloc(1, sizeof(evs_metrics_t)); }

static void family_free(evs_metric_family_t *fam) {
  for (size_t i = 0; i < fam->cap; i++) {
    evs_metric_t *m = fam->table[i];
    while (m) {
      evs_metric_t *next = m->hnext;
      free(m);
      m = next;
    }
  }
  free(fam->table);
  kids_release(fam->sorted);
  for (size_t i = 0; fam->label_names && i < fam->n_labels; i++)
    free(fam->label_names[i]);
  free(fam->label_names);
  free(fam->buckets);
  free(fam->name);
  free(fam->help);
  free(fam);
}

static void retired_free(evs_metrics_t *reg) {
  while (reg->retired) {
    void *next = *(void **)reg->retired;
    free(reg->retired);
    reg->retired = next;
  }
}

static void source_free(evs_metrics_source_t *src) {
  kids_release(src->sorted);
  free(src->fams);
  free(src);
}

void evs_metrics_free(evs_metrics_t *reg) {
  if (reg == NULL)
    return;
  for (size_t i = 0; i < reg->n_sources; i++)
    source_free(reg->sources[i]);
  free(reg->sources);
  retired_free(reg);
  for (size_t i = 0; i < reg->n; i++)
    family_free(reg->fams[i]);
  while (reg->graveyard) {
    evs_metric_t *next = reg->graveyard->hnext;
    free(reg->graveyard);
    reg->graveyard = next;
  }
  free(reg->fams);
  free(reg);
}

/* Binary search: the index of name, or where it would be inserted (*found = 0). */
static size_t family_index(const evs_metrics_t *reg, const char *name, int *found) {
  size_t lo = 0, hi = reg->n;
  *found = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(reg->fams[mid]->name, name);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

evs_metric_family_t *evs_metrics_find(evs_metrics_t *reg, const char *name) {
  int found;
  size_t i = family_index(reg, name, &found);
  return found ? reg->fams[i] : NULL;
}

static int family_copy_desc(evs_metric_family_t *fam, const evs_metric_desc_t *d) {
  fam->type = d->type;
  fam->name = strdup(d->name);
  fam->help = d->help ? strdup(d->help) : NULL;
  if (fam->name == NULL || (d->help && fam->help == NULL))
    return UV_ENOMEM;
  if (d->n_labels > 0) {
    fam->label_names = calloc(d->n_labels, sizeof(char *));
    if (fam->label_names == NULL)
      return UV_ENOMEM;
    for (; fam->n_labels < d->n_labels; fam->n_labels++) {
      fam->label_names[fam->n_labels] = strdup(d->label_names[fam->n_labels]);
      if (fam->label_names[fam->n_labels] == NULL)
        return UV_ENOMEM;
    }
  }
  if (d->type == EVS_METRIC_HISTOGRAM) {
    const double *b = d->buckets ? d->buckets : EVS_METRICS_DEFAULT_BUCKETS;
    size_t n = d->buckets ? d->n_buckets : EVS_METRICS_DEFAULT_BUCKETS_N;
    fam->buckets = malloc((n ? n : 1) * sizeof(double));
    if (fam->buckets == NULL)
      return UV_ENOMEM;
    memcpy(fam->buckets, b, n * sizeof(double));
    fam->n_buckets = n;
  }
  return 0;
}

static int registry_insert(evs_metrics_t *reg, size_t at, evs_metric_family_t *fam) {
  if (evs_buf_reserve((void **)&reg->fams, &reg->cap, reg->n + 1, sizeof *reg->fams, 16) != 0)
    return UV_ENOMEM;
  memmove(reg->fams + at + 1, reg->fams + at, (reg->n - at) * sizeof(*reg->fams));
  reg->fams[at] = fam;
  reg->n++;
  return 0;
}

int evs_metrics_register(evs_metrics_t *reg, const evs_metric_desc_t *d,
                         evs_metric_family_t **out) {
  if (reg == NULL || d == NULL || !valid_name(d->name, 1) || !valid_labels(d) ||
      d->type > EVS_METRIC_HISTOGRAM || (d->n_labels > 0 && d->label_names == NULL))
    return UV_EINVAL;
  if (d->type == EVS_METRIC_HISTOGRAM && d->buckets && !valid_buckets(d->buckets, d->n_buckets))
    return UV_EINVAL;
  int found;
  size_t at = family_index(reg, d->name, &found);
  if (found)
    return UV_EEXIST;
  evs_metric_family_t *fam = calloc(1, sizeof(*fam));
  if (fam == NULL)
    return UV_ENOMEM;
  fam->reg = reg;
  int rc = family_copy_desc(fam, d);
  if (rc == 0)
    rc = registry_insert(reg, at, fam);
  /* A family without labels has exactly one series; it exists from the start so a scrape shows
   * 0 rather than nothing (client_golang does the same for a plain Counter). */
  if (rc == 0 && fam->n_labels == 0 && evs_metric_family_child(fam, NULL) == NULL) {
    memmove(reg->fams + at, reg->fams + at + 1, (reg->n - at - 1) * sizeof(*reg->fams));
    reg->n--;
    rc = UV_ENOMEM;
  }
  if (rc != 0) {
    family_free(fam);
    return rc;
  }
  if (out)
    *out = fam;
  return 0;
}

void evs_metric_family_set_collect(evs_metric_family_t *fam, evs_metric_collect_cb cb, void *data) {
  fam->collect = cb;
  fam->collect_data = data;
}

/* Packs the values NUL-separated into buf (or just measures when buf is NULL). FNV-1a hash of
 * them. */
static size_t pack_labels(const evs_metric_family_t *fam, const char *const *values, char *buf,
                          uint32_t *hash) {
  size_t len = 0;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < fam->n_labels; i++) {
    size_t l = strlen(values[i]) + 1;
    for (size_t k = 0; k < l; k++)
      h = (h ^ (unsigned char)values[i][k]) * 16777619u;
    if (buf)
      memcpy(buf + len, values[i], l);
    len += l;
  }
  if (hash)
    *hash = h;
  return len;
}

static int labels_equal(const evs_metric_t *m, const evs_metric_family_t *fam,
                        const char *const *values) {
  const char *p = child_labels(m);
  for (size_t i = 0; i < fam->n_labels; i++) {
    if (strcmp(p, values[i]) != 0)
      return 0;
    p += strlen(p) + 1;
  }
  return 1;
}

static int values_ok(const evs_metric_family_t *fam, const char *const *values) {
  if (fam->n_labels == 0)
    return 1;
  if (values == NULL)
    return 0;
  for (size_t i = 0; i < fam->n_labels; i++)
    if (values[i] == NULL)
      return 0;
  return 1;
}

/* Returns the link that points at the matching child (or the chain's terminating NULL). */
static evs_metric_t **find_link(evs_metric_family_t *fam, const char *const *values,
                                uint32_t hash) {
  if (fam->cap == 0)
    return NULL;
  evs_metric_t **link = &fam->table[hash & (fam->cap - 1)];
  while (*link && !((*link)->hash == hash && labels_equal(*link, fam, values)))
    link = &(*link)->hnext;
  return link;
}

evs_metric_t *evs_metric_family_lookup(evs_metric_family_t *fam, const char *const *values) {
  if (fam == NULL || !values_ok(fam, values))
    return NULL;
  uint32_t hash;
  pack_labels(fam, values, NULL, &hash);
  evs_metric_t **link = find_link(fam, values, hash);
  return link ? *link : NULL;
}

static int table_grow(evs_metric_family_t *fam) {
  size_t cap = fam->cap ? fam->cap * 2 : 8;
  evs_metric_t **t = calloc(cap, sizeof(*t));
  if (t == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < fam->cap; i++) {
    evs_metric_t *m = fam->table[i];
    while (m) {
      evs_metric_t *next = m->hnext;
      m->hnext = t[m->hash & (cap - 1)];
      t[m->hash & (cap - 1)] = m;
      m = next;
    }
  }
  free(fam->table);
  fam->table = t;
  fam->cap = cap;
  return 0;
}

evs_metric_t *evs_metric_family_child(evs_metric_family_t *fam, const char *const *values) {
  evs_metric_t *m = evs_metric_family_lookup(fam, values);
  if (m || fam == NULL || !values_ok(fam, values) || fam->src)
    return m;
  if (fam->size + 1 > fam->cap - fam->cap / 4 && table_grow(fam) != 0)
    return NULL;
  uint32_t hash;
  size_t llen = pack_labels(fam, values, NULL, &hash);
  if (llen > INT32_MAX)
    return NULL;
  m = calloc(1, sizeof(*m) + nvals(fam) * sizeof(evs_mval_t) + llen);
  if (m == NULL)
    return NULL;
  m->fam = fam;
  m->hash = hash;
  m->labels_len = (uint32_t)llen;
  pack_labels(fam, values, (char *)(m->v + nvals(fam)), NULL);
  m->hnext = fam->table[hash & (fam->cap - 1)];
  fam->table[hash & (fam->cap - 1)] = m;
  fam->size++;
  fam->sorted_valid = 0;
  return m;
}

/* Takes the child at *link out of its family. While an exposition is in progress the child may
 * still be in that stream's sorted view: it is marked dead (skipped when printed) and freed when
 * the last stream ends. */
static void unlink_child(evs_metric_family_t *fam, evs_metric_t **link) {
  evs_metric_t *m = *link;
  *link = m->hnext;
  fam->size--;
  fam->sorted_valid = 0;
  if (fam->reg->streams == 0) {
    free(m);
    return;
  }
  m->dead = 1;
  m->hnext = fam->reg->graveyard;
  fam->reg->graveyard = m;
}

int evs_metric_family_remove(evs_metric_family_t *fam, const char *const *values) {
  if (fam == NULL || !values_ok(fam, values))
    return EVS_ENOTFOUND;
  uint32_t hash;
  pack_labels(fam, values, NULL, &hash);
  evs_metric_t **link = find_link(fam, values, hash);
  if (link == NULL || *link == NULL)
    return EVS_ENOTFOUND;
  unlink_child(fam, link);
  return 0;
}

int evs_metric_remove(evs_metric_t *m) {
  if (m == NULL || m->dead)
    return EVS_ENOTFOUND;
  evs_metric_family_t *fam = m->fam;
  evs_metric_t **link = &fam->table[m->hash & (fam->cap - 1)];
  while (*link && *link != m)
    link = &(*link)->hnext;
  if (*link == NULL)
    return EVS_ENOTFOUND;
  unlink_child(fam, link);
  return 0;
}

size_t evs_metric_family_remove_matching(evs_metric_family_t *fam, size_t label_index,
                                         const char *value) {
  size_t removed = 0;
  if (fam == NULL || label_index >= fam->n_labels || value == NULL)
    return 0;
  for (size_t i = 0; i < fam->cap; i++) {
    evs_metric_t **link = &fam->table[i];
    while (*link) {
      evs_metric_t *m = *link;
      if (strcmp(label_at(m, label_index), value) == 0) {
        unlink_child(fam, link);
        removed++;
      } else {
        link = &m->hnext;
      }
    }
  }
  return removed;
}

const char *evs_metric_label(const evs_metric_t *m, size_t i) {
  return m != NULL && i < m->fam->n_labels ? label_at(m, i) : NULL;
}

size_t evs_metric_family_size(const evs_metric_family_t *fam) {
  if (fam && fam->src)
    return fam->src->n * fam->src->fams[fam->src_index].series_per_record;
  return fam ? fam->size : 0;
}

void evs_metric_inc(evs_metric_t *m) { evs_metric_add(m, 1.0); }

void evs_metric_add(evs_metric_t *m, double delta) {
  if (m == NULL || m->fam->type == EVS_METRIC_HISTOGRAM)
    return;
  /* A counter only goes up: a negative or NaN delta would break rate() for every reader. */
  if (m->fam->type == EVS_METRIC_COUNTER && !(delta >= 0))
    return;
  m->v[0].d += delta;
}

void evs_metric_set(evs_metric_t *m, double value) {
  if (m == NULL || m->fam->type == EVS_METRIC_HISTOGRAM)
    return;
  m->v[0].d = value;
}

void evs_metric_observe(evs_metric_t *m, double value) {
  if (m == NULL || m->fam->type != EVS_METRIC_HISTOGRAM)
    return;
  const evs_metric_family_t *fam = m->fam;
  size_t i = 0;
  while (i < fam->n_buckets && !(value <= fam->buckets[i]))
    i++;
  if (i < fam->n_buckets)
    m->v[2 + i].u++;
  m->v[0].d += value;
  m->v[1].u++;
}

double evs_metric_value(const evs_metric_t *m) { return m ? m->v[0].d : NAN; }

unsigned long long evs_metric_count(const evs_metric_t *m) {
  return (m && m->fam->type == EVS_METRIC_HISTOGRAM) ? m->v[1].u : 0;
}

/* Go's strconv.FormatFloat(v, 'g', -1, 64): the shortest digits that read back as v; %e form
 * when the decimal exponent is < -4 or >= 6 ("if shortest { eprec = 6 }" in golang/go
 * src/strconv/ftoa.go, commit 067e8dfd82163ddcbde248dbe5a1187a417e5d36), else %f form, the
 * exponent with at least two digits. */

/* Writes the decimal digits of v at p; returns the end. */
static char *put_u64(char *p, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    *p++ = tmp[--n];
  return p;
}

/* Lays out prec significant digits (digits, no dot) with decimal exponent exp as Go's 'g' does:
 * %e form (d.ddde+XX, at least two exponent digits) when exp < -4 || exp >= 6, else %f form. */
static size_t layout_digits(char *buf, int neg, const char *digits, int prec, int exp) {
  char *p = buf;
  if (neg)
    *p++ = '-';
  if (exp < -4 || exp >= 6) {
    *p++ = digits[0];
    if (prec > 1) {
      *p++ = '.';
      memcpy(p, digits + 1, (size_t)prec - 1);
      p += prec - 1;
    }
    *p++ = 'e';
    *p++ = exp < 0 ? '-' : '+';
    unsigned e = (unsigned)(exp < 0 ? -exp : exp);
    if (e < 10)
      *p++ = '0';
    p = put_u64(p, e);
  } else if (exp < 0) {
    *p++ = '0';
    *p++ = '.';
    for (int i = 0; i < -exp - 1; i++)
      *p++ = '0';
    memcpy(p, digits, (size_t)prec);
    p += prec;
  } else {
    for (int i = 0; i <= exp; i++)
      *p++ = i < prec ? digits[i] : '0';
    if (prec > exp + 1) {
      *p++ = '.';
      memcpy(p, digits + exp + 1, (size_t)(prec - exp - 1));
      p += prec - exp - 1;
    }
  }
  *p = '\0';
  return (size_t)(p - buf);
}

/* Exact powers of ten: every one up to 1e22 is a double. */
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* a * 10^k rounded once (k in [-22, 22]). */
static double scale10(double a, int k) { return k >= 0 ? a * pow10_exact[k] : a / pow10_exact[-k]; }

/* The fast path, for values with at most 15 significant digits (counts, durations, most query
 * results). d = round(a * 10^k) with k chosen so d has 15 digits; d * 10^-k is then checked to
 * read back as a exactly: d < 2^53 and 10^|k| <= 10^22 are both doubles, so one IEEE division
 * or multiplication is the correctly rounded value of the decimal (Clinger's fast path, the
 * one strtod takes too). A decimal of at most 15 significant digits that reads back as a is the
 * only one (DBL_DIG = 15: distinct such decimals are distinct doubles), so it is the shortest,
 * i.e. Go's answer, once its trailing zeros are gone. When the check fails no 15-digit decimal
 * reads back as a: the scaled product errs by at most 0.11 units of the 15th digit, so it can
 * pick the wrong neighbour only when a lies about half a unit from both, while a double's
 * round-trip interval is at most 0.11 units wide on each side. 0 when the slow path must run. */
static int shortest_fast(double a, char *digits, int *prec, int *exp, int *k_out) {
  if (!(a >= 1e-8 && a < 1e37))
    return 0;
  int e2;
  frexp(a, &e2);
  int e10 = (int)floor((e2 - 1) * 0.30102999566398120); /* floor(log10(a)), or one less */
  int k = 14 - e10;
  if (k < -21 || k > 22)
    return 0;
  double x = scale10(a, k);
  if (x >= 1e15)
    x = scale10(a, --k);
  double d = nearbyint(x);
  if (d < 1e14 || d > 1e15)
    return 0;
  *k_out = k;
  if ((k >= 0 ? d / pow10_exact[k] : d * pow10_exact[-k]) != a)
    return -1;
  char *end = put_u64(digits, (uint64_t)d);
  int n = (int)(end - digits);
  *exp = n - 1 - k;
  while (n > 1 && digits[n - 1] == '0')
    n--;
  *prec = n;
  return 1;
}

/* The integer nearest to a * 10^k (k in [0, 22]) into *n, from the exact product hi + lo (fma
 * gives the rounding error of one multiplication exactly). 0 when a is too near a tie to
 * decide without more precision. */
static int nearest_scaled(double a, int k, uint64_t *n) {
  double hi = a * pow10_exact[k];
  double lo = fma(a, pow10_exact[k], -hi);
  double d = nearbyint(hi);
  double r = (hi - d) + lo; /* hi - d is exact: both lie within one unit */
  double rr = nearbyint(r);
  if (fabs(fabs(r - rr) - 0.5) < 1e-6 || hi >= 1e18)
    return 0;
  *n = (uint64_t)d + (uint64_t)(int64_t)rr;
  return 1;
}

/* After the fast path showed that 15 digits are not enough (k: its scale, so a * 10^(k+1) has
 * 16 digits): the 16-digit decimal nearest to a, as "%.15e" prints it, when strtod reads it back
 * as a; else the nearest 17-digit one, as "%.16e" prints it, which always reads back. 1 with
 * the digits, 0 when the printing path must decide (k out of reach: values of 1e6 and more;
 * too near a tie). */
static int shortest_16_17(double a, int k, char *digits, int *prec, int *exp) {
  uint64_t n;
  if (k + 1 < 0 || k + 2 > 22 || !nearest_scaled(a, k + 1, &n) || n < UINT64_C(1000000000000000) ||
      n >= UINT64_C(10000000000000000))
    return 0;
  char text[40];
  char *p = put_u64(text, n);
  *p++ = 'e';
  *p++ = '-';
  p = put_u64(p, (uint64_t)(k + 1));
  *p = '\0';
  int len = 16;
  *exp = 14 - k;
  if (strtod(text, NULL) != a) {
    if (!nearest_scaled(a, k + 2, &n) || n < UINT64_C(10000000000000000) ||
        n >= UINT64_C(100000000000000000))
      return 0;
    put_u64(text, n);
    len = 17;
  }
  memcpy(digits, text, (size_t)len);
  while (len > 1 && digits[len - 1] == '0')
    len--;
  *prec = len;
  return 1;
}

/* The shortest significant digits of v that read back as v, by printing and reading back:
 * fast==-1 says 15 digits do not round-trip (see shortest_fast), so 16 and 17 are tried;
 * otherwise every precision from 15 (normal doubles) or 1 (subnormals, or values the fast path
 * does not cover) on. For a normal double, a round-tripping 15-digit string is the shortest once
 * its trailing zeros are gone, since any shorter round-tripping string lies on the same grid. */
static int shortest_slow(double v, int fast, char *digits, int *exp) {
  char tmp[EVS_METRICS_FLOAT_BUF];
  int prec = fast < 0 ? 16 : fabs(v) >= DBL_MIN ? 15 : 1;
  for (; prec < 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    if (strtod(tmp, NULL) == v)
      break;
  }
  if (prec == 17)
    snprintf(tmp, sizeof tmp, "%.16e", v);
  const char *e = strchr(tmp, 'e');
  *exp = atoi(e + 1);
  int n = 0;
  for (const char *q = tmp; q < e; q++)
    if (*q >= '0' && *q <= '9')
      digits[n++] = *q;
  while (n > 1 && digits[n - 1] == '0')
    n--;
  return n;
}

size_t evs_metrics_format_float(char *buf, double v) {
  if (isnan(v)) {
    memcpy(buf, "NaN", 4);
    return 3;
  }
  if (isinf(v)) {
    memcpy(buf, v > 0 ? "+Inf" : "-Inf", 5);
    return 4;
  }
  /* Most samples are small integers (counts, replicas): exact and in %f form below 1e6. Zero of
   * either sign prints "0", as expfmt's writeFloat does. */
  double a = fabs(v);
  if (a < 1e6 && a == (double)(uint32_t)a) {
    char *p = buf;
    if (v < 0)
      *p++ = '-';
    p = put_u64(p, (uint32_t)a);
    *p = '\0';
    return (size_t)(p - buf);
  }
  char digits[24] = {0};
  int prec, exp;
  int k = 0;
  int fast = shortest_fast(a, digits, &prec, &exp, &k);
  if (fast < 0 && shortest_16_17(a, k, digits, &prec, &exp))
    fast = 1;
  if (fast <= 0)
    prec = shortest_slow(a, fast, digits, &exp);
  return layout_digits(buf, v < 0, digits, prec, exp);
}

/* A growable output buffer; after a failed allocation every append is a no-op and oom stays. */
typedef struct {
  char *p;
  size_t len;
  size_t cap;
  int oom;
} sbuf_t;

static void sb_grow(sbuf_t *b, size_t more) {
  if (b->oom || b->len + more + 1 <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more + 1)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = 1;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void sb_put(sbuf_t *b, const char *s, size_t n) {
  sb_grow(b, n);
  if (b->oom)
    return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_float(sbuf_t *b, double v) {
  char f[EVS_METRICS_FLOAT_BUF];
  sb_put(b, f, evs_metrics_format_float(f, v));
}

/* Escapes \ and newline always, and " inside label values (expfmt writeEscapedString). */
static void sb_escaped(sbuf_t *b, const char *s, int quote) {
  const char *special = quote ? "\\\n\"" : "\\\n";
  for (;;) {
    size_t n = strcspn(s, special);
    sb_put(b, s, n);
    s += n;
    if (*s == '\0')
      return;
    sb_put(b, *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : "\\\"", 2);
    s++;
  }
}

/* name{l1="v1",...[,le="bound"]} value\n: label values from the packed block p in order. */
static void sb_sample(sbuf_t *b, const evs_metric_family_t *fam, const char *p, const char *suffix,
                      const double *le, double value) {
  sb_str(b, fam->name);
  sb_str(b, suffix);
  char sep = '{';
  for (size_t i = 0; i < fam->n_labels; i++) {
    sb_put(b, &sep, 1);
    sb_str(b, fam->label_names[i]);
    sb_put(b, "=\"", 2);
    sb_escaped(b, p, 1);
    sb_put(b, "\"", 1);
    p += strlen(p) + 1;
    sep = ',';
  }
  if (le) {
    sb_put(b, &sep, 1);
    sb_put(b, "le=\"", 4);
    sb_float(b, *le);
    sb_put(b, "\"", 1);
    sep = ',';
  }
  if (sep == ',')
    sb_put(b, "}", 1);
  sb_put(b, " ", 1);
  sb_float(b, value);
  sb_put(b, "\n", 1);
}

static void sb_child(sbuf_t *b, const evs_metric_t *m) {
  const evs_metric_family_t *fam = m->fam;
  const char *p = child_labels(m);
  if (fam->type != EVS_METRIC_HISTOGRAM) {
    sb_sample(b, fam, p, "", NULL, m->v[0].d);
    return;
  }
  unsigned long long cum = 0;
  for (size_t i = 0; i < fam->n_buckets; i++) {
    cum += m->v[2 + i].u;
    sb_sample(b, fam, p, "_bucket", &fam->buckets[i], (double)cum);
  }
  const double inf = INFINITY;
  sb_sample(b, fam, p, "_bucket", &inf, (double)m->v[1].u);
  sb_sample(b, fam, p, "_sum", NULL, m->v[0].d);
  sb_sample(b, fam, p, "_count", NULL, (double)m->v[1].u);
}

/* Packed label blocks compare like their values one by one: NUL sorts before any byte. */
static int child_cmp(const void *a, const void *b) {
  const evs_metric_t *x = *(evs_metric_t *const *)a, *y = *(evs_metric_t *const *)b;
  size_t n = x->labels_len < y->labels_len ? x->labels_len : y->labels_len;
  int c = memcmp(child_labels(x), child_labels(y), n);
  if (c != 0)
    return c;
  return (x->labels_len > y->labels_len) - (x->labels_len < y->labels_len);
}

static const char *type_name(evs_metric_type_t t) {
  return t == EVS_METRIC_COUNTER ? "counter" : t == EVS_METRIC_GAUGE ? "gauge" : "histogram";
}

/* Makes *view room for n entries that only its owner holds: resized in place when no stream
 * holds it, otherwise left to the streams and replaced by a new one. */
static int kids_writable(kids_t **view, size_t n) {
  kids_t *k = *view;
  size_t bytes = sizeof(kids_t) + (n ? n : 1) * sizeof(k->v[0]);
  if (k && k->refs == 1) {
    k = realloc(k, bytes);
    if (k == NULL)
      return UV_ENOMEM;
  } else {
    k = malloc(bytes);
    if (k == NULL)
      return UV_ENOMEM;
    kids_release(*view);
    k->refs = 1;
  }
  *view = k;
  return 0;
}

/* Brings fam->sorted up to date. A view a stream still holds is left to it and replaced. */
static int family_sort(evs_metric_family_t *fam) {
  if (fam->sorted_valid)
    return 0;
  if (kids_writable(&fam->sorted, fam->size) != 0)
    return UV_ENOMEM;
  kids_t *k = fam->sorted;
  size_t n = 0;
  for (size_t i = 0; i < fam->cap; i++)
    for (evs_metric_t *m = fam->table[i]; m; m = m->hnext)
      k->v[n++] = m;
  k->n = n;
  qsort(k->v, n, sizeof(*k->v), child_cmp);
  fam->sorted_valid = 1;
  return 0;
}

static void sb_family_head(sbuf_t *b, const evs_metric_family_t *fam) {
  if (fam->help) {
    sb_str(b, "# HELP ");
    sb_str(b, fam->name);
    sb_put(b, " ", 1);
    sb_escaped(b, fam->help, 0);
    sb_put(b, "\n", 1);
  }
  sb_str(b, "# TYPE ");
  sb_str(b, fam->name);
  sb_put(b, " ", 1);
  sb_str(b, type_name(fam->type));
  sb_put(b, "\n", 1);
}

/* ---- sources ----------------------------------------------------------------------------- */

struct evs_metrics_out_s {
  sbuf_t *b;
  const evs_metric_family_t *fam;
};

void evs_metrics_out_sample(evs_metrics_out_t *out, const char *const *labels, double value) {
  sbuf_t *b = out->b;
  const evs_metric_family_t *fam = out->fam;
  sb_str(b, fam->name);
  for (size_t i = 0; i < fam->n_labels; i++) {
    sb_put(b, i ? "," : "{", 1);
    sb_str(b, fam->label_names[i]);
    sb_put(b, "=\"", 2);
    sb_escaped(b, labels[i], 1);
    sb_put(b, "\"", 1);
  }
  if (fam->n_labels > 0)
    sb_put(b, "}", 1);
  sb_put(b, " ", 1);
  sb_float(b, value);
  sb_put(b, "\n", 1);
}

/* Brings src->sorted up to date, as family_sort does for a family's children. */
static int source_sort(evs_metrics_source_t *src) {
  if (src->sorted_valid)
    return 0;
  if (kids_writable(&src->sorted, src->n) != 0)
    return UV_ENOMEM;
  kids_t *k = src->sorted;
  k->n = src->ops.list(src->data, k->v, src->n);
  qsort(k->v, k->n, sizeof(k->v[0]), src->ops.cmp);
  src->sorted_valid = 1;
  return 0;
}

static int source_fams_ok(const evs_metrics_t *reg, const evs_metrics_source_family_t *f,
                          size_t n) {
  for (size_t i = 0; i < n; i++) {
    const evs_metric_family_t *x = f[i].fam;
    if (x == NULL || x->reg != reg || x->src || x->size != 0 || x->type == EVS_METRIC_HISTOGRAM ||
        f[i].series_per_record == 0)
      return 0;
    for (size_t j = 0; j < i; j++)
      if (f[j].fam == x)
        return 0;
  }
  return 1;
}

int evs_metrics_source_new(evs_metrics_t *reg, const evs_metrics_source_family_t *fams,
                           size_t n_fams, const evs_metrics_source_ops_t *ops, void *data,
                           evs_metrics_source_t **out) {
  if (reg == NULL || fams == NULL || n_fams == 0 || ops == NULL || ops->list == NULL ||
      ops->cmp == NULL || ops->print == NULL || out == NULL || !source_fams_ok(reg, fams, n_fams))
    return UV_EINVAL;
  evs_metrics_source_t *src = calloc(1, sizeof(*src));
  if (src == NULL)
    return UV_ENOMEM;
  src->fams = malloc(n_fams * sizeof(*fams));
  if (src->fams == NULL || evs_buf_reserve((void **)&reg->sources, &reg->cap_sources,
                                           reg->n_sources + 1, sizeof *reg->sources, 4) != 0) {
    source_free(src);
    return UV_ENOMEM;
  }
  memcpy(src->fams, fams, n_fams * sizeof(*fams));
  src->n_fams = n_fams;
  src->reg = reg;
  src->ops = *ops;
  src->data = data;
  reg->sources[reg->n_sources++] = src;
  for (size_t i = 0; i < n_fams; i++) {
    fams[i].fam->src = src;
    fams[i].fam->src_index = i;
  }
  *out = src;
  return 0;
}

void evs_metrics_source_changed(evs_metrics_source_t *src, size_t n) {
  src->n = n;
  src->sorted_valid = 0;
}

void evs_metrics_retire(evs_metrics_t *reg, void *block) {
  if (block == NULL)
    return;
  if (reg->streams == 0) {
    free(block);
    return;
  }
  *(void **)block = reg->retired;
  reg->retired = block;
}

/* ---- streams ----------------------------------------------------------------------------- */

struct evs_metrics_stream_s {
  evs_metrics_t *reg;
  evs_metric_family_t *fam; /* the family being rendered; NULL before the first and at the end */
  kids_t *kids;             /* its sorted view (one reference) */
  size_t next;              /* the next child of kids to print */
  int done;
};

int evs_metrics_stream_new(evs_metrics_t *reg, evs_metrics_stream_t **out) {
  if (reg == NULL || out == NULL)
    return UV_EINVAL;
  evs_metrics_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < reg->n; i++)
    if (reg->fams[i]->collect)
      reg->fams[i]->collect(reg->fams[i], reg->fams[i]->collect_data);
  st->reg = reg;
  reg->streams++;
  *out = st;
  return 0;
}

/* Moves to the family after st->fam in name order. Families are never removed but may be
 * registered while the stream runs, so the position is found again by name. */
static int stream_next_family(evs_metrics_stream_t *st) {
  evs_metrics_t *reg = st->reg;
  size_t at = 0;
  if (st->fam) {
    int found;
    at = family_index(reg, st->fam->name, &found) + 1;
  }
  kids_release(st->kids);
  st->kids = NULL;
  st->fam = NULL;
  st->next = 0;
  for (; at < reg->n; at++) {
    evs_metric_family_t *fam = reg->fams[at];
    kids_t *kids;
    if (fam->src) { /* the source's records, in their order */
      if (fam->src->n == 0)
        continue;
      int rc = source_sort(fam->src);
      if (rc != 0)
        return rc;
      kids = fam->src->sorted;
    } else {
      if (fam->size == 0)
        continue;
      int rc = family_sort(fam);
      if (rc != 0)
        return rc;
      kids = fam->sorted;
    }
    st->fam = fam;
    st->kids = kids;
    st->kids->refs++;
    return 0;
  }
  st->done = 1;
  return 0;
}

/* Appends to b until it holds min_bytes or the exposition ends. */
static int stream_fill(evs_metrics_stream_t *st, sbuf_t *b, size_t min_bytes) {
  while (!st->done && !b->oom && b->len < min_bytes) {
    if (st->kids == NULL || st->next == st->kids->n) {
      int rc = stream_next_family(st);
      if (rc != 0)
        return rc;
      if (st->done)
        break;
      sb_family_head(b, st->fam);
    }
    while (st->next < st->kids->n && b->len < min_bytes) {
      if (st->fam->src) {
        evs_metrics_out_t out = {b, st->fam};
        st->fam->src->ops.print(&out, st->kids->v[st->next++], st->fam->src_index);
        continue;
      }
      const evs_metric_t *m = st->kids->v[st->next++];
      if (m->dead)
        continue;
      sb_child(b, m);
    }
  }
  return b->oom ? UV_ENOMEM : 0;
}

int evs_metrics_stream_next(evs_metrics_stream_t *st, size_t min_bytes, char **out, size_t *len) {
  sbuf_t b = {0};
  *out = NULL;
  *len = 0;
  if (st->done)
    return 0;
  /* One series more than min_bytes at most: a histogram child is about 15 lines. */
  sb_grow(&b, min_bytes + 1024);
  int rc = stream_fill(st, &b, min_bytes ? min_bytes : 1);
  if (rc != 0 || b.len == 0) {
    free(b.p);
    return rc;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}

int evs_metrics_stream_done(const evs_metrics_stream_t *st) { return st->done; }

size_t evs_metrics_streams(const evs_metrics_t *reg) { return reg->streams; }

void evs_metrics_stream_free(evs_metrics_stream_t *st) {
  if (st == NULL)
    return;
  evs_metrics_t *reg = st->reg;
  kids_release(st->kids);
  free(st);
  if (--reg->streams > 0)
    return;
  while (reg->graveyard) {
    evs_metric_t *next = reg->graveyard->hnext;
    free(reg->graveyard);
    reg->graveyard = next;
  }
  retired_free(reg);
}

int evs_metrics_expose(evs_metrics_t *reg, char **out, size_t *len) {
  evs_metrics_stream_t *st;
  int rc = evs_metrics_stream_new(reg, &st);
  if (rc != 0)
    return rc;
  sbuf_t b = {0};
  sb_grow(&b, reg->last_len + reg->last_len / 8);
  if (!b.oom)
    b.p[0] = '\0'; /* an empty registry is an empty string, not a missing one */
  rc = stream_fill(st, &b, SIZE_MAX);
  evs_metrics_stream_free(st);
  if (rc == 0 && b.oom)
    rc = UV_ENOMEM;
  if (rc != 0) {
    free(b.p);
    return rc;
  }
  reg->last_len = b.len;
  *out = b.p;
  *len = b.len;
  return 0;
}
