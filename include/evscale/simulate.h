/* `evscale simulate SCALEDOBJECT.yaml READINGS.csv [options]`: replays a CSV of trigger readings
 * through the same ScaledObject model, decision engine and circuit breaker the controller runs,
 * and prints the replica timeline with the reason for every change and every breaker trip/close.
 * Pure apart from reading the two files and printing; time is simulated.
 *
 * Readings CSV (RFC 4180, strict; see csv.h): a header row naming the columns `time`, `trigger`,
 * `value` and optionally `error`, in any order, nothing else.
 *  - time: seconds from the start (decimal, may be fractional, >= 0), rows in non-decreasing
 *    time order; rows with the same time are applied together, then one decision is made;
 *  - trigger: the trigger's `name`; for a trigger without a name, its index in spec.triggers
 *    (0-based). A name wins over an index;
 *  - value: the backend's raw answer (a decimal number, or NaN, +Inf, -Inf as Prometheus
 *    writes them; out of float64 range is an error, as strconv.ParseFloat), turned into KEDA's
 *    value, activity and error by the trigger type's conversion (reading.h), as the live
 *    scalers do: redis, the list length (a whole number >= 0); prometheus, the sample (NaN/±Inf
 *    are 0 with ignoreNullValues, else a failed read); cron, the window test (0 outside, above
 *    0 inside: the value is then desiredReplicas). May be empty only when error is set;
 *  - error: empty, or a message: the read failed (value is then ignored).
 * A trigger's reading stays in force until its next row (the scaler's last reading).
 *
 * Simulation: decisions happen at every distinct reading time and, in between, whenever the
 * engine (cooldown, stabilization window, policy period) or the breaker (end of its cooldown)
 * asks to look again, until the last reading (or --until). Writes take effect at once (ready =
 * current = desired). Time 0 is an arbitrary wall-clock instant (2023-11-14T22:13:20Z) at which
 * the ScaledObject was created. While the breaker is open the fallback HPA holds the target;
 * CPU is not simulated, so it is assumed to keep max(current, fallback_replicas) within
 * [1, maxReplicaCount].
 *
 * Options: --replicas N (start count; default minReplicaCount), --format text|json,
 * --until SECONDS, --no-breaker, --max-scale-events N (breaker: events per minute, default 3),
 * --breaker-cooldown SECONDS (default 60), --fallback-replicas N (default 10).
 *
 * Output, one row per change: time, replicas before and after, event and detail.
 *  - text: aligned columns `TIME  FROM  TO  EVENT  DETAIL`, time in seconds with 3 decimals;
 *  - json: JSON Lines, one object per row:
 *    {"time":12.5,"from":1,"to":4,"event":"Metrics","detail":"..."}.
 * Events: Start (first row), the engine's reason names (Activate, Deactivate, Metrics,
 * Fallback, ToMin, Clamp, PausedReplicas, …, see engine.h), BreakerTrip (the write was refused;
 * the fallback HPA takes over: to = what it holds), BreakerScaleToOne (the "at least 1" write
 * before the hand-over), BreakerClose (cooldown over: the engine resumes), End (last row).
 *
 * Exit codes: 0 ok, 1 input errors (each printed as file:line:col: message), 2 usage. */
#ifndef EVSCALE_SIMULATE_H
#define EVSCALE_SIMULATE_H

#include <stdio.h>

/* argv[0] = "simulate"; prints to stdout / stderr. Returns the exit code. */
int evs_simulate_main(int argc, char **argv);

/* The same, printing to out / err (tests use memory streams). */
int evs_simulate_run(int argc, char **argv, FILE *out, FILE *err);

#endif
