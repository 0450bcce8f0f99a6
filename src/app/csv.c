/* Strict RFC 4180 reader (include/evscale/csv.h): one pass over the input, unquoted text copied
 * into one buffer that is never longer than the input plus one NUL per field. */
#include "evscale/csv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evscale/buf.h"
#include "evscale/error.h"

typedef struct {
  const char *buf;
  size_t len, pos;
  uint32_t line;
  size_t line_start;
  evs_csv_t *out;
  size_t text_len, text_cap;
  size_t fields_cap;
  size_t cur_cols; /* fields in the record being read */
  int rc;
  uint32_t *err_line, *err_col;
  char *err;
  size_t errcap;
} csv_reader_t;

static int fail(csv_reader_t *r, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(csv_reader_t *r, size_t at, const char *fmt, ...) {
  *r->err_line = r->line;
  *r->err_col = (uint32_t)(at - r->line_start + 1);
  if (r->err && r->errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errcap, fmt, ap);
    va_end(ap);
  }
  return r->rc = EVS_EPARSE;
}

static int put_char(csv_reader_t *r, char c) {
  if (evs_buf_reserve((void **)&r->out->text, &r->text_cap, r->text_len + 1, 1, 256) != 0)
    return r->rc = UV_ENOMEM;
  r->out->text[r->text_len++] = c;
  return 0;
}

static int new_field(csv_reader_t *r, size_t start) {
  evs_csv_t *o = r->out;
  size_t n = o->n_records * (o->n_cols ? o->n_cols : 0) + r->cur_cols;
  if (o->n_records > 0 && r->cur_cols == o->n_cols)
    return fail(r, start, "record has more than the header's %zu fields", o->n_cols);
  if (evs_buf_reserve((void **)&o->fields, &r->fields_cap, n + 1, sizeof *o->fields, 64) != 0)
    return r->rc = UV_ENOMEM;
  o->fields[n] = (evs_csv_field_t){
      .off = r->text_len, .line = r->line, .col = (uint32_t)(start - r->line_start + 1)};
  r->cur_cols++;
  return 0;
}

/* A quoted field: from the opening quote to the closing one, "" standing for ". */
static int read_quoted(csv_reader_t *r) {
  size_t open = r->pos++;
  uint32_t open_line = r->line;
  size_t open_ls = r->line_start;
  for (;;) {
    if (r->pos >= r->len) {
      r->line = open_line;
      r->line_start = open_ls;
      return fail(r, open, "quoted field is not closed");
    }
    char c = r->buf[r->pos];
    if (c == '\0')
      return fail(r, r->pos, "NUL byte in field");
    if (c == '"') {
      if (r->pos + 1 < r->len && r->buf[r->pos + 1] == '"') {
        r->pos += 2;
        if (put_char(r, '"'))
          return r->rc;
        continue;
      }
      r->pos++;
      break;
    }
    if (c == '\n') {
      r->line++;
      r->line_start = r->pos + 1;
    }
    r->pos++;
    if (put_char(r, c))
      return r->rc;
  }
  if (r->pos < r->len && !strchr(",\r\n", r->buf[r->pos]))
    return fail(r, r->pos, "expected ',' or end of line after a closing quote");
  return 0;
}

static int read_plain(csv_reader_t *r) {
  while (r->pos < r->len) {
    char c = r->buf[r->pos];
    if (c == ',' || c == '\n' || c == '\r')
      return 0;
    if (c == '"')
      return fail(r, r->pos, "quote inside an unquoted field (quote the whole field)");
    if (c == '\0')
      return fail(r, r->pos, "NUL byte in field");
    if (put_char(r, c))
      return r->rc;
    r->pos++;
  }
  return 0;
}

/* Ends a record at a line end (or EOF); checks the field count against the header. */
static int end_record(csv_reader_t *r, size_t at) {
  evs_csv_t *o = r->out;
  if (o->n_records == 0)
    o->n_cols = r->cur_cols;
  else if (r->cur_cols != o->n_cols)
    return fail(r, at, "record has %zu fields, the header has %zu", r->cur_cols, o->n_cols);
  o->n_records++;
  r->cur_cols = 0;
  return 0;
}

static int read_line_end(csv_reader_t *r) {
  size_t at = r->pos;
  if (r->buf[r->pos] == '\r') {
    if (r->pos + 1 >= r->len || r->buf[r->pos + 1] != '\n')
      return fail(r, r->pos, "bare CR (lines end with LF or CRLF)");
    r->pos++;
  }
  r->pos++;
  if (end_record(r, at))
    return r->rc;
  r->line++;
  r->line_start = r->pos;
  return 0;
}

static int read_all(csv_reader_t *r) {
  if (r->len == 0)
    return fail(r, 0, "empty file");
  while (r->pos < r->len) {
    size_t start = r->pos;
    if (new_field(r, start))
      return r->rc;
    if (r->buf[r->pos] == '"' ? read_quoted(r) : read_plain(r))
      return r->rc;
    if (put_char(r, '\0'))
      return r->rc;
    if (r->pos >= r->len)
      return end_record(r, r->pos);
    if (r->buf[r->pos] == ',') {
      r->pos++;
      if (r->pos >= r->len) { /* "a," at EOF: one more, empty field */
        if (new_field(r, r->pos) || put_char(r, '\0'))
          return r->rc;
        return end_record(r, r->pos);
      }
      continue;
    }
    if (read_line_end(r))
      return r->rc;
  }
  return 0;
}

int evs_csv_parse(const char *buf, size_t len, evs_csv_t *out, uint32_t *err_line,
                  uint32_t *err_col, char *err, size_t errcap) {
  uint32_t dl, dc;
  memset(out, 0, sizeof *out);
  if (err && errcap)
    err[0] = '\0';
  csv_reader_t r = {.buf = buf,
                    .len = buf ? len : 0,
                    .line = 1,
                    .out = out,
                    .err_line = err_line ? err_line : &dl,
                    .err_col = err_col ? err_col : &dc,
                    .err = err,
                    .errcap = errcap};
  if (read_all(&r) != 0) {
    evs_csv_free(out);
    return r.rc;
  }
  return 0;
}

void evs_csv_free(evs_csv_t *csv) {
  free(csv->text);
  free(csv->fields);
  memset(csv, 0, sizeof *csv);
}

const evs_csv_field_t *evs_csv_at(const evs_csv_t *csv, size_t record, size_t col) {
  if (record >= csv->n_records || col >= csv->n_cols)
    return NULL;
  return &csv->fields[record * csv->n_cols + col];
}

const char *evs_csv_text(const evs_csv_t *csv, size_t record, size_t col) {
  const evs_csv_field_t *f = evs_csv_at(csv, record, col);
  return f ? csv->text + f->off : NULL;
}
