/* Per-type conversion of a backend's answer (include/evscale/reading.h for the sources). */
#include "evscale/reading.h"

#include <math.h>
#include <uv.h>

#include "evscale/error.h"

static void ok(evs_conv_t *out, double value, int active) {
  *out = (evs_conv_t){value, active, 0, NULL};
}

int evs_reading_redis(int64_t list_length, int64_t activation_list_length, evs_conv_t *out) {
  if (list_length < 0)
    return UV_EINVAL;
  /* float64(listLen) for the metric, the int64 comparison for activity */
  ok(out, (double)list_length, list_length > activation_list_length);
  return 0;
}

int evs_reading_prometheus(double value, double activation_threshold, int ignore_null_values,
                           evs_conv_t *out) {
  if (isnan(value) || isinf(value)) {
    if (ignore_null_values) {
      /* `return 0, nil`: the 0 then goes through `val > ActivationThreshold` */
      ok(out, 0, 0 > activation_threshold);
      return 0;
    }
    /* fmt.Errorf("prometheus query returns %f", v): Go prints NaN, +Inf, -Inf */
    *out = (evs_conv_t){0, 0, EVS_EMETRIC,
                        isnan(value) ? "prometheus query returns NaN"
                        : value > 0  ? "prometheus query returns +Inf"
                                     : "prometheus query returns -Inf"};
    return 0;
  }
  ok(out, value, value > activation_threshold);
  return 0;
}

int evs_reading_cron(int in_window, int64_t desired_replicas, evs_conv_t *out) {
  ok(out, in_window ? (double)desired_replicas : 0, in_window != 0);
  return 0;
}
