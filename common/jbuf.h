/* jbuf.h -- a small growable buffer for writing compact JSON by hand, where building
 * a cJSON tree only to print it costs more than the work it describes (the audit
 * metadata of every request). Strings are escaped per RFC 8259; bytes that are not
 * valid UTF-8 become U+FFFD so every reader can parse what is written. An allocation
 * failure is sticky: later calls do nothing and jbuf_finish returns NULL. */
#ifndef AIRLOCK_JBUF_H
#define AIRLOCK_JBUF_H

#include <stddef.h>
#include <stdint.h>

struct jbuf {
    char *p;
    size_t len, cap;
    int oom;
};

void jbuf_init(struct jbuf *b);
/* jbuf_finish -- the NUL-terminated text (owned by the caller, free()), or NULL after
 * an allocation failure; *len gets its length when len is not NULL. */
char *jbuf_finish(struct jbuf *b, size_t *len);
void jbuf_free(struct jbuf *b);

void jbuf_raw(struct jbuf *b, const char *s, size_t n);
/* opening and closing brackets; values and keys add the comma between siblings */
void jbuf_open(struct jbuf *b, char c);  /* '{' or '[' */
void jbuf_close(struct jbuf *b, char c); /* '}' or ']' */
void jbuf_key(struct jbuf *b, const char *key); /* a member name and its ':' */
void jbuf_str(struct jbuf *b, const char *s);    /* NULL writes null */
void jbuf_strn(struct jbuf *b, const char *s, size_t n);
void jbuf_u64(struct jbuf *b, uint64_t v);
void jbuf_i64(struct jbuf *b, int64_t v);
void jbuf_bool(struct jbuf *b, int v);
void jbuf_null(struct jbuf *b);
/* jbuf_num -- a finite double, shortest of %.15g/%.17g that reads back exactly;
 * non-finite numbers (which JSON cannot hold) are written as null. */
void jbuf_num(struct jbuf *b, double v);
/* jbuf_fixed -- a finite double with `decimals` digits after the point (timings) */
void jbuf_fixed(struct jbuf *b, double v, int decimals);

#endif
