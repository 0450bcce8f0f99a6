/* A strict RFC 4180 CSV reader for `evscale simulate` readings files (outside input).
 *
 * Accepted: fields separated by ',', records ended by CRLF or LF (the last one may be
 * unterminated), fields quoted with '"' where a quote inside is doubled ("a ""b"""). Every record
 * must have as many fields as the first one (the header). Rejected, with the line and 1-based
 * column of the offending byte: a quote inside an unquoted field, anything but ',' or a line end
 * after a closing quote, an unterminated quoted field, a bare CR, a NUL byte, a record with a
 * different field count, an empty file. A final empty line (a file that ends in a newline) is
 * the end of the file, not a record. */
#ifndef EVSCALE_CSV_H
#define EVSCALE_CSV_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  size_t off;    /* offset of the field's NUL-terminated, unquoted text in evs_csv_t.text */
  uint32_t line; /* 1-based line of the field's first byte */
  uint32_t col;  /* 1-based byte column of the field's first byte (the quote when quoted) */
} evs_csv_field_t;

typedef struct {
  char *text;              /* every field's text, NUL-terminated; owned */
  evs_csv_field_t *fields; /* n_records × n_cols, row-major; owned */
  size_t n_records;        /* including the header */
  size_t n_cols;
} evs_csv_t;

/* Parses buf[0..len). On success returns 0 and fills *out (free with evs_csv_free). On bad input
 * returns EVS_EPARSE with *err_line / *err_col (1-based) and a message in err (errcap bytes,
 * NUL-terminated); *out is then empty. UV_ENOMEM on allocation failure. */
int evs_csv_parse(const char *buf, size_t len, evs_csv_t *out, uint32_t *err_line,
                  uint32_t *err_col, char *err, size_t errcap);
void evs_csv_free(evs_csv_t *csv);

/* The field at (record, column): borrowed. NULL when out of range. */
const evs_csv_field_t *evs_csv_at(const evs_csv_t *csv, size_t record, size_t col);
const char *evs_csv_text(const evs_csv_t *csv, size_t record, size_t col);

#endif
