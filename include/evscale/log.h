/* Structured logging: one line per record, logfmt (default) or JSON, to stderr.
 *
 *   EVS_LOG_INFO("config reloaded", EVS_KV_STR("file", path), EVS_KV_INT("scaled_objects", n));
 *
 * Values are typed so the JSON form stays valid; EVS_KV_SECRET never prints its value (it
 * prints "<redacted>"), so a token or password can be named in a log without leaking.
 * The level and format are process-wide and may change at reload; the loop thread is the only
 * writer, but libuv's pool threads may log too, so one record is written with one write(2). */
#ifndef EVSCALE_LOG_H
#define EVSCALE_LOG_H

#include <stdint.h>
#include <stddef.h>

typedef enum {
  EVS_LOG_DEBUG = 0,
  EVS_LOG_INFO = 1,
  EVS_LOG_WARN = 2,
  EVS_LOG_ERROR = 3,
  EVS_LOG_OFF = 4
} evs_log_level_t;

typedef enum { EVS_LOG_LOGFMT = 0, EVS_LOG_JSON = 1 } evs_log_format_t;

typedef enum {
  EVS_KV_T_STR,
  EVS_KV_T_INT,
  EVS_KV_T_UINT,
  EVS_KV_T_DBL,
  EVS_KV_T_BOOL,
  EVS_KV_T_ERR, /* an int error code: printed as its message, plus <key>_code=<name> */
  EVS_KV_T_SECRET
} evs_kv_type_t;

typedef struct {
  const char *key;
  evs_kv_type_t type;
  union {
    const char *s;
    int64_t i;
    uint64_t u;
    double d;
    int b;
  } v;
} evs_log_kv_t;

#define EVS_KV_STR(k, val)                                                                         \
  { .key = (k), .type = EVS_KV_T_STR, .v.s = (val) }
#define EVS_KV_INT(k, val)                                                                         \
  { .key = (k), .type = EVS_KV_T_INT, .v.i = (int64_t)(val) }
#define EVS_KV_UINT(k, val)                                                                        \
  { .key = (k), .type = EVS_KV_T_UINT, .v.u = (uint64_t)(val) }
#define EVS_KV_DBL(k, val)                                                                         \
  { .key = (k), .type = EVS_KV_T_DBL, .v.d = (double)(val) }
#define EVS_KV_BOOL(k, val)                                                                        \
  { .key = (k), .type = EVS_KV_T_BOOL, .v.b = !!(val) }
#define EVS_KV_ERR(k, val)                                                                         \
  { .key = (k), .type = EVS_KV_T_ERR, .v.i = (int64_t)(val) }
#define EVS_KV_SECRET(k)                                                                           \
  { .key = (k), .type = EVS_KV_T_SECRET }

/* The leading {0} lets the macro take no key/value at all ("{ {0}, }" is valid C). */
#define EVS_LOG(lvl, msg, ...)                                                                     \
  do {                                                                                             \
    if (evs_log_enabled(lvl)) {                                                                    \
      const evs_log_kv_t evs__kvs[] = {{0}, __VA_ARGS__};                                          \
      evs_log_emit((lvl), (msg), evs__kvs + 1, sizeof evs__kvs / sizeof evs__kvs[0] - 1);          \
    }                                                                                              \
  } while (0)
#define EVS_LOG_DEBUG(msg, ...) EVS_LOG(EVS_LOG_DEBUG, msg, __VA_ARGS__)
#define EVS_LOG_INFO(msg, ...) EVS_LOG(EVS_LOG_INFO, msg, __VA_ARGS__)
#define EVS_LOG_WARN(msg, ...) EVS_LOG(EVS_LOG_WARN, msg, __VA_ARGS__)
#define EVS_LOG_ERROR(msg, ...) EVS_LOG(EVS_LOG_ERROR, msg, __VA_ARGS__)

void evs_log_set_level(evs_log_level_t level);
void evs_log_set_format(evs_log_format_t format);
evs_log_level_t evs_log_get_level(void);
int evs_log_enabled(evs_log_level_t level);
/* Parses "debug|info|warn|error" (and "warning"); returns 0 or UV_EINVAL. */
int evs_log_parse_level(const char *s, evs_log_level_t *out);
/* Parses "logfmt|json"; returns 0 or UV_EINVAL. */
int evs_log_parse_format(const char *s, evs_log_format_t *out);
const char *evs_log_level_name(evs_log_level_t level);

/* Redirects output to fd (default 2). Tests use a pipe or file to read what was logged. */
void evs_log_set_fd(int fd);

void evs_log_emit(evs_log_level_t level, const char *msg, const evs_log_kv_t *kvs, size_t n);

/* Formats one record into buf (always NUL-terminated, truncated with "..." when too small) and
 * returns its length; what evs_log_emit writes. Exposed for tests. */
size_t evs_log_format_record(char *buf, size_t cap, evs_log_format_t fmt, const char *ts,
                             evs_log_level_t level, const char *msg, const evs_log_kv_t *kvs,
                             size_t n);

#endif
