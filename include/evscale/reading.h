/* What a trigger's backend answered, turned into KEDA's reading: the metric value, the
 * trigger's activity and its error, per trigger type, exactly as KEDA's scalers do in
 * GetMetricsAndActivity. Pure functions, no I/O, no allocation: the live scalers and `evscale
 * simulate` call the same code, so a raw value means the same thing in both.
 *
 * Sources: kedacore/keda v2.20.2 (68a5b5028f35b22d50597c69819ab32c4e92f21a)
 *  - pkg/scalers/redis_scaler.go GetMetricsAndActivity: value = float64(listLen) where listLen is
 *    the int64 the length script returns (LLEN/ZCARD/SCARD/HLEN, 0 for a missing key); active
 *    iff listLen > activationListLength (int64, strictly);
 *  - pkg/scalers/prometheus_scaler.go ExecutePromQuery: the sample string through
 *    strconv.ParseFloat; NaN or ±Inf is 0 with ignoreNullValues (default true), else the error
 *    "prometheus query returns %f"; GetMetricsAndActivity: active iff val > activationThreshold
 *    (strictly, on the raw value: a negative value is active against a lower threshold although
 *    the HPA sees it as 0);
 *  - pkg/scalers/cron_scaler.go GetMetricsAndActivity: inside the window the value is
 *    desiredReplicas and the trigger is active, outside 0 and inactive.
 * The value returned is the raw value KEDA computes activity from; GenerateMetricInMili (negative,
 * NaN, Inf -> 0; milli precision) is the engine's step (engine_internal.h evs_engine__milli). */
#ifndef EVSCALE_READING_H
#define EVSCALE_READING_H

#include <stdint.h>

typedef struct {
  double value;          /* KEDA's metric value (before milli rounding) */
  int active;            /* the trigger's activity */
  int error;             /* 0, or EVS_EMETRIC: value and active are then 0 */
  const char *error_msg; /* static text when error != 0, else NULL */
} evs_conv_t;

/* redis: the list length the script returned. UV_EINVAL when it cannot be one (negative): the
 * caller's input is broken, not the backend. */
int evs_reading_redis(int64_t list_length, int64_t activation_list_length, evs_conv_t *out);

/* prometheus: the sample value as strconv.ParseFloat read it (NaN and ±Inf included). */
int evs_reading_prometheus(double value, double activation_threshold, int ignore_null_values,
                           evs_conv_t *out);

/* cron: in_window is the scaler's window test (cron.h); desired_replicas its metadata. */
int evs_reading_cron(int in_window, int64_t desired_replicas, evs_conv_t *out);

#endif
