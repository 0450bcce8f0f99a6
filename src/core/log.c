/* Structured logs: logfmt or JSON, one write(2) per record. */
#include "evscale/log.h"
#include "evscale/error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile int evs__log_level = EVS_LOG_INFO;
static volatile int evs__log_format = EVS_LOG_LOGFMT;
static volatile int evs__log_fd = 2;

static const char *const evs__level_names[] = {"debug", "info", "warn", "error", "off"};

void evs_log_set_level(evs_log_level_t level) { evs__log_level = level; }
void evs_log_set_format(evs_log_format_t format) { evs__log_format = format; }
evs_log_level_t evs_log_get_level(void) { return (evs_log_level_t)evs__log_level; }
int evs_log_enabled(evs_log_level_t level) { return (int)level >= evs__log_level; }
void evs_log_set_fd(int fd) { evs__log_fd = fd; }

const char *evs_log_level_name(evs_log_level_t level) {
  if ((unsigned)level > EVS_LOG_OFF)
    return "unknown";
  return evs__level_names[level];
}

int evs_log_parse_level(const char *s, evs_log_level_t *out) {
  for (int i = 0; i <= EVS_LOG_ERROR; i++) {
    if (strcasecmp(s, evs__level_names[i]) == 0) {
      *out = (evs_log_level_t)i;
      return 0;
    }
  }
  if (strcasecmp(s, "warning") == 0) {
    *out = EVS_LOG_WARN;
    return 0;
  }
  return UV_EINVAL;
}

int evs_log_parse_format(const char *s, evs_log_format_t *out) {
  if (strcasecmp(s, "logfmt") == 0)
    *out = EVS_LOG_LOGFMT;
  else if (strcasecmp(s, "json") == 0)
    *out = EVS_LOG_JSON;
  else
    return UV_EINVAL;
  return 0;
}

/* A bounded appender: writes past the end are dropped and remembered, so formatting never
 * overflows and the caller can mark the record as truncated. */
typedef struct {
  char *buf;
  size_t cap, len;
  int full;
} evs__out_t;

static void evs__put(evs__out_t *o, const char *s, size_t n) {
  if (o->len + n >= o->cap) {
    n = o->cap > o->len + 1 ? o->cap - o->len - 1 : 0;
    o->full = 1;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void evs__putc(evs__out_t *o, char c) { evs__put(o, &c, 1); }

static void evs__printf(evs__out_t *o, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0)
    evs__put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* JSON string body: escapes quotes, backslashes and control bytes. */
static void evs__json_str(evs__out_t *o, const char *s) {
  evs__putc(o, '"');
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      evs__putc(o, '\\');
      evs__putc(o, (char)c);
    } else if (c == '\n') {
      evs__put(o, "\\n", 2);
    } else if (c == '\t') {
      evs__put(o, "\\t", 2);
    } else if (c < 0x20 || c == 0x7f) {
      evs__printf(o, "\\u%04x", c);
    } else {
      evs__putc(o, (char)c);
    }
  }
  evs__putc(o, '"');
}

/* logfmt value: bare when it is a plain token, quoted (with JSON-style escapes) otherwise. */
static void evs__logfmt_str(evs__out_t *o, const char *s) {
  int plain = s && *s;
  for (const char *p = s; plain && *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
      plain = 0;
  }
  if (plain)
    evs__put(o, s, strlen(s));
  else
    evs__json_str(o, s ? s : "");
}

static void evs__value(evs__out_t *o, evs_log_format_t fmt, const evs_log_kv_t *kv) {
  switch (kv->type) {
  case EVS_KV_T_STR:
    if (fmt == EVS_LOG_JSON)
      evs__json_str(o, kv->v.s ? kv->v.s : "");
    else
      evs__logfmt_str(o, kv->v.s);
    break;
  case EVS_KV_T_SECRET:
    if (fmt == EVS_LOG_JSON)
      evs__json_str(o, "<redacted>");
    else
      evs__put(o, "<redacted>", 10);
    break;
  case EVS_KV_T_INT:
    evs__printf(o, "%" PRId64, kv->v.i);
    break;
  case EVS_KV_T_UINT:
    evs__printf(o, "%" PRIu64, kv->v.u);
    break;
  case EVS_KV_T_DBL:
    if (kv->v.d != kv->v.d || kv->v.d - kv->v.d != 0) /* NaN or Inf: JSON has no literal */
      evs__json_str(o, kv->v.d != kv->v.d ? "NaN" : (kv->v.d > 0 ? "+Inf" : "-Inf"));
    else
      evs__printf(o, "%.17g", kv->v.d);
    break;
  case EVS_KV_T_BOOL:
    evs__put(o, kv->v.b ? "true" : "false", kv->v.b ? 4 : 5);
    break;
  case EVS_KV_T_ERR:
    if (fmt == EVS_LOG_JSON)
      evs__json_str(o, evs_strerror((int)kv->v.i));
    else
      evs__logfmt_str(o, evs_strerror((int)kv->v.i));
    break;
  }
}

static void evs__field(evs__out_t *o, evs_log_format_t fmt, int first, const char *key) {
  if (fmt == EVS_LOG_JSON) {
    if (!first)
      evs__putc(o, ',');
    evs__json_str(o, key);
    evs__putc(o, ':');
  } else {
    if (!first)
      evs__putc(o, ' ');
    evs__put(o, key, strlen(key));
    evs__putc(o, '=');
  }
}

size_t evs_log_format_record(char *buf, size_t cap, evs_log_format_t fmt, const char *ts,
                             evs_log_level_t level, const char *msg, const evs_log_kv_t *kvs,
                             size_t n) {
  evs__out_t o = {buf, cap, 0, 0};
  if (cap == 0)
    return 0;
  /* Leave room for the truncation marker and the newline. */
  o.cap = cap > 8 ? cap - 6 : cap;
  if (fmt == EVS_LOG_JSON)
    evs__putc(&o, '{');
  evs__field(&o, fmt, 1, "ts");
  if (fmt == EVS_LOG_JSON)
    evs__json_str(&o, ts);
  else
    evs__put(&o, ts, strlen(ts));
  evs__field(&o, fmt, 0, "level");
  evs__put(&o, fmt == EVS_LOG_JSON ? "\"" : "", fmt == EVS_LOG_JSON);
  evs__put(&o, evs_log_level_name(level), strlen(evs_log_level_name(level)));
  evs__put(&o, fmt == EVS_LOG_JSON ? "\"" : "", fmt == EVS_LOG_JSON);
  evs__field(&o, fmt, 0, "msg");
  if (fmt == EVS_LOG_JSON)
    evs__json_str(&o, msg);
  else
    evs__json_str(&o, msg); /* messages are prose: always quoted in logfmt */
  for (size_t i = 0; i < n; i++) {
    evs__field(&o, fmt, 0, kvs[i].key ? kvs[i].key : "?");
    evs__value(&o, fmt, &kvs[i]);
    if (kvs[i].type == EVS_KV_T_ERR) {
      char key[96];
      snprintf(key, sizeof key, "%s_code", kvs[i].key ? kvs[i].key : "err");
      evs__field(&o, fmt, 0, key);
      if (fmt == EVS_LOG_JSON)
        evs__json_str(&o, evs_err_name((int)kvs[i].v.i));
      else
        evs__logfmt_str(&o, evs_err_name((int)kvs[i].v.i));
    }
  }
  o.cap = cap;
  if (o.full) {
    /* A truncated JSON record must still parse: close what the marker leaves open. */
    const char *mark = fmt == EVS_LOG_JSON ? "\"...\"}" : " ...";
    evs__put(&o, mark, strlen(mark));
  } else if (fmt == EVS_LOG_JSON) {
    evs__putc(&o, '}');
  }
  evs__putc(&o, '\n');
  o.buf[o.len] = '\0';
  return o.len;
}

void evs_log_emit(evs_log_level_t level, const char *msg, const evs_log_kv_t *kvs, size_t n) {
  char ts[96];
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now.tv_nsec / 1000000));
  char buf[4096];
  size_t len = evs_log_format_record(buf, sizeof buf, (evs_log_format_t)evs__log_format, ts, level,
                                     msg, kvs, n);
  /* One write per record keeps lines whole when pool threads log too; a short write to a
   * full pipe is dropped rather than blocking the loop. */
  ssize_t w = write(evs__log_fd, buf, len);
  (void)w;
}
