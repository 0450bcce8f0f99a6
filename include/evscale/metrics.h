/* Metrics registry with Prometheus text exposition (format 0.0.4).
 *
 * A registry holds families (counter, gauge, histogram), each with N label names; a family's
 * children (series) are found by their label values. The app creates one registry and passes it
 * to every module that counts something: there is no hidden global.
 *
 * Names are checked only against the exposition grammar (metric names [a-zA-Z_:][a-zA-Z0-9_:]*,
 * label names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__"): KEDA-compatible families such as
 * keda_scaler_metrics_value{scaledObject,triggerIndex,...} with camelCase labels are accepted.
 *
 * Output is stable: families sorted by name, children by label values (as client_golang's
 * Gather does); a labelled family without children prints nothing; a family without labels has
 * its one child from registration on, so it prints 0 before the first update.
 *
 * Memory: a child is one allocation (hash link, value(s), label values packed NUL-separated),
 * about 40 bytes plus its label values for a counter or gauge, and a hash slot and a sorted-view
 * slot (about 24 bytes). Series that share their labels across families can instead be printed
 * from the owner's own records (sources, below), which costs the registry one sorted-view
 * pointer per record.
 *
 * Not thread-safe: the loop thread is the only user. */
#ifndef EVSCALE_METRICS_H
#define EVSCALE_METRICS_H

#include <stddef.h>

typedef struct evs_metrics_s evs_metrics_t;
typedef struct evs_metric_family_s evs_metric_family_t;
typedef struct evs_metric_s evs_metric_t;

typedef enum {
  EVS_METRIC_COUNTER = 0,
  EVS_METRIC_GAUGE = 1,
  EVS_METRIC_HISTOGRAM = 2
} evs_metric_type_t;

typedef struct {
  const char *name; /* copied */
  const char *help; /* copied; may be NULL (no HELP line) */
  evs_metric_type_t type;
  const char *const *label_names; /* copied; n_labels entries */
  size_t n_labels;
  const double *buckets; /* histogram only: strictly increasing finite upper bounds,
                            copied; NULL = EVS_METRICS_DEFAULT_BUCKETS */
  size_t n_buckets;
} evs_metric_desc_t;

/* Called at the start of every exposition, so a family can be computed at scrape time
 * (process metrics): it sets its children's values. */
typedef void (*evs_metric_collect_cb)(evs_metric_family_t *fam, void *data);

/* Returns a new registry or NULL when out of memory. */
evs_metrics_t *evs_metrics_new(void);
/* Frees the registry with all its families and children. NULL is allowed. */
void evs_metrics_free(evs_metrics_t *reg);

/* Registers a family. *out is borrowed (owned by the registry). Errors: UV_EINVAL (bad name,
 * label name, duplicate label, histogram buckets not increasing or "le" as a label name),
 * UV_EEXIST (a family with that name), UV_ENOMEM. */
int evs_metrics_register(evs_metrics_t *reg, const evs_metric_desc_t *desc,
                         evs_metric_family_t **out);
/* Looks a family up by name; borrowed, NULL when absent. */
evs_metric_family_t *evs_metrics_find(evs_metrics_t *reg, const char *name);
/* Sets the scrape-time callback of a family (NULL to remove). */
void evs_metric_family_set_collect(evs_metric_family_t *fam, evs_metric_collect_cb cb, void *data);

/* The child with these label values (n_labels strings; NULL for a family without labels),
 * created at 0 when absent. Borrowed: valid until removed or the registry is freed.
 * NULL when out of memory or a value is NULL. */
evs_metric_t *evs_metric_family_child(evs_metric_family_t *fam, const char *const *values);
/* The child if it exists, else NULL (never creates). */
evs_metric_t *evs_metric_family_lookup(evs_metric_family_t *fam, const char *const *values);
/* Removes (and frees) one child: a deleted ScaledObject's series disappear. 0 or EVS_ENOTFOUND. */
int evs_metric_family_remove(evs_metric_family_t *fam, const char *const *values);
/* Removes (and frees) the child m, a handle from evs_metric_family_child: O(1), so an object
 * that keeps its series' handles drops them all in O(k) without naming labels. m is invalid
 * afterwards: removing it again is a use after free (unless a stream still holds it, when it is
 * kept dead and this returns EVS_ENOTFOUND). 0, or EVS_ENOTFOUND for NULL. */
int evs_metric_remove(evs_metric_t *m);
/* Removes every child whose label `label_index` equals value; returns how many went. Scans every
 * child of the family (milliseconds at 60000): prefer evs_metric_remove on kept handles. */
size_t evs_metric_family_remove_matching(evs_metric_family_t *fam, size_t label_index,
                                         const char *value);
size_t evs_metric_family_size(const evs_metric_family_t *fam);
/* The value of label i of child m (borrowed: lives as long as m), NULL when i is out of range or
 * m is NULL: an owner that keeps the handle need not keep the labels too. */
const char *evs_metric_label(const evs_metric_t *m, size_t i);

/* Sources: the series of several counter and gauge families printed from the caller's own
 * records, as client_golang's Collector does. A KEDA ScaledObject keeps its values and label
 * strings in one record of its own, and /metrics reads them from it (issue 13: the row sets
 * this replaced cost a row allocation, a hash link and a value slot per column for each object
 * and trigger; a record of the owner's costs what the owner needs). The registry keeps a source's
 * sorted view (a pointer per record, rebuilt only after evs_metrics_source_changed) and shares it
 * with the streams rendering it, so a scrape stays sliced as for children.
 *
 * A family attached to a source has only the source's series: evs_metric_family_child on it
 * returns NULL, and evs_metric_family_size counts records times its series per record. */
typedef struct evs_metrics_source_s evs_metrics_source_t;
/* Where a source's print callback writes its samples (valid during the callback only). */
typedef struct evs_metrics_out_s evs_metrics_out_t;

typedef struct {
  /* Fills items with the source's live records, at most n (as last given to
   * evs_metrics_source_changed), in any order; returns how many. */
  size_t (*list)(void *data, const void **items, size_t n);
  /* Orders two records as their series' label values do: a and b point at two items (as
   * qsort's comparison, of an array of const void *). */
  int (*cmp)(const void *a, const void *b);
  /* Prints the series of the source's family number fam_index (its position in the array given
   * to evs_metrics_source_new) of one record, with evs_metrics_out_sample, in label order. A
   * record retired (evs_metrics_retire) after the view was sorted is still passed: print nothing
   * for it. */
  void (*print)(evs_metrics_out_t *out, const void *item, size_t fam_index);
} evs_metrics_source_ops_t;

typedef struct {
  evs_metric_family_t *fam; /* counter or gauge of the same registry, without series */
  size_t series_per_record; /* what print prints per record: for evs_metric_family_size */
} evs_metrics_source_family_t;

/* A source printing n_fams families (copied; each in at most one source) through
 * ops with data (borrowed). *out is borrowed: the registry owns it and frees it with itself.
 * 0, UV_EINVAL, UV_ENOMEM. */
int evs_metrics_source_new(evs_metrics_t *reg, const evs_metrics_source_family_t *fams,
                           size_t n_fams, const evs_metrics_source_ops_t *ops, void *data,
                           evs_metrics_source_t **out);
/* The source's records were added or removed: it now has n (the next scrape sorts again). */
void evs_metrics_source_changed(evs_metrics_source_t *src, size_t n);
/* One sample of the family being printed: its name, labels[i] as the value of its label i
 * (fam's n_labels strings), and value, as a child with these labels would print. */
void evs_metrics_out_sample(evs_metrics_out_t *out, const char *const *labels, double value);
/* Frees block (malloc'd; its first sizeof(void *) bytes are overwritten) now, or when the last
 * stream that may still reach it ends: a source's record removed while a scrape is in
 * progress (its print must then print nothing for it). NULL is allowed. */
void evs_metrics_retire(evs_metrics_t *reg, void *block);

/* Value updates. NULL child is a no-op, so a failed child() costs only that sample.
 * inc/add: counters and gauges (a counter ignores negative deltas and NaN);
 * set: gauges, and counters fed by a collect callback (e.g. process_cpu_seconds_total);
 * observe: histograms only. */
void evs_metric_inc(evs_metric_t *m);
void evs_metric_add(evs_metric_t *m, double delta);
void evs_metric_set(evs_metric_t *m, double value);
void evs_metric_observe(evs_metric_t *m, double value);
/* Counter/gauge value, or a histogram's sum. NaN for NULL. */
double evs_metric_value(const evs_metric_t *m);
/* Histogram sample count (0 for other types). */
unsigned long long evs_metric_count(const evs_metric_t *m);

/* Renders every family in text format 0.0.4 into a new malloc'd NUL-terminated buffer
 * (*out, freed by the caller; *len excludes the NUL). 0 or UV_ENOMEM. In one go: at hundreds of
 * thousands of series that is tens of milliseconds, so /metrics uses a stream instead. */
int evs_metrics_expose(evs_metrics_t *reg, char **out, size_t *len);

/* An exposition rendered in slices across loop turns, so a scrape of a large registry never
 * holds the loop (nor the whole body in memory). The collect callbacks run at
 * evs_metrics_stream_new. Each slice prints the current values of the series it covers, so
 * one scrape is not a snapshot of one instant (no more than client_golang's Gather is); every
 * series that exists from start to end of the stream is printed exactly once, a series created
 * meanwhile may be missing, a removed one stops being printed. The registry may change freely
 * between slices (children are not freed while a stream may still reach them), but must not be
 * freed before its streams. */
typedef struct evs_metrics_stream_s evs_metrics_stream_t;
/* *out is new: release with evs_metrics_stream_free. 0, UV_EINVAL or UV_ENOMEM. */
int evs_metrics_stream_new(evs_metrics_t *reg, evs_metrics_stream_t **out);
/* The next slice, whole lines of at least min_bytes (a series more at most) unless the end
 * comes first: *out is a new malloc'd NUL-terminated buffer (caller frees), *len its length.
 * At the end *out is NULL and *len 0. 0 or UV_ENOMEM (the stream may be freed, not resumed). */
int evs_metrics_stream_next(evs_metrics_stream_t *st, size_t min_bytes, char **out, size_t *len);
/* Streams of reg not yet freed (scrapes in progress). */
size_t evs_metrics_streams(const evs_metrics_t *reg);
/* 1 once the stream has returned its last slice. */
int evs_metrics_stream_done(const evs_metrics_stream_t *st);
void evs_metrics_stream_free(evs_metrics_stream_t *st);

/* Formats a sample value as Prometheus/Go does (strconv 'g', shortest; +Inf, -Inf, NaN).
 * buf must hold EVS_METRICS_FLOAT_BUF bytes; returns the length. */
#define EVS_METRICS_FLOAT_BUF 32
size_t evs_metrics_format_float(char *buf, double v);

/* client_golang's DefBuckets. */
#define EVS_METRICS_DEFAULT_BUCKETS_N 11
extern const double EVS_METRICS_DEFAULT_BUCKETS[EVS_METRICS_DEFAULT_BUCKETS_N];

#endif
