/* Whole-file reads that refuse FIFOs, devices, sockets and directories (see file.h for why). */
#include "evscale/file.h"
#include "evscale/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_NONBLOCK makes open(2) of a FIFO return at once instead of waiting for a writer; for a
 * regular file it changes nothing. O_NOCTTY: a terminal path must not become our tty. */
#define EVS__OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
#define EVS__FIRST_CHUNK 4096

enum { EVS__OPENING, EVS__STATING, EVS__READING, EVS__CLOSING };

struct evs_file_read_s {
  uv_loop_t *loop;
  uv_fs_t fs; /* one step at a time: open, fstat, read..., close */
  uv_file fd;
  int step;
  int status; /* the first error; delivered after the file is closed */
  int canceled;
  char *buf;
  size_t len, cap, max;
  evs_file_read_cb cb;
  void *data;
};

static size_t evs__max(size_t max_bytes) { return max_bytes ? max_bytes : EVS_FILE_CONFIG_MAX; }

/* open(2) of a UNIX socket fails with ENXIO: for a path that exists it means "not a file". */
static int evs__open_err(int err) { return err == UV_ENXIO ? UV_EFTYPE : err; }

/* The one rule both readers apply to what fstat says. */
static int evs__check(uint64_t mode, uint64_t size, size_t max) {
  if (S_ISDIR(mode))
    return UV_EISDIR;
  if (!S_ISREG(mode))
    return UV_EFTYPE;
  return size > max ? EVS_ETOOBIG : 0;
}

const char *evs_file_strerror(int err) {
  switch (err) {
  case UV_EFTYPE:
    return "not a regular file (a FIFO, socket or device)";
  case UV_EISDIR:
    return "is a directory, not a file";
  case UV_EACCES:
  case UV_EPERM:
    return "permission denied";
  case UV_ENOENT:
    return "no such file or directory";
  case EVS_ETOOBIG:
    return "larger than the size limit";
  default:
    return evs_strerror(err);
  }
}

/* ---- asynchronous ---- */

static void evs__finish(evs_file_read_t *r) {
  int status = r->canceled ? EVS_ECANCELED : r->status;
  if (status == 0)
    r->buf[r->len] = '\0';
  r->cb(r, status, status == 0 ? r->buf : NULL, status == 0 ? r->len : 0, r->data);
  free(r->buf);
  free(r);
}

static void evs__on_close(uv_fs_t *req) {
  evs_file_read_t *r = req->data;
  uv_fs_req_cleanup(req);
  evs__finish(r);
}

static void evs__close(evs_file_read_t *r, int status) {
  if (r->status == 0)
    r->status = status;
  r->step = EVS__CLOSING;
  if (uv_fs_close(r->loop, &r->fs, r->fd, evs__on_close) != 0)
    evs__finish(r);
}

static void evs__on_read(uv_fs_t *req);

static void evs__read_more(evs_file_read_t *r) {
  if (r->canceled)
    return evs__close(r, EVS_ECANCELED);
  if (r->len > r->max)
    return evs__close(r, EVS_ETOOBIG);
  /* Room for one byte past max (to see that a file grew beyond it) and the final NUL. */
  if (r->cap - r->len < 2) {
    size_t cap = r->cap ? r->cap * 2 : EVS__FIRST_CHUNK;
    if (cap > r->max + 2)
      cap = r->max + 2;
    char *nb = realloc(r->buf, cap);
    if (nb == NULL)
      return evs__close(r, UV_ENOMEM);
    r->buf = nb;
    r->cap = cap;
  }
  size_t room = r->cap - r->len - 1;
  uv_buf_t b = uv_buf_init(r->buf + r->len, room > 1u << 30 ? 1u << 30 : (unsigned)room);
  r->step = EVS__READING;
  int rc = uv_fs_read(r->loop, &r->fs, r->fd, &b, 1, (int64_t)r->len, evs__on_read);
  if (rc != 0)
    evs__close(r, rc);
}

static void evs__on_read(uv_fs_t *req) {
  evs_file_read_t *r = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (n <= 0)
    return evs__close(r, (int)n);
  r->len += (size_t)n;
  evs__read_more(r);
}

static void evs__on_fstat(uv_fs_t *req) {
  evs_file_read_t *r = req->data;
  int rc = req->result < 0 ? (int)req->result : 0;
  uint64_t mode = req->statbuf.st_mode, size = req->statbuf.st_size;
  uv_fs_req_cleanup(req);
  if (rc == 0)
    rc = evs__check(mode, size, r->max);
  if (rc == 0 && !r->canceled) {
    /* The size is a hint (a file may change while read): start with it, grow if needed. */
    r->cap = size + 2 <= r->max + 2 ? (size_t)size + 2 : r->max + 2;
    if ((r->buf = malloc(r->cap)) == NULL)
      rc = UV_ENOMEM;
  }
  if (rc != 0 || r->canceled)
    return evs__close(r, rc);
  evs__read_more(r);
}

static void evs__on_open(uv_fs_t *req) {
  evs_file_read_t *r = req->data;
  ssize_t fd = req->result;
  uv_fs_req_cleanup(req);
  if (fd < 0) {
    r->status = evs__open_err((int)fd);
    return evs__finish(r);
  }
  r->fd = (uv_file)fd;
  if (r->canceled)
    return evs__close(r, EVS_ECANCELED);
  r->step = EVS__STATING;
  int rc = uv_fs_fstat(r->loop, &r->fs, r->fd, evs__on_fstat);
  if (rc != 0)
    evs__close(r, rc);
}

int evs_file_read(uv_loop_t *loop, const char *path, size_t max_bytes, evs_file_read_cb cb,
                  void *data, evs_file_read_t **out) {
  if (out)
    *out = NULL;
  if (loop == NULL || path == NULL || cb == NULL)
    return UV_EINVAL;
  evs_file_read_t *r = calloc(1, sizeof *r);
  if (r == NULL)
    return UV_ENOMEM;
  r->loop = loop;
  r->fd = -1;
  r->max = evs__max(max_bytes);
  r->cb = cb;
  r->data = data;
  r->fs.data = r;
  r->step = EVS__OPENING;
  int rc = uv_fs_open(loop, &r->fs, path, EVS__OPEN_FLAGS, 0, evs__on_open);
  if (rc != 0) {
    free(r);
    return rc;
  }
  if (out)
    *out = r;
  return 0;
}

void evs_file_read_cancel(evs_file_read_t *r) {
  if (r == NULL || r->canceled)
    return;
  r->canceled = 1;
  /* A step still queued (the pool busy with slow reads elsewhere) need not run at all; its
   * callback then sees UV_ECANCELED and the chain ends as for any error. Never the close: the
   * descriptor must be released. */
  if (r->step != EVS__CLOSING)
    (void)uv_cancel((uv_req_t *)&r->fs);
}

/* ---- synchronous ---- */

static int evs__read_fd(int fd, size_t max, size_t hint, char **buf, size_t *len) {
  size_t cap = (hint < max ? hint : max) + 2, n = 0;
  char *b = malloc(cap);
  if (b == NULL)
    return UV_ENOMEM;
  for (;;) {
    if (cap - n < 2) {
      size_t nc = cap * 2 > max + 2 ? max + 2 : cap * 2;
      char *nb = nc > cap ? realloc(b, nc) : NULL;
      if (nb == NULL) {
        free(b);
        return nc > cap ? UV_ENOMEM : EVS_ETOOBIG;
      }
      b = nb;
      cap = nc;
    }
    ssize_t got = read(fd, b + n, cap - n - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      int err = -errno;
      free(b);
      return err;
    }
    if (got == 0)
      break;
    n += (size_t)got;
    if (n > max) {
      free(b);
      return EVS_ETOOBIG;
    }
  }
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;
}

int evs_file_read_sync(const char *path, size_t max_bytes, char **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  size_t max = evs__max(max_bytes);
  int fd = open(path, EVS__OPEN_FLAGS);
  if (fd < 0)
    return evs__open_err(-errno);
  struct stat st;
  int rc = fstat(fd, &st) != 0 ? -errno : evs__check(st.st_mode, (uint64_t)st.st_size, max);
  if (rc == 0)
    rc = evs__read_fd(fd, max, (size_t)st.st_size, buf, len);
  close(fd);
  return rc;
}
