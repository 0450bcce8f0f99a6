/* Whole-file reads of small files that an operator or a volume mount controls: the configuration
 * (also through a ConfigMap's "..data" link), tz database files, and later the Kubernetes service
 * account's token and CA files.
 *
 * Why a module of its own: open(2) of a FIFO blocks until a writer comes, and read(2) of
 * /dev/zero never ends, so a naive reader hangs a thread-pool thread (or the process before its
 * loop runs) for good. Here every read opens with O_NONBLOCK, checks with fstat that the path is
 * a regular file, refuses anything else with a clear error, and caps the size (issue 9).
 *
 * Errors (besides the open/read errors of libuv, e.g. UV_ENOENT, UV_EACCES):
 *   UV_EISDIR      the path is a directory
 *   UV_EFTYPE      a FIFO, socket, character or block device (anything but a regular file)
 *   EVS_ETOOBIG    larger than the caller's max_bytes
 *   EVS_ECANCELED  evs_file_read_cancel was called (async only)
 *   UV_ENOMEM
 * evs_file_strerror words them for a message that already names the file. */
#ifndef EVSCALE_FILE_H
#define EVSCALE_FILE_H

#include <stddef.h>
#include <uv.h>

/* A ConfigMap holds at most about 1 MiB, the normal top for a configuration; the cap leaves
 * room above it for a file mounted some other way, and refuses what no configuration is. */
#define EVS_FILE_CONFIG_MAX (4u << 20)

typedef struct evs_file_read_s evs_file_read_t;

/* Runs exactly once per started read, from the loop (never from inside evs_file_read), also
 * after evs_file_read_cancel (status EVS_ECANCELED). status 0: buf holds the whole file, len
 * bytes plus a NUL after them; buf is borrowed, valid only during the call (copy what you keep).
 * Otherwise buf is NULL and len 0. The request is freed when the callback returns. */
typedef void (*evs_file_read_cb)(evs_file_read_t *req, int status, const char *buf, size_t len,
                                 void *data);

/* Reads the whole of `path` (copied) through libuv's thread pool (uv_fs_open, uv_fs_fstat,
 * uv_fs_read, uv_fs_close), at most max_bytes (0 = EVS_FILE_CONFIG_MAX). On success *out
 * (optional, may be NULL) is the in-flight request, valid until its callback has run. A
 * synchronous failure returns a UV_E* code and cb never runs. */
int evs_file_read(uv_loop_t *loop, const char *path, size_t max_bytes, evs_file_read_cb cb,
                  void *data, evs_file_read_t **out);

/* Asks an in-flight read to stop: a step not yet started in the thread pool is cancelled, a
 * step running finishes, the file is closed, and the callback runs once with EVS_ECANCELED.
 * Safe at any time before the callback has run (not after: the request is gone), including
 * twice and from inside other callbacks. */
void evs_file_read_cancel(evs_file_read_t *req);

/* The same checks, synchronously, for code that runs before (or without) a loop: start-up,
 * check-config, simulate. Never blocks on a FIFO or device. On success *buf is new (free()),
 * NUL-terminated after *len bytes. On failure *buf is NULL, *len 0 and an error above returns. */
int evs_file_read_sync(const char *path, size_t max_bytes, char **buf, size_t *len);

/* A static message for an error of the readers above, worded for "<file>: cannot read: %s"
 * ("not a regular file (a FIFO, socket or device)", "is a directory", "permission denied",
 * "no such file or directory", "larger than the size limit", ...). Never NULL. */
const char *evs_file_strerror(int err);

#endif
