/* evs_strerror / evs_err_name: one table for evscale's codes, libuv's for the rest. */
#include "evscale/error.h"

static int evs__is_own(int err) { return err <= EVS__ERR_BASE && err > EVS__ERR_LAST; }

const char *evs_strerror(int err) {
  switch (err) {
#define EVS__ERR_MSG(name, off, msg)                                                               \
  case EVS_##name:                                                                                 \
    return msg;
    EVS_ERRNO_MAP(EVS__ERR_MSG)
#undef EVS__ERR_MSG
  default:
    break;
  }
  if (evs__is_own(err))
    return "unknown evscale error";
  if (err == 0)
    return "success";
  /* uv_strerror allocates (and leaks) a message for a code it does not know; uv_strerror_r
   * writes into our buffer. Thread-local: libuv's pool threads may log too. */
  static _Thread_local char buf[96];
  return uv_strerror_r(err, buf, sizeof buf);
}

const char *evs_err_name(int err) {
  switch (err) {
#define EVS__ERR_NAME(name, off, msg)                                                              \
  case EVS_##name:                                                                                 \
    return #name;
    EVS_ERRNO_MAP(EVS__ERR_NAME)
#undef EVS__ERR_NAME
  default:
    break;
  }
  if (evs__is_own(err))
    return "EUNKNOWN";
  if (err == 0)
    return "OK";
  return uv_err_name(err);
}
