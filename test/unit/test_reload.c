/* The reload watcher on a real loop: file writes, bad files, identical bytes, the kubelet's
 * ..data symlink swap, SIGHUP, debouncing and clean teardown (uv_loop_close returns 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evscale/config.h"
#include "evscale/error.h"
#include "evscale/reload.h"

/* Generous: a shared 2-core machine under ASan. */
#define GUARD_MS 20000

typedef struct fx_s fx_t;
struct fx_s {
  uv_loop_t loop;
  uv_timer_t guard, step;
  evs_reload_t *r;
  char dir[256], path[512];
  int calls, want_calls, timed_out, finished, steps;
  int status;
  evs_config_t *cfg;
  char diag[512];
  size_t ndiag;
  void (*on_step)(fx_t *fx, int n);
};

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void fx_close_timer(uv_timer_t *t) {
  if (!uv_is_closing((uv_handle_t *)t))
    uv_close((uv_handle_t *)t, NULL);
}

static void fx_finish(fx_t *fx) {
  if (fx->finished)
    return;
  fx->finished = 1;
  evs_reload_close(fx->r);
  fx_close_timer(&fx->guard);
  fx_close_timer(&fx->step);
}

static void on_reload(evs_reload_t *r, int status, evs_config_t *cfg, const evs_diag_t *diag,
                      void *data) {
  fx_t *fx = data;
  assert_ptr_equal(r, fx->r);
  fx->calls++;
  fx->status = status;
  evs_config_free(fx->cfg);
  fx->cfg = cfg;
  fx->ndiag = diag ? diag->n : 0;
  fx->diag[0] = '\0';
  if (fx->ndiag)
    evs_diag_format(diag, 0, fx->diag, sizeof fx->diag);
  if (fx->calls >= fx->want_calls)
    fx_finish(fx);
}

static void on_guard(uv_timer_t *t) {
  fx_t *fx = t->data;
  fx->timed_out = 1;
  fx_finish(fx);
}

static void on_step(uv_timer_t *t) {
  fx_t *fx = t->data;
  if (fx->on_step && !fx->finished)
    fx->on_step(fx, fx->steps++);
}

/* A temporary directory with config.yaml holding `initial`, loaded as at start-up. */
static void fx_init(fx_t *fx, const char *initial) {
  memset(fx, 0, sizeof *fx);
  fx->want_calls = 1;
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  snprintf(fx->dir, sizeof fx->dir, "/tmp/evs_reload_XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  snprintf(fx->path, sizeof fx->path, "%s/config.yaml", fx->dir);
  if (initial)
    write_file(fx->path, initial);
  uv_timer_init(&fx->loop, &fx->guard);
  uv_timer_init(&fx->loop, &fx->step);
  fx->guard.data = fx->step.data = fx;
  uv_timer_start(&fx->guard, on_guard, GUARD_MS, 0);
}

static void fx_start(fx_t *fx, evs_reload_opts_t opts) {
  opts.path = fx->path;
  if (!opts.have_hash) {
    evs_config_t *cfg = NULL;
    if (evs_config_load_file(fx->path, NULL, &cfg, NULL) == 0) {
      opts.last_hash = cfg->source_hash;
      opts.have_hash = 1;
      evs_config_free(cfg);
    }
  }
  assert_int_equal(evs_reload_start(&fx->loop, &opts, on_reload, fx, &fx->r), 0);
}

/* Runs until the watcher and the timers are closed; every handle must be gone. */
static void fx_run(fx_t *fx) {
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(fx->timed_out, 0);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void fx_done(fx_t *fx) {
  evs_config_free(fx->cfg);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  assert_int_equal(system(cmd), 0);
}

static void fx_steps(fx_t *fx, void (*fn)(fx_t *, int), uint64_t first_ms, uint64_t every_ms) {
  fx->on_step = fn;
  uv_timer_start(&fx->step, on_step, first_ms, every_ms);
}

/* ---- a direct write ---- */

static void step_write_debug(fx_t *fx, int n) {
  if (n == 0)
    write_file(fx->path, "log:\n  level: debug\n");
}

static void file_write_reloads(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  level: info\n");
  fx_start(&fx, (evs_reload_opts_t){0});
  fx_steps(&fx, step_write_debug, 50, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, 0);
  assert_int_equal(fx.ndiag, 0);
  assert_non_null(fx.cfg);
  assert_int_equal(fx.cfg->log.level, 0);
  fx_done(&fx);
}

/* ---- a bad file ---- */

static void step_write_bad(fx_t *fx, int n) {
  if (n == 0)
    write_file(fx->path, "log:\n  level: loud\n");
}

static void bad_file_reports_errors(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  level: info\n");
  fx_start(&fx, (evs_reload_opts_t){0});
  fx_steps(&fx, step_write_bad, 50, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, EVS_EINVALCFG);
  assert_null(fx.cfg);
  assert_int_equal(fx.ndiag, 1);
  char want[700];
  snprintf(want, sizeof want,
           "%s:2:10: log.level: invalid value 'loud': must be one of debug, info, warn, error",
           fx.path);
  assert_string_equal(fx.diag, want);
  fx_done(&fx);
}

/* ---- identical bytes are not a reload ---- */

static void step_same_then_changed(fx_t *fx, int n) {
  if (n == 0)
    write_file(fx->path, "log:\n  level: info\n"); /* the same bytes: no callback */
  else if (n == 1)
    write_file(fx->path, "log:\n  level: warn\n");
}

static void identical_file_is_not_a_reload(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  level: info\n");
  fx_start(&fx, (evs_reload_opts_t){0});
  /* The second write comes well after the first one's debounce (150 ms) and read. */
  fx_steps(&fx, step_same_then_changed, 50, 1000);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, 0);
  assert_int_equal(fx.cfg->log.level, 2);
  assert_true(fx.steps >= 2);
  fx_done(&fx);
}

/* ---- debouncing: a burst of writes is one reload of the last content ---- */

static void step_burst(fx_t *fx, int n) {
  if (n != 0)
    return;
  write_file(fx->path, "log:\n  level: debug\n");
  write_file(fx->path, "log:\n  level: warn\n");
  write_file(fx->path, "log:\n  level: error\n");
}

static void step_burst_then_wait(fx_t *fx, int n) {
  step_burst(fx, n);
  if (n == 3)
    fx_finish(fx); /* 50 + 3 * 500 ms: any second reload would have happened by now */
}

static void burst_is_debounced(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  level: info\n");
  fx.want_calls = 2; /* ends by the step timer, unless a second callback comes */
  fx_start(&fx, (evs_reload_opts_t){0});
  fx_steps(&fx, step_burst_then_wait, 50, 500);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.cfg->log.level, 3);
  fx_done(&fx);
}

/* ---- a ConfigMap update: the kubelet's ..data symlink swap ---- */

static void kubelet_dir(fx_t *fx, const char *stamp, const char *content) {
  char d[600], f[700];
  snprintf(d, sizeof d, "%s/%s", fx->dir, stamp);
  assert_int_equal(mkdir(d, 0755), 0);
  snprintf(f, sizeof f, "%s/config.yaml", d);
  write_file(f, content);
}

static void step_swap(fx_t *fx, int n) {
  if (n != 0)
    return;
  /* The kubelet's AtomicWriter.Write, steps 5-11 (kubernetes/kubernetes
   * pkg/volume/util/atomic_writer.go, commit 00e11024cf8ce5ae5b75ec122545f69b7e42c3f6): a new
   * "..<timestamp>" directory with the payload, a "..data_tmp" symlink to it, an atomic rename
   * over "..data", then the old timestamped directory is removed. The user-visible
   * config.yaml -> ..data/config.yaml symlink itself never changes. */
  kubelet_dir(fx, "..2026_11_23_08_00_00.2", "log:\n  level: error\n");
  char tmp[600], data[600], cmd[700];
  snprintf(tmp, sizeof tmp, "%s/..data_tmp", fx->dir);
  snprintf(data, sizeof data, "%s/..data", fx->dir);
  assert_int_equal(symlink("..2026_11_23_08_00_00.2", tmp), 0);
  assert_int_equal(rename(tmp, data), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s/..2026_11_23_07_00_00.1'", fx->dir);
  assert_int_equal(system(cmd), 0);
}

static void configmap_symlink_swap_reloads(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, NULL);
  /* The layout AtomicWriter leaves (same source as step_swap). */
  kubelet_dir(&fx, "..2026_11_23_07_00_00.1", "log:\n  level: info\n");
  char data[600];
  snprintf(data, sizeof data, "%s/..data", fx.dir);
  assert_int_equal(symlink("..2026_11_23_07_00_00.1", data), 0);
  assert_int_equal(symlink("..data/config.yaml", fx.path), 0);
  fx_start(&fx, (evs_reload_opts_t){0});
  fx_steps(&fx, step_swap, 50, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, 0);
  assert_int_equal(fx.cfg->log.level, 3);
  fx_done(&fx);
}

/* ---- SIGHUP ---- */

static void step_change_then_hup(fx_t *fx, int n) {
  if (n == 0) {
    write_file(fx->path, "log:\n  format: json\n");
    assert_int_equal(kill(getpid(), SIGHUP), 0);
  }
}

static void sighup_reloads(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  format: logfmt\n");
  /* No directory watch: only the signal can make this reload. */
  fx_start(&fx, (evs_reload_opts_t){.sighup = 1, .no_watch = 1});
  fx_steps(&fx, step_change_then_hup, 50, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, 0);
  assert_int_equal(fx.cfg->log.format, 1);
  fx_done(&fx);
}

static void step_change_then_trigger(fx_t *fx, int n) {
  if (n == 0) {
    write_file(fx->path, "log:\n  format: json\n");
    assert_int_equal(evs_reload_trigger(fx->r), 0);
  }
}

static void trigger_reloads_and_missing_file_is_an_error(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  format: logfmt\n");
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1});
  fx_steps(&fx, step_change_then_trigger, 50, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.cfg->log.format, 1);
  fx_done(&fx);

  /* The file disappears: the attempt reports the read error. */
  fx_init(&fx, "log:\n  format: logfmt\n");
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1});
  assert_int_equal(unlink(fx.path), 0);
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, UV_ENOENT);
  assert_null(fx.cfg);
  char want[700];
  snprintf(want, sizeof want, "%s: cannot read: no such file or directory", fx.path);
  assert_string_equal(fx.diag, want);
  fx_done(&fx);
}

/* ---- teardown ---- */

static void close_with_pending_trigger(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log:\n  level: info\n");
  fx_start(&fx, (evs_reload_opts_t){.sighup = 1});
  write_file(fx.path, "log:\n  level: debug\n");
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_finish(&fx); /* closed before the debounce fires: no callback, nothing leaks */
  /* The object lives until the loop runs its close callbacks; triggers are refused. */
  assert_int_equal(evs_reload_trigger(fx.r), EVS_ESTATE);
  fx_run(&fx);
  assert_int_equal(fx.calls, 0);
  fx_done(&fx);
}

/* The debounce timer (1 ms) starts the read; the step timer, due at the same time and started
 * after it, runs right after in the same loop turn, while the read is certainly in the thread
 * pool: closing then must end the attempt as EVS_ECANCELED (once), not as a reload. */
static void step_close(fx_t *fx, int n) {
  if (n == 0)
    evs_reload_close(fx->r);
  fx_close_timer(&fx->step);
}

static void close_during_read_cancels(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, "log: {level: warn}\n");
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1, .debounce_ms = 1, .have_hash = 1});
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_steps(&fx, step_close, 1, 0);
  fx_run(&fx);
  assert_int_equal(fx.calls, 1);
  assert_int_equal(fx.status, EVS_ECANCELED);
  assert_null(fx.cfg);
  fx_done(&fx);
}

/* A FIFO as the config file (issue 9: it used to block a pool thread for good, so no later
 * reload ever happened): refused at once with a message naming the file; once a regular file is
 * back, the next trigger reloads. */
static void step_fifo_then_file(fx_t *fx, int n) {
  (void)n;
  if (fx->calls != 1)
    return;
  assert_int_equal(fx->status, UV_EFTYPE);
  char want[700];
  snprintf(want, sizeof want, "%s: cannot read: not a regular file (a FIFO, socket or device)",
           fx->path);
  assert_string_equal(fx->diag, want);
  assert_int_equal(unlink(fx->path), 0);
  write_file(fx->path, "log: {level: warn}\n");
  assert_int_equal(evs_reload_trigger(fx->r), 0);
  fx_close_timer(&fx->step);
}

static void fifo_is_refused_and_later_reloads_work(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, NULL);
  assert_int_equal(mkfifo(fx.path, 0600), 0);
  fx.want_calls = 2;
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1, .debounce_ms = 1, .have_hash = 1});
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_steps(&fx, step_fifo_then_file, 20, 20);
  fx_run(&fx);
  assert_int_equal(fx.calls, 2);
  assert_int_equal(fx.status, 0);
  assert_non_null(fx.cfg);
  assert_int_equal(fx.cfg->log.level, 2);
  fx_done(&fx);
}

/* A directory or /dev/zero behind the path: refused with its reason, no hang. */
static void directory_and_dev_zero_are_refused(void **state) {
  (void)state;
  fx_t fx;
  fx_init(&fx, NULL);
  assert_int_equal(mkdir(fx.path, 0700), 0);
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1, .debounce_ms = 1, .have_hash = 1});
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_run(&fx);
  assert_int_equal(fx.status, UV_EISDIR);
  assert_non_null(strstr(fx.diag, "is a directory"));
  fx_done(&fx);

  fx_init(&fx, NULL);
  assert_int_equal(symlink("/dev/zero", fx.path), 0);
  fx_start(&fx, (evs_reload_opts_t){.no_watch = 1, .debounce_ms = 1, .have_hash = 1});
  assert_int_equal(evs_reload_trigger(fx.r), 0);
  fx_run(&fx);
  assert_int_equal(fx.status, UV_EFTYPE);
  fx_done(&fx);
}

static void never_called(evs_reload_t *r, int status, evs_config_t *cfg, const evs_diag_t *diag,
                         void *data) {
  (void)r, (void)status, (void)cfg, (void)diag, (void)data;
  fail_msg("a failed start must never call back");
}

static void start_on_missing_directory_fails(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  evs_reload_t *r = (evs_reload_t *)1;
  int calls = 0;
  int rc = evs_reload_start(&loop, &(evs_reload_opts_t){.path = "/nonexistent/dir/c.yaml"},
                            never_called, &calls, &r);
  assert_int_equal(rc, UV_ENOENT);
  assert_null(r);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(file_write_reloads),
      cmocka_unit_test(bad_file_reports_errors),
      cmocka_unit_test(identical_file_is_not_a_reload),
      cmocka_unit_test(burst_is_debounced),
      cmocka_unit_test(configmap_symlink_swap_reloads),
      cmocka_unit_test(sighup_reloads),
      cmocka_unit_test(trigger_reloads_and_missing_file_is_an_error),
      cmocka_unit_test(close_with_pending_trigger),
      cmocka_unit_test(close_during_read_cancels),
      cmocka_unit_test(fifo_is_refused_and_later_reloads_work),
      cmocka_unit_test(directory_and_dev_zero_are_refused),
      cmocka_unit_test(start_on_missing_directory_fails),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
