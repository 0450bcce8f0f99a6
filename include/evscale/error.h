/* evscale error codes.
 *
 * Every function that can fail returns 0 or a negative code, as libuv does. Codes from libuv
 * (UV_E*, negative errno values) pass through unchanged; evscale's own codes live in a range of
 * their own below EVS__ERR_BASE so the two never collide. One X-macro generates the enum, the
 * names and the messages (libuv/libuv: include/uv.h UV_ERRNO_MAP). */
#ifndef EVSCALE_ERROR_H
#define EVSCALE_ERROR_H

#include <uv.h>

#define EVS__ERR_BASE (-30000)

/* XX(name, offset, message) */
#define EVS_ERRNO_MAP(XX)                                                                          \
  XX(EPARSE, 1, "malformed input")                                                                 \
  XX(EINVALCFG, 2, "invalid configuration")                                                        \
  XX(ETIMEDOUT, 3, "operation timed out")                                                          \
  XX(ETOOBIG, 4, "size limit exceeded")                                                            \
  XX(EHTTP, 5, "HTTP protocol error")                                                              \
  XX(ETLS, 6, "TLS error")                                                                         \
  XX(ECERT, 7, "certificate verification failed")                                                  \
  XX(ECLOSED, 8, "connection closed by peer")                                                      \
  XX(ECANCELED, 9, "operation canceled")                                                           \
  XX(ENOTFOUND, 10, "not found")                                                                   \
  XX(EREDIS, 11, "Redis error reply")                                                              \
  XX(EJSON, 12, "malformed JSON")                                                                  \
  XX(EYAML, 13, "malformed YAML")                                                                  \
  XX(ESTATUS, 14, "unexpected HTTP status")                                                        \
  XX(ERATELIMIT, 15, "rate limited")                                                               \
  XX(EUNSUPPORTED, 16, "not supported")                                                            \
  XX(ESTATE, 17, "invalid state for this operation")                                               \
  XX(ERANGE, 18, "value out of range")                                                             \
  XX(ETZ, 19, "unknown or malformed time zone")                                                    \
  XX(ECRON, 20, "malformed cron expression")                                                       \
  XX(EFORMULA, 21, "malformed formula")                                                            \
  XX(EMETRIC, 22, "metric unavailable")

typedef enum {
#define EVS__ERR_ENUM(name, off, msg) EVS_##name = EVS__ERR_BASE - (off),
  EVS_ERRNO_MAP(EVS__ERR_ENUM)
#undef EVS__ERR_ENUM
      EVS__ERR_LAST = EVS__ERR_BASE - 1000
} evs_errno_t;

/* A static message for any code: evscale's own, libuv's, or "unknown error". Never NULL. */
const char *evs_strerror(int err);
/* A static short name ("EPARSE", "ECONNREFUSED"). Never NULL. */
const char *evs_err_name(int err);

#endif
