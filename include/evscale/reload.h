/* The configuration reload watcher: one async object on the loop that re-reads the file when it
 * changes and hands the caller a freshly validated configuration (or every error in it).
 *
 * What triggers a re-read:
 *  - a change in the file's DIRECTORY (uv_fs_event_t): a direct write or an editor's rename of
 *    the file itself, or a ConfigMap update, where the kubelet writes a new timestamped
 *    directory, points "..data_tmp" at it and renames it over "..data" (the file is a symlink
 *    through "..data", so the file's own name sees no event; kubernetes/kubernetes
 *    pkg/volume/util/atomic_writer.go, commit 00e11024cf8ce5ae5b75ec122545f69b7e42c3f6);
 *  - SIGHUP, when opts.sighup is set (the watcher then owns a uv_signal_t; leave it unset if the
 *    application owns SIGHUP and call evs_reload_trigger from its handler instead);
 *  - evs_reload_trigger().
 * Triggers are debounced (opts.debounce_ms, default 150 ms): the kubelet's swap and an editor's
 * save are several events. The file is read OFF the loop thread (file.h: uv_fs_* through the
 * thread pool; a FIFO, device or directory swapped in is refused, not waited on), then parsed and
 * validated on the loop (a few KiB: microseconds).
 * A file whose bytes are identical to the last one seen (FNV-1a 64 hash) is not a reload: no
 * callback. Otherwise the callback runs exactly once per attempt.
 *
 * Start-up reads the file synchronously with evs_config_load_file before the loop runs; pass its
 * source_hash as opts.last_hash so the first event does not "reload" the same bytes. */
#ifndef EVSCALE_RELOAD_H
#define EVSCALE_RELOAD_H

#include <uv.h>

#include "evscale/config.h"

typedef struct evs_reload_s evs_reload_t;

/* status 0: cfg is new (the callee owns it: apply it after evs_config_diff_reload, or free it),
 * diag is empty. status EVS_EINVALCFG, or a read error of file.h (UV_EFTYPE for a FIFO or device,
 * UV_EISDIR, EVS_ETOOBIG, UV_ENOENT, UV_EACCES, ...): cfg is NULL and diag
 * (borrowed, valid during the call) says why, with positions. status EVS_ECANCELED: an attempt
 * was in flight when evs_reload_close was called (cfg NULL, diag empty). */
typedef void (*evs_reload_cb)(evs_reload_t *r, int status, evs_config_t *cfg,
                              const evs_diag_t *diag, void *data);

typedef struct {
  const char *path;   /* copied */
  char **envp;        /* borrowed; must outlive the watcher (usually `environ`) */
  uint64_t last_hash; /* source_hash of the configuration in use, if have_hash */
  int have_hash;
  int sighup;           /* 1 = the watcher handles SIGHUP itself */
  int no_watch;         /* 1 = no directory watch (SIGHUP / evs_reload_trigger only) */
  uint64_t debounce_ms; /* 0 = 150 */
} evs_reload_opts_t;

/* Starts watching. On success *out is new (close with evs_reload_close). A synchronous failure
 * (directory missing, no inotify) returns a UV_E* code; cb never runs then. */
int evs_reload_start(uv_loop_t *loop, const evs_reload_opts_t *opts, evs_reload_cb cb, void *data,
                     evs_reload_t **out);
/* Schedules a re-read (debounced like a file event). 0, or EVS_ESTATE after close. */
int evs_reload_trigger(evs_reload_t *r);
/* Stops and frees the watcher from its last uv_close callback (run the loop to finish). May be
 * called from inside the callback. An attempt in flight ends with EVS_ECANCELED. */
void evs_reload_close(evs_reload_t *r);

#endif
