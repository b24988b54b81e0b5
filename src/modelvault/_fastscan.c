/* The native part of `audit verify`'s scan (see auditscan.py): reads a SQLite log with
 * SQLite's own C API and checks, for each event in turn, what auditscan's Python loop checks
 * on its fast path: the sequence number, the link to the previous hash, the event hash over
 * the canonical body spliced from the columns (the stored JSON texts must be canonical as
 * canonical_json writes them), and computes the Merkle leaf, compares the stored leaf and the
 * actor commitment.
 *
 * It only ever accepts: an event it cannot accept on that fast path (an unexpected type, a
 * hash that does not match, a text that is not canonical, invalid UTF-8) ends the call, and
 * the Python scan judges that event exactly as it judges every event. So nothing here can
 * make a verdict differ from the Python code's; it only makes the common case fast.
 *
 * Hashing is OpenSSL's SHA-256 (libcrypto), reading is SQLite's C library (libsqlite3).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

enum {
    C_SEQ, C_TS, C_ACTOR, C_ACTION, C_PROJECT, C_MODEL, C_SUBJECT, C_BEFORE, C_AFTER,
    C_REASON, C_PREV, C_HASH, C_SCHEME, C_COMMITMENT, C_CLEAR, C_SALT, C_LEAF, N_COLUMNS
};

#define MAX_DEPTH 200      /* deeper JSON is left to Python */
#define MAX_INT_DIGITS 4300 /* Python's default limit on int <-> str conversion */

/* ---------- a growable byte buffer ---------- */

typedef struct {
    char *data;
    size_t len, cap;
    char *own; /* the heap block data points to, NULL while it points to caller's storage */
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->own, cap);
    if (data == NULL) return -1;
    if (b->own == NULL && b->len) memcpy(data, b->data, b->len);
    b->data = b->own = data;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *s, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#define BUF_LIT(b, lit) buf_add((b), (lit), sizeof(lit) - 1)

/* ---------- UTF-8 ---------- */

/* Is s[0..n) valid UTF-8 as Python's strict decoder takes it (no overlong forms, no
 * surrogates, nothing past U+10FFFF)? */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            while (i + 8 <= n) { /* eight ASCII bytes at a time */
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL) break;
                i += 8;
            }
            continue;
        }
        size_t need;
        unsigned int cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + need >= n) return 0; /* the sequence is cut short */
        for (size_t k = 1; k <= need; k++) {
            unsigned char d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* ---------- JSON strings as json's encode_basestring writes them ---------- */

static const char HEX[] = "0123456789abcdef";

/* Append s[0..n) (valid UTF-8) as a JSON string, escaped as encode_basestring does:
 * '"' and '\\', the short forms \b \f \n \r \t, other characters below 0x20 as \u00xx; the
 * rest (non-ASCII included) as it is. */
static unsigned char ESCAPED[256]; /* 1 for the bytes a JSON string escapes */
static signed char HEXVAL[256];    /* a hex digit's value, -1 for any other byte */

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        ESCAPED[c] = c < 0x20 || c == '"' || c == '\\';
        HEXVAL[c] = (signed char)(c >= '0' && c <= '9'   ? c - '0'
                                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                         : -1);
    }
}

static int add_string(Buf *b, const unsigned char *s, size_t n) {
    if (buf_reserve(b, n * 6 + 2) < 0) return -1;
    char *out = b->data + b->len;
    *out++ = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (!ESCAPED[c]) continue;
        memcpy(out, s + run, i - run);
        out += i - run;
        run = i + 1;
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\f': *out++ = 'f'; break;
        case '\n': *out++ = 'n'; break;
        case '\r': *out++ = 'r'; break;
        case '\t': *out++ = 't'; break;
        default:
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = HEX[c >> 4];
            *out++ = HEX[c & 0xF];
        }
    }
    memcpy(out, s + run, n - run);
    out += n - run;
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    return 0;
}

/* ---------- is a text canonical JSON (canonical_json's output for the value it holds)? ---------- */

typedef struct {
    const unsigned char *s;
    size_t n, i;
} Json;

static int json_value(Json *j, int depth);

/* A string at j->i, canonical (only the escapes encode_basestring writes), its unescaped
 * UTF-8 appended to *key when key is not NULL. Returns 1 (canonical), 0 (not), -1 (error). */
static int json_string(Json *j, Buf *key) {
    if (j->i >= j->n || j->s[j->i] != '"') return 0;
    j->i++;
    size_t run = j->i;
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            if (key && buf_add(key, (const char *)j->s + run, j->i - run) < 0) return -1;
            j->i++;
            return 1;
        }
        if (c < 0x20) return 0; /* a raw control character: json.loads refuses it */
        if (c != '\\') {
            j->i++;
            continue;
        }
        if (key && buf_add(key, (const char *)j->s + run, j->i - run) < 0) return -1;
        if (j->i + 1 >= j->n) return 0;
        unsigned char e = j->s[j->i + 1], v;
        switch (e) {
        case '"': v = '"'; break;
        case '\\': v = '\\'; break;
        case 'b': v = '\b'; break;
        case 'f': v = '\f'; break;
        case 'n': v = '\n'; break;
        case 'r': v = '\r'; break;
        case 't': v = '\t'; break;
        case 'u': {
            /* only \u00xx (lower-case hex) for a control character without a short form */
            if (j->i + 5 >= j->n) return 0;
            const unsigned char *h = j->s + j->i + 2;
            if (h[0] != '0' || h[1] != '0') return 0;
            int hi = h[2] == '0' ? 0 : h[2] == '1' ? 1 : -1;
            int lo = (h[3] >= '0' && h[3] <= '9') ? h[3] - '0'
                     : (h[3] >= 'a' && h[3] <= 'f') ? h[3] - 'a' + 10
                                                    : -1;
            if (hi < 0 || lo < 0) return 0;
            v = (unsigned char)(hi * 16 + lo);
            if (v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t') return 0;
            if (key && buf_add(key, (const char *)&v, 1) < 0) return -1;
            j->i += 6;
            run = j->i;
            continue;
        }
        default:
            return 0; /* \/ and the like: valid JSON, never written by canonical_json */
        }
        if (key && buf_add(key, (const char *)&v, 1) < 0) return -1;
        j->i += 2;
        run = j->i;
    }
    return 0;
}

/* A number at j->i: json's grammar, then canonical as Python writes it (an int without a
 * leading '-' on zero; a float only when repr(float(text)) gives the text back). */
static int json_number(Json *j) {
    size_t start = j->i;
    int is_float = 0;
    if (j->i < j->n && j->s[j->i] == '-') j->i++;
    if (j->i >= j->n) return 0;
    if (j->s[j->i] == '0') {
        j->i++;
    } else if (j->s[j->i] >= '1' && j->s[j->i] <= '9') {
        while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') j->i++;
    } else {
        return 0;
    }
    if (j->i < j->n && j->s[j->i] == '.') {
        is_float = 1;
        j->i++;
        size_t digits = j->i;
        while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') j->i++;
        if (j->i == digits) return 0;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        is_float = 1;
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) j->i++;
        size_t digits = j->i;
        while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') j->i++;
        if (j->i == digits) return 0;
    }
    size_t len = j->i - start;
    if (!is_float) {
        if (len == 2 && j->s[start] == '-' && j->s[start + 1] == '0') return 0;
        return len - (j->s[start] == '-') <= MAX_INT_DIGITS;
    }
    if (len > 64) return 0; /* never what repr writes */
    char text[72];
    memcpy(text, j->s + start, len);
    text[len] = '\0';
    char *end = NULL;
    double x = PyOS_string_to_double(text, &end, NULL);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != text + len) return 0;
    char *again = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (again == NULL) return -1;
    int same = strcmp(again, text) == 0; /* inf and nan come back as words: not canonical */
    PyMem_Free(again);
    return same;
}

static int json_literal(Json *j, const char *word, size_t n) {
    if (j->n - j->i < n || memcmp(j->s + j->i, word, n) != 0) return 0;
    j->i += n;
    return 1;
}

static int key_order(const Buf *a, const Buf *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->data, b->data, n);
    if (c != 0) return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static int json_object(Json *j, int depth) {
    j->i++; /* '{' */
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        return 1;
    }
    char room[2][64]; /* most keys fit here, without a trip to the heap */
    Buf keys[2] = {{room[0], 0, sizeof room[0], NULL}, {room[1], 0, sizeof room[1], NULL}};
    int have_prev = 0, cur = 0, result = 0;
    for (;;) {
        keys[cur].len = 0;
        int r = json_string(j, &keys[cur]);
        if (r != 1) {
            result = r;
            break;
        }
        /* keys strictly increasing by code point (UTF-8 byte order is code point order);
         * a repeated key would be written once */
        if (have_prev && key_order(&keys[1 - cur], &keys[cur]) >= 0) break;
        have_prev = 1;
        cur = 1 - cur;
        if (j->i >= j->n || j->s[j->i] != ':') break;
        j->i++;
        r = json_value(j, depth + 1);
        if (r != 1) {
            result = r;
            break;
        }
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == '}') {
            j->i++;
            result = 1;
        }
        break;
    }
    PyMem_Free(keys[0].own);
    PyMem_Free(keys[1].own);
    return result;
}

static int json_array(Json *j, int depth) {
    j->i++; /* '[' */
    if (j->i < j->n && j->s[j->i] == ']') {
        j->i++;
        return 1;
    }
    for (;;) {
        int r = json_value(j, depth + 1);
        if (r != 1) return r;
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == ']') {
            j->i++;
            return 1;
        }
        return 0;
    }
}

static int json_value(Json *j, int depth) {
    if (depth > MAX_DEPTH || j->i >= j->n) return 0;
    switch (j->s[j->i]) {
    case '{': return json_object(j, depth);
    case '[': return json_array(j, depth);
    case '"': return json_string(j, NULL);
    case 't': return json_literal(j, "true", 4);
    case 'f': return json_literal(j, "false", 5);
    case 'n': return json_literal(j, "null", 4);
    default: return json_number(j);
    }
}

/* 1: the text is canonical JSON; 0: it is not (or may not be); -1: out of memory. */
static int canonical_text(const unsigned char *s, size_t n) {
    Json j = {s, n, 0};
    int r = json_value(&j, 0);
    if (r != 1) return r;
    return j.i == n;
}

static PyObject *py_canonical(PyObject *self, PyObject *arg) {
    (void)self;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (s == NULL) return NULL;
    int r = canonical_text((const unsigned char *)s, (size_t)n);
    if (r < 0) return PyErr_NoMemory();
    return PyBool_FromLong(r);
}

/* ---------- hashing ---------- */

typedef struct {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
} Sha;

/* SHA-256, fetched once: EVP_sha256() would be looked up again on every digest */
static EVP_MD *SHA256_MD = NULL;

static int sha256(Sha *h, const void *a, size_t an, const void *b, size_t bn,
                  unsigned char out[32]) {
    unsigned int len = 0;
    return EVP_DigestInit_ex(h->ctx, h->md, NULL) == 1 &&
           EVP_DigestUpdate(h->ctx, a, an) == 1 &&
           (bn == 0 || EVP_DigestUpdate(h->ctx, b, bn) == 1) &&
           EVP_DigestFinal_ex(h->ctx, out, &len) == 1 && len == 32;
}

static int unhex(const unsigned char *s, size_t n, unsigned char *out, int lower_only) {
    if (n % 2) return 0;
    int bad = 0;
    for (size_t i = 0; i < n; i += 2) {
        int hi = HEXVAL[s[i]], lo = HEXVAL[s[i + 1]];
        bad |= hi | lo; /* negative when either is no hex digit */
        out[i / 2] = (unsigned char)((unsigned)(hi & 0xF) << 4 | (unsigned)(lo & 0xF));
    }
    if (bad < 0) return 0;
    if (lower_only)
        for (size_t i = 0; i < n; i++)
            if (s[i] >= 'A' && s[i] <= 'F') return 0;
    return 1;
}

static void tohex(const unsigned char *in, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 0xF];
    }
}

/* ---------- the scan ---------- */

typedef struct {
    const unsigned char *p;
    size_t n;
    int type;
} Col;

static void col(sqlite3_stmt *st, int i, Col *c) {
    c->type = sqlite3_column_type(st, i);
    if (c->type == SQLITE_TEXT) {
        c->p = sqlite3_column_text(st, i);
        c->n = (size_t)sqlite3_column_bytes(st, i);
    } else {
        c->p = NULL;
        c->n = 0;
    }
}

/* text (valid UTF-8), or NULL when *nullable* */
static int text_ok(const Col *c, int nullable) {
    if (c->type == SQLITE_NULL) return nullable;
    return c->type == SQLITE_TEXT && utf8_valid(c->p, c->n);
}

static int add_text_or_null(Buf *b, const Col *c) {
    if (c->type == SQLITE_NULL) return BUF_LIT(b, "null");
    return add_string(b, c->p, c->n);
}

static int add_raw_or_null(Buf *b, const Col *c) {
    if (c->type == SQLITE_NULL) return BUF_LIT(b, "null");
    return buf_add(b, (const char *)c->p, c->n);
}

typedef enum { ROW_OK, ROW_STOP, ROW_ERROR } RowResult;

typedef struct {
    Sha sha;
    Buf body;
    Buf leaves;
    char prev[64];
    long long expected;
    long long tree_size;
    int check_leaves;
    long long bad_leaf;
    PyObject *commit_fail; /* seqs whose clear actor does not match their commitment */
    PyObject *no_clear;    /* seqs of scheme 2 without a clear actor (erased, or removed) */
} Scan;

static int append_seq(PyObject *list, long long seq) {
    PyObject *n = PyLong_FromLongLong(seq);
    if (n == NULL) return -1;
    int r = PyList_Append(list, n);
    Py_DECREF(n);
    return r;
}

static RowResult one_row(Scan *s, sqlite3_stmt *st) {
    Col c[N_COLUMNS];
    if (sqlite3_column_type(st, C_SEQ) != SQLITE_INTEGER) return ROW_STOP;
    long long seq = sqlite3_column_int64(st, C_SEQ);
    if (seq != s->expected) return ROW_STOP;
    for (int i = 1; i < N_COLUMNS; i++) {
        if (i == C_SCHEME) continue;
        col(st, i, &c[i]);
    }
    if (sqlite3_column_type(st, C_SCHEME) != SQLITE_INTEGER) return ROW_STOP;
    long long scheme = sqlite3_column_int64(st, C_SCHEME);
    /* the link to the previous event, and the stored hash as lower-case hex */
    if (c[C_PREV].type != SQLITE_TEXT || c[C_PREV].n != 64 ||
        memcmp(c[C_PREV].p, s->prev, 64) != 0)
        return ROW_STOP;
    unsigned char stored[32];
    if (c[C_HASH].type != SQLITE_TEXT || c[C_HASH].n != 64 || !unhex(c[C_HASH].p, 64, stored, 1))
        return ROW_STOP;
    int committed;
    if (scheme == 2 && c[C_ACTOR].type == SQLITE_TEXT && c[C_ACTOR].n == 0) {
        committed = 1;
        if (!text_ok(&c[C_COMMITMENT], 0)) return ROW_STOP;
    } else if (scheme == 1) {
        committed = 0;
        if (!text_ok(&c[C_ACTOR], 0)) return ROW_STOP;
    } else {
        return ROW_STOP;
    }
    if (!text_ok(&c[C_TS], 0) || !text_ok(&c[C_ACTION], 0) || !text_ok(&c[C_SUBJECT], 0) ||
        !text_ok(&c[C_PROJECT], 1) || !text_ok(&c[C_MODEL], 1) || !text_ok(&c[C_REASON], 1) ||
        !text_ok(&c[C_BEFORE], 1) || !text_ok(&c[C_AFTER], 1))
        return ROW_STOP;
    /* the canonical body, keys in order (auditscan.scan builds the same) */
    Buf *b = &s->body;
    b->len = 0;
    char seqtext[24], *digits = seqtext + sizeof seqtext; /* seq > 0 here */
    for (unsigned long long v = (unsigned long long)seq; v; v /= 10) *--digits = (char)('0' + v % 10);
    size_t seqlen = (size_t)(seqtext + sizeof seqtext - digits);
    if (BUF_LIT(b, "{\"action\":") < 0 || add_string(b, c[C_ACTION].p, c[C_ACTION].n) < 0)
        return ROW_ERROR;
    if (committed) {
        if (BUF_LIT(b, ",\"actor_commitment\":") < 0 ||
            add_string(b, c[C_COMMITMENT].p, c[C_COMMITMENT].n) < 0)
            return ROW_ERROR;
    } else if (BUF_LIT(b, ",\"actor\":") < 0 || add_string(b, c[C_ACTOR].p, c[C_ACTOR].n) < 0) {
        return ROW_ERROR;
    }
    if (BUF_LIT(b, ",\"after\":") < 0 || add_raw_or_null(b, &c[C_AFTER]) < 0 ||
        BUF_LIT(b, ",\"before\":") < 0 || add_raw_or_null(b, &c[C_BEFORE]) < 0 ||
        BUF_LIT(b, ",\"model\":") < 0 || add_text_or_null(b, &c[C_MODEL]) < 0 ||
        BUF_LIT(b, ",\"prev_hash\":") < 0 || add_string(b, c[C_PREV].p, 64) < 0 ||
        BUF_LIT(b, ",\"project\":") < 0 || add_text_or_null(b, &c[C_PROJECT]) < 0 ||
        BUF_LIT(b, ",\"reason\":") < 0 || add_text_or_null(b, &c[C_REASON]) < 0)
        return ROW_ERROR;
    if (committed && BUF_LIT(b, ",\"scheme\":2") < 0) return ROW_ERROR;
    if (BUF_LIT(b, ",\"seq\":") < 0 || buf_add(b, digits, seqlen) < 0 ||
        BUF_LIT(b, ",\"subject\":") < 0 || add_string(b, c[C_SUBJECT].p, c[C_SUBJECT].n) < 0 ||
        BUF_LIT(b, ",\"ts\":") < 0 || add_string(b, c[C_TS].p, c[C_TS].n) < 0 ||
        BUF_LIT(b, "}") < 0)
        return ROW_ERROR;
    unsigned char digest[32];
    if (!sha256(&s->sha, b->data, b->len, NULL, 0, digest)) return ROW_ERROR;
    if (memcmp(digest, stored, 32) != 0) return ROW_STOP;
    for (int i = C_AFTER; i >= C_BEFORE; i--) {
        if (c[i].type == SQLITE_NULL) continue;
        int r = canonical_text(c[i].p, c[i].n);
        if (r < 0) return ROW_ERROR;
        if (r == 0) return ROW_STOP;
    }
    /* the Merkle leaf, and the stored one */
    unsigned char leaf[32];
    static const unsigned char zero = 0;
    if (!sha256(&s->sha, &zero, 1, stored, 32, leaf)) return ROW_ERROR;
    if (s->check_leaves && seq <= s->tree_size && s->bad_leaf == 0) {
        unsigned char kept[32];
        if (c[C_LEAF].type == SQLITE_NULL) {
            s->bad_leaf = seq;
        } else if (c[C_LEAF].type != SQLITE_TEXT || c[C_LEAF].n != 64 ||
                   !unhex(c[C_LEAF].p, 64, kept, 0)) {
            return ROW_STOP; /* an odd stored leaf: Python's own check says what it is */
        } else if (memcmp(kept, leaf, 32) != 0) {
            s->bad_leaf = seq;
        }
    }
    /* the clear actor against its commitment; a mismatch is reported, not judged here */
    if (committed) {
        int fine = 0;
        unsigned char salt[256], commit[32];
        char hex[64];
        if (c[C_CLEAR].type == SQLITE_TEXT && c[C_SALT].type == SQLITE_TEXT &&
            c[C_SALT].n <= 2 * sizeof salt && utf8_valid(c[C_CLEAR].p, c[C_CLEAR].n) &&
            unhex(c[C_SALT].p, c[C_SALT].n, salt, 0)) {
            if (!sha256(&s->sha, salt, c[C_SALT].n / 2, c[C_CLEAR].p, c[C_CLEAR].n, commit))
                return ROW_ERROR;
            tohex(commit, 32, hex);
            fine = c[C_COMMITMENT].n == 64 && memcmp(hex, c[C_COMMITMENT].p, 64) == 0;
        }
        if (!fine &&
            append_seq(c[C_CLEAR].type == SQLITE_NULL ? s->no_clear : s->commit_fail, seq) < 0)
            return ROW_ERROR;
    }
    if (buf_add(&s->leaves, (const char *)leaf, 32) < 0) return ROW_ERROR;
    memcpy(s->prev, c[C_HASH].p, 64);
    s->expected++;
    return ROW_OK;
}

PyDoc_STRVAR(scan_doc,
"scan(path, sql, first, end, prev, tree_size, check_leaves)\n"
"\n"
"Check events first..end of the SQLite database at *path*, read by *sql* (auditscan's\n"
"SELECT, its two parameters the first and last sequence number), event *first* linking to\n"
"*prev*. Stops at the first event the fast path cannot accept. Returns (accepted, leaves,\n"
"commit_fail, no_clear, bad_leaf, last): how many events were accepted, their Merkle leaves\n"
"(32 bytes each), the accepted scheme-2 events whose clear actor does not match their\n"
"commitment and those without a clear actor, the first accepted event within tree_size\n"
"whose stored leaf is wrong (0: none), and the hash the next event must link to.");

static PyObject *py_scan(PyObject *self, PyObject *args) {
    (void)self;
    const char *path, *sql, *prev;
    Py_ssize_t prev_len;
    long long first, end, tree_size;
    int check_leaves;
    if (!PyArg_ParseTuple(args, "ssLLs#Lp", &path, &sql, &first, &end, &prev, &prev_len,
                          &tree_size, &check_leaves))
        return NULL;
    if (prev_len != 64) {
        PyErr_SetString(PyExc_ValueError, "prev must be 64 hex characters");
        return NULL;
    }
    if (first < 1) {
        PyErr_SetString(PyExc_ValueError, "first must be a sequence number (1 or more)");
        return NULL;
    }
    Scan s;
    memset(&s, 0, sizeof s);
    memcpy(s.prev, prev, 64);
    s.expected = first;
    s.tree_size = tree_size;
    s.check_leaves = check_leaves;
    s.sha.md = SHA256_MD;
    s.sha.ctx = EVP_MD_CTX_new();
    s.commit_fail = PyList_New(0);
    s.no_clear = PyList_New(0);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    PyObject *result = NULL;
    if (s.sha.ctx == NULL || s.commit_fail == NULL || s.no_clear == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, 10000);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, first);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, end);
    if (rc != SQLITE_OK) {
        PyErr_Format(PyExc_OSError, "cannot read the audit log at %s: %s", path,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto done;
    }
    while (s.expected <= end) {
        if ((s.expected - first) % 4096 == 4095) {
            /* let the process's other threads run (a server answering requests) */
            Py_BEGIN_ALLOW_THREADS
            Py_END_ALLOW_THREADS
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            PyErr_Format(PyExc_OSError, "cannot read the audit log at %s: %s", path,
                         sqlite3_errmsg(db));
            goto done;
        }
        RowResult r = one_row(&s, st);
        if (r == ROW_ERROR) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            goto done;
        }
        if (r == ROW_STOP) break;
    }
    result = Py_BuildValue("Ly#OOLs#", s.expected - first, s.leaves.data ? s.leaves.data : "",
                           (Py_ssize_t)s.leaves.len, s.commit_fail, s.no_clear, s.bad_leaf,
                           s.prev, (Py_ssize_t)64);
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    EVP_MD_CTX_free(s.sha.ctx);
    PyMem_Free(s.body.own);
    PyMem_Free(s.leaves.own);
    Py_XDECREF(s.commit_fail);
    Py_XDECREF(s.no_clear);
    return result;
}

PyDoc_STRVAR(tree_doc,
"levels(leaves)\n"
"\n"
"The Merkle levels above *leaves* (32-byte hashes, a power of two of them): each level's\n"
"node hashes SHA-256(0x01 || left || right), concatenated, from the level above the leaves\n"
"up to the root.");

static PyObject *py_levels(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = NULL;
    Sha sha = {EVP_MD_CTX_new(), SHA256_MD};
    size_t count = (size_t)view.len / 32;
    if (sha.ctx == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((size_t)view.len % 32 || count == 0 || (count & (count - 1))) {
        PyErr_SetString(PyExc_ValueError, "levels() needs a power of two of 32-byte hashes");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) goto done;
    const unsigned char *below = view.buf;
    PyObject *level_obj = NULL;
    static const unsigned char one = 1;
    for (size_t n = count / 2; n >= 1; n /= 2) {
        level_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 32));
        if (level_obj == NULL) goto fail;
        unsigned char *level = (unsigned char *)PyBytes_AS_STRING(level_obj);
        for (size_t k = 0; k < n; k++) {
            if (EVP_DigestInit_ex(sha.ctx, sha.md, NULL) != 1 ||
                EVP_DigestUpdate(sha.ctx, &one, 1) != 1 ||
                EVP_DigestUpdate(sha.ctx, below + 64 * k, 64) != 1 ||
                EVP_DigestFinal_ex(sha.ctx, level + 32 * k, NULL) != 1) {
                PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
                goto fail;
            }
        }
        if (PyList_Append(out, level_obj) < 0) goto fail;
        Py_DECREF(level_obj);
        level_obj = NULL;
        below = level;
        if (n == 1) break;
    }
    goto done;
fail:
    Py_XDECREF(level_obj);
    Py_CLEAR(out);
done:
    EVP_MD_CTX_free(sha.ctx);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", py_scan, METH_VARARGS, scan_doc},
    {"levels", py_levels, METH_O, tree_doc},
    {"canonical", py_canonical, METH_O,
     "canonical(text) -> bool: is *text* canonical_json's output for the value it holds?"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "modelvault._fastscan",
    "The native fast path of `audit verify`'s scan (see auditscan.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastscan(void) {
    init_tables();
    SHA256_MD = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (SHA256_MD == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256");
        return NULL;
    }
    return PyModule_Create(&module);
}
