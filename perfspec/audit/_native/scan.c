/* perfspec.audit._scan: the JSON-lines hot loop of `perfspec clean`, in C.

   Why: in Python every event costs a dict (orjson) or a struct (msgspec) plus 17 str objects, then
   Arrow copies them again; that caps cleaning near 180 MB/s on two cores. Here each line is parsed
   by yyjson (vendored, MIT) and the 17 event fields are appended straight into Arrow buffers.

   Contract (what makes it safe): a line is *taken* only when the exact Python path
   (`readers.event_row(orjson.loads(line))`) would give the same values and keep the row; every
   other non-empty line is *deferred* to that path, which decides it (and writes its reject). So the
   rules below are conservative mirrors of `event_row`, never new rules:
   - only ASCII lines (UTF-8 edge cases stay with Python) that yyjson parses under RFC 8259 (no NaN,
     comments, trailing commas, lone surrogates, trailing content) into fewer than MAX_CONTAINERS
     arrays and objects (so no nesting-depth question: orjson refuses depth > 1024, yyjson has no
     limit) with no number beyond int64/uint64/finite double (orjson refuses what a double cannot
     hold, and reads a larger integer as a float);
   - a top-level object; duplicate keys: the last one wins, as in orjson and Go;
   - kind absent/null (then auditID present) or "Event"; auditID a string of 1..max_id characters;
     stage one of the given names;
   - requestReceivedTimestamp / stageTimestamp: a non-empty string, else `timestamp` (Python's `or`);
   - verb, userAgent, requestURI, level, timestamp: absent, null or a string;
   - user / objectRef / responseStatus: absent, null or an object whose picked fields are absent,
     null or strings (responseStatus.code: an integer within int32);
   - sourceIPs: not a list, or an empty list -> null; else its first item, a string or null.
   Anything else defers the line. Timestamps are returned as strings: Arrow parses them (Python side).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "yyjson.h"

#define N_STRINGS 16 /* every event column but response_code */
#define MAX_CONTAINERS 256
#define MAX_STAGES 8

enum { C_AUDIT_ID, C_STAGE, C_RECEIVED, C_STAGE_AT, C_VERB, C_USERNAME, C_USER_AGENT, C_SOURCE_IP,
       C_NAMESPACE, C_RESOURCE, C_SUBRESOURCE, C_NAME, C_API_GROUP, C_API_VERSION, C_REQUEST_URI,
       C_LEVEL };

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

typedef struct {
    Buf data, offsets, validity;
    int64_t nulls;
} StrCol;

typedef struct {
    StrCol strings[N_STRINGS];
    Buf codes, code_validity, row_lines, deferred, bounds;
    int64_t rows, code_nulls;
} Out;

static void out_free(Out *o) {
    for (int i = 0; i < N_STRINGS; i++) {
        free(o->strings[i].data.data);
        free(o->strings[i].offsets.data);
        free(o->strings[i].validity.data);
    }
    free(o->codes.data);
    free(o->code_validity.data);
    free(o->row_lines.data);
    free(o->deferred.data);
    free(o->bounds.data);
}

/* One row's picked values: NULL pointer = null. */
typedef struct {
    const char *s[N_STRINGS];
    size_t n[N_STRINGS];
    int32_t code;
    int has_code;
} Row;

static int set_bit(Buf *validity, int64_t index, int valid) {
    size_t byte = (size_t)(index >> 3);
    if (byte >= validity->len) {
        if (buf_reserve(validity, 1)) return -1;
        validity->data[validity->len++] = 0;
    }
    if (valid) validity->data[byte] |= (char)(1u << (index & 7));
    return 0;
}

static int append_row(Out *o, const Row *r, int32_t line) {
    int64_t i = o->rows;
    for (int c = 0; c < N_STRINGS; c++) {
        StrCol *col = &o->strings[c];
        if (i == 0) {
            int32_t zero = 0;
            if (buf_put(&col->offsets, &zero, 4)) return -1;
        }
        if (r->s[c]) {
            if (buf_put(&col->data, r->s[c], r->n[c])) return -1;
        } else {
            col->nulls++;
        }
        if (set_bit(&col->validity, i, r->s[c] != NULL)) return -1;
        int32_t end = (int32_t)col->data.len;
        if (buf_put(&col->offsets, &end, 4)) return -1;
    }
    int32_t code = r->has_code ? r->code : 0;
    if (!r->has_code) o->code_nulls++;
    if (buf_put(&o->codes, &code, 4) || set_bit(&o->code_validity, i, r->has_code)) return -1;
    if (buf_put(&o->row_lines, &line, 4)) return -1;
    o->rows++;
    return 0;
}

static inline int key_is(yyjson_val *key, const char *name, size_t n) {
    return yyjson_get_len(key) == n && memcmp(yyjson_get_str(key), name, n) == 0;
}
#define KEY(k, lit) key_is((k), (lit), sizeof(lit) - 1)

/* An optional string: absent/null -> NULL (ok), a string -> it (ok), anything else -> defer (0). */
static inline int opt_str(yyjson_val *v, const char **s, size_t *n) {
    if (!v || yyjson_is_null(v)) {
        *s = NULL;
        return 1;
    }
    if (!yyjson_is_str(v)) return 0;
    *s = yyjson_get_str(v);
    *n = yyjson_get_len(v);
    return 1;
}

/* An optional object (user, objectRef, responseStatus): absent/null -> NULL (ok), object -> it. */
static inline int opt_obj(yyjson_val *v, yyjson_val **obj) {
    if (!v || yyjson_is_null(v)) {
        *obj = NULL;
        return 1;
    }
    if (!yyjson_is_obj(v)) return 0;
    *obj = v;
    return 1;
}

typedef struct {
    const char *names[MAX_STAGES];
    size_t lens[MAX_STAGES];
    int count;
    size_t max_id;
} Rules;

/* The row of one parsed line, or 0 (defer). Mirrors readers.event_row; see the header comment. */
static int pick(yyjson_val *root, const Rules *rules, Row *r) {
    yyjson_val *kind = NULL, *audit_id = NULL, *stage = NULL, *received = NULL, *stage_at = NULL,
               *ts = NULL, *verb = NULL, *user = NULL, *agent = NULL, *ips = NULL, *obj = NULL,
               *status = NULL, *uri = NULL, *level = NULL;
    yyjson_val *key, *val;
    size_t idx, max;
    yyjson_obj_foreach(root, idx, max, key, val) {  /* later duplicates overwrite: last one wins */
        switch (yyjson_get_len(key)) {
        case 4:
            if (KEY(key, "kind")) kind = val;
            else if (KEY(key, "verb")) verb = val;
            else if (KEY(key, "user")) user = val;
            break;
        case 5:
            if (KEY(key, "stage")) stage = val;
            else if (KEY(key, "level")) level = val;
            break;
        case 7:
            if (KEY(key, "auditID")) audit_id = val;
            break;
        case 9:
            if (KEY(key, "timestamp")) ts = val;
            else if (KEY(key, "userAgent")) agent = val;
            else if (KEY(key, "sourceIPs")) ips = val;
            else if (KEY(key, "objectRef")) obj = val;
            break;
        case 10:
            if (KEY(key, "requestURI")) uri = val;
            break;
        case 14:
            if (KEY(key, "stageTimestamp")) stage_at = val;
            else if (KEY(key, "responseStatus")) status = val;
            break;
        case 24:
            if (KEY(key, "requestReceivedTimestamp")) received = val;
            break;
        default:
            break;
        }
    }
    if (kind && !yyjson_is_null(kind)) {
        if (!yyjson_is_str(kind) || !KEY(kind, "Event")) return 0;
    }
    if (!audit_id || !yyjson_is_str(audit_id)) return 0;
    size_t id_len = yyjson_get_len(audit_id); /* ASCII lines only: bytes == characters */
    if (id_len == 0 || id_len > rules->max_id) return 0;
    r->s[C_AUDIT_ID] = yyjson_get_str(audit_id);
    r->n[C_AUDIT_ID] = id_len;
    if (!stage || !yyjson_is_str(stage)) return 0;
    int known = 0;
    for (int i = 0; i < rules->count; i++) {
        if (key_is(stage, rules->names[i], rules->lens[i])) known = 1;
    }
    if (!known) return 0;
    r->s[C_STAGE] = yyjson_get_str(stage);
    r->n[C_STAGE] = yyjson_get_len(stage);

    const char *ts_s;
    size_t ts_n = 0;
    if (!opt_str(ts, &ts_s, &ts_n)) return 0;
    /* `ev.get(k) or ts`: a non-empty string, else the v1beta1 timestamp */
    yyjson_val *pair[2] = {received, stage_at};
    int cols[2] = {C_RECEIVED, C_STAGE_AT};
    for (int i = 0; i < 2; i++) {
        const char *s;
        size_t n = 0;
        if (!opt_str(pair[i], &s, &n)) return 0;
        if (s && n > 0) {
            r->s[cols[i]] = s;
            r->n[cols[i]] = n;
        } else {
            r->s[cols[i]] = ts_s;
            r->n[cols[i]] = ts_n;
        }
    }
    if (!opt_str(verb, &r->s[C_VERB], &r->n[C_VERB])) return 0;
    if (!opt_str(agent, &r->s[C_USER_AGENT], &r->n[C_USER_AGENT])) return 0;
    if (!opt_str(uri, &r->s[C_REQUEST_URI], &r->n[C_REQUEST_URI])) return 0;
    if (!opt_str(level, &r->s[C_LEVEL], &r->n[C_LEVEL])) return 0;

    yyjson_val *o;
    if (!opt_obj(user, &o)) return 0;
    r->s[C_USERNAME] = NULL;
    if (o) {
        yyjson_val *username = NULL;
        yyjson_obj_foreach(o, idx, max, key, val) {
            if (KEY(key, "username")) username = val;
        }
        if (!opt_str(username, &r->s[C_USERNAME], &r->n[C_USERNAME])) return 0;
    }

    if (!opt_obj(obj, &o)) return 0;
    for (int c = C_NAMESPACE; c <= C_API_VERSION; c++) r->s[c] = NULL;
    if (o) {
        yyjson_val *f[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
        yyjson_obj_foreach(o, idx, max, key, val) {
            if (KEY(key, "namespace")) f[0] = val;
            else if (KEY(key, "resource")) f[1] = val;
            else if (KEY(key, "subresource")) f[2] = val;
            else if (KEY(key, "name")) f[3] = val;
            else if (KEY(key, "apiGroup")) f[4] = val;
            else if (KEY(key, "apiVersion")) f[5] = val;
        }
        for (int i = 0; i < 6; i++) {
            if (!opt_str(f[i], &r->s[C_NAMESPACE + i], &r->n[C_NAMESPACE + i])) return 0;
        }
    }

    if (!opt_obj(status, &o)) return 0;
    r->has_code = 0;
    if (o) {
        yyjson_val *code = NULL;
        yyjson_obj_foreach(o, idx, max, key, val) {
            if (KEY(key, "code")) code = val;
        }
        if (code && !yyjson_is_null(code)) {
            if (yyjson_is_uint(code)) {
                uint64_t u = yyjson_get_uint(code);
                if (u > INT32_MAX) return 0;
                r->code = (int32_t)u;
            } else if (yyjson_is_sint(code)) {
                int64_t v = yyjson_get_sint(code);
                if (v < INT32_MIN || v > INT32_MAX) return 0;
                r->code = (int32_t)v;
            } else {
                return 0;
            }
            r->has_code = 1;
        }
    }

    r->s[C_SOURCE_IP] = NULL;
    if (ips && yyjson_is_arr(ips) && yyjson_arr_size(ips) > 0) {
        if (!opt_str(yyjson_arr_get_first(ips), &r->s[C_SOURCE_IP], &r->n[C_SOURCE_IP])) return 0;
    }
    return 1;
}

/* No raw (bignum) value anywhere in the document (orjson refuses numbers a double cannot hold), and
   fewer than MAX_CONTAINERS arrays and objects: the nesting depth, at most their number, cannot matter.
   Counted here, on the parsed values, rather than as brackets in the bytes: one pass less per line. */
static int plain_doc(yyjson_doc *doc) {
    yyjson_val *v = yyjson_doc_get_root(doc);
    size_t count = yyjson_doc_get_val_count(doc);
    size_t containers = 0;
    for (size_t i = 0; i < count; i++) {
        yyjson_type type = unsafe_yyjson_get_type(v + i);
        if (type == YYJSON_TYPE_RAW) return 0;
        containers += (type == YYJSON_TYPE_ARR) | (type == YYJSON_TYPE_OBJ);
    }
    return containers < MAX_CONTAINERS;
}

/* ASCII only (a branch-free OR over the bytes, vectorised by the compiler). */
static int ascii_bytes(const unsigned char *p, size_t n) {
    unsigned char high = 0;
    for (size_t i = 0; i < n; i++) high |= p[i];
    return !(high & 0x80);
}

static PyObject *bytes_of(Buf *b) { return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len); }

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer chunk;
    Py_ssize_t max_line, max_id;
    PyObject *stages;
    if (!PyArg_ParseTuple(args, "y*nnO!", &chunk, &max_line, &max_id, &PyTuple_Type, &stages)) return NULL;
    Rules rules = {.count = 0, .max_id = (size_t)max_id};
    Py_ssize_t n_stages = PyTuple_GET_SIZE(stages);
    if (n_stages > MAX_STAGES) {
        PyBuffer_Release(&chunk);
        PyErr_SetString(PyExc_ValueError, "too many stage names");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n_stages; i++) {
        PyObject *name = PyTuple_GET_ITEM(stages, i);
        if (!PyBytes_Check(name)) {
            PyBuffer_Release(&chunk);
            PyErr_SetString(PyExc_TypeError, "stage names must be bytes");
            return NULL;
        }
        rules.names[i] = PyBytes_AS_STRING(name);
        rules.lens[i] = (size_t)PyBytes_GET_SIZE(name);
        rules.count++;
    }

    Out out;
    memset(&out, 0, sizeof out);
    const char *data = (const char *)chunk.buf;
    size_t size = (size_t)chunk.len, pos = 0;
    int32_t line = 0;
    int failed = 0;
    char *pool = NULL;
    size_t pool_cap = 0;

    Py_BEGIN_ALLOW_THREADS
    while (pos < size) {
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - start) : size - pos;
        int64_t bound[2] = {(int64_t)pos, (int64_t)(pos + len)};
        if (buf_put(&out.bounds, bound, sizeof bound)) { failed = 1; break; }
        int taken = 0;
        if (len == 0) {
            taken = 1; /* an empty line is not a record (the Python path skips it too) */
        } else if (len <= (size_t)max_line && ascii_bytes((const unsigned char *)start, len)) {
            size_t need = yyjson_read_max_memory_usage(len, YYJSON_READ_BIGNUM_AS_RAW);
            if (need > pool_cap) {
                char *grown = realloc(pool, need);
                if (!grown) { failed = 1; break; }
                pool = grown;
                pool_cap = need;
            }
            yyjson_alc alc;
            yyjson_alc_pool_init(&alc, pool, pool_cap);
            yyjson_doc *doc = yyjson_read_opts((char *)start, len, YYJSON_READ_BIGNUM_AS_RAW, &alc, NULL);
            if (doc) {
                yyjson_val *root = yyjson_doc_get_root(doc);
                Row row;
                row.code = 0;
                if (yyjson_is_obj(root) && plain_doc(doc) && pick(root, &rules, &row)) {
                    if (append_row(&out, &row, line)) { failed = 1; yyjson_doc_free(doc); break; }
                    taken = 1;
                }
                yyjson_doc_free(doc);
            }
        }
        if (!taken && buf_put(&out.deferred, &line, 4)) { failed = 1; break; }
        line++;
        pos += len + (nl ? 1 : 0);
    }
    Py_END_ALLOW_THREADS

    free(pool);
    PyBuffer_Release(&chunk);
    if (failed) {
        out_free(&out);
        return PyErr_NoMemory();
    }
    PyObject *strings = PyList_New(N_STRINGS);
    if (!strings) { out_free(&out); return NULL; }
    for (int c = 0; c < N_STRINGS; c++) {
        StrCol *col = &out.strings[c];
        PyObject *item = Py_BuildValue("(NNNL)", bytes_of(&col->validity), bytes_of(&col->offsets),
                                       bytes_of(&col->data), (long long)col->nulls);
        if (!item) { Py_DECREF(strings); out_free(&out); return NULL; }
        PyList_SET_ITEM(strings, c, item);
    }
    PyObject *result = Py_BuildValue("(iLNNNNLNN)", line, (long long)out.rows, strings,
                                     bytes_of(&out.code_validity), bytes_of(&out.codes),
                                     bytes_of(&out.row_lines), (long long)out.code_nulls,
                                     bytes_of(&out.deferred), bytes_of(&out.bounds));
    out_free(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(chunk, max_line_bytes, max_id_chars, stages) -> (lines, rows, strings, code_validity, codes, "
     "row_lines, code_nulls, deferred, bounds)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "perfspec clean's JSON-lines scanner", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
