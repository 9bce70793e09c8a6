/*
 * psi._x25519_batch: the X25519 PSI hot loops in C, whole ranges at a time with the GIL released.
 *
 * The reference is the Python code of psi/x25519.py and psi/hash_to_curve25519.py; this module
 * computes byte-identical results (tests/psi/test_x25519_batch.py) and exists only because the
 * Python glue around libsodium's scalar multiplication cost ~12 us per element per party, ~15 % of
 * the CPU of a run.
 *
 *   hash_and_blind(items, key, dst_prime)      X25519(key, encode_to_u(item)) for every item
 *   blind(blob, key, lo, hi)                   X25519(key, e) for received elements lo..hi
 *   blind_to_tags(blob, key, lo, hi, n, person) BLAKE2b-n(X25519(key, e), person) for lo..hi
 *
 * All libsodium calls (X25519, SHA-512, BLAKE2b) go through function pointers handed over once by
 * configure(): they must be the library the Python path uses (rbcl's bundled libsodium, which has
 * the CVE-2025-69277 fix), not whatever libsodium the system linker would find. Field arithmetic
 * (RFC 9380 Elligator 2 and the on-curve check) is GMP's mpz layer on preallocated integers.
 *
 * A rejected element raises ElementRejected(index, kind); the Python wrapper turns it into the same
 * InvalidElementError as the Python path, recomputing the reason there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <gmp.h>
#include <stdint.h>
#include <string.h>

typedef int (*scalarmult_fn)(unsigned char *q, const unsigned char *n, const unsigned char *p);
typedef int (*sha512_init_fn)(void *state);
typedef int (*sha512_update_fn)(void *state, const unsigned char *in, unsigned long long inlen);
typedef int (*sha512_final_fn)(void *state, unsigned char *out);
typedef int (*blake2b_fn)(unsigned char *out, size_t outlen, const unsigned char *in,
                          unsigned long long inlen, const unsigned char *key, size_t keylen,
                          const unsigned char *salt, const unsigned char *personal);

#define ELEMENT 32
#define SMALL_ORDER_MAX 8
#define SHA512_STATE_MAX 256 /* crypto_hash_sha512_statebytes() is 208; checked in configure() */
#define XMD_LEN 48           /* RFC 9380 §5: L = ceil((ceil(log2(p)) + 128) / 8) for curve25519 */
#define DST_PRIME_MAX 256    /* RFC 9380 §5.3.3: DST' is at most 255 bytes plus its length byte */
#define BATCH 256            /* elements per Montgomery batch inversion */
#define CURVE_A 486662UL     /* RFC 7748 §4.1 */
#define LIMB_BITS 1024       /* room for any product here, so GMP never reallocates in the loop */

typedef struct {
    _Alignas(16) unsigned char bytes[SHA512_STATE_MAX];
} sha512_state;

static struct {
    int configured;
    scalarmult_fn scalarmult;
    sha512_init_fn sha512_init;
    sha512_update_fn sha512_update;
    sha512_final_fn sha512_final;
    blake2b_fn blake2b;
    size_t sha512_state_bytes;
    unsigned char small_order[SMALL_ORDER_MAX][ELEMENT];
    size_t small_order_count;
} sodium;

/* RFC 7748 §4.1: p = 2^255 - 19, little-endian, for the canonical-encoding check. */
static const unsigned char P_LE[ELEMENT] = {
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};

static mpz_t FIELD_P, FIELD_P_MINUS_1;
static PyObject *ElementRejected;

/* Scratch integers of one call; each thread brings its own. */
typedef struct {
    mpz_t u, t, x, inv;
    mpz_t den[BATCH];
    mpz_t prefix[BATCH];
} field_ws;

static field_ws *ws_new(void) {
    field_ws *ws = PyMem_Malloc(sizeof(field_ws));
    if (ws == NULL) return NULL;
    mpz_init2(ws->u, LIMB_BITS);
    mpz_init2(ws->t, LIMB_BITS);
    mpz_init2(ws->x, LIMB_BITS);
    mpz_init2(ws->inv, LIMB_BITS);
    for (int j = 0; j < BATCH; j++) {
        mpz_init2(ws->den[j], LIMB_BITS);
        mpz_init2(ws->prefix[j], LIMB_BITS);
    }
    return ws;
}

static void ws_free(field_ws *ws) {
    mpz_clear(ws->u);
    mpz_clear(ws->t);
    mpz_clear(ws->x);
    mpz_clear(ws->inv);
    for (int j = 0; j < BATCH; j++) {
        mpz_clear(ws->den[j]);
        mpz_clear(ws->prefix[j]);
    }
    PyMem_Free(ws);
}

/* ---------------------------------------------------------------- hashing to curve25519 (RFC 9380) */

/* The constant parts of expand_message_xmd(msg, DST, 48) with SHA-512 (RFC 9380 §5.3.1): the state
 * after Z_pad (128 zero bytes, absorbed once), the b_0 tail I2OSP(48, 2) || 0x00 || DST' and the
 * b_1 tail 0x01 || DST'. For 48 output bytes there is exactly one block b_1. */
typedef struct {
    sha512_state after_zpad;
    unsigned char tail0[3 + DST_PRIME_MAX];
    size_t tail0_len;
    unsigned char tail1[1 + DST_PRIME_MAX];
    size_t tail1_len;
} xmd_ctx;

static void xmd_ctx_init(xmd_ctx *ctx, const unsigned char *dst_prime, size_t dst_prime_len) {
    static const unsigned char zpad[128] = {0};
    sodium.sha512_init(&ctx->after_zpad);
    sodium.sha512_update(&ctx->after_zpad, zpad, sizeof zpad);
    ctx->tail0[0] = 0;
    ctx->tail0[1] = XMD_LEN;
    ctx->tail0[2] = 0;
    memcpy(ctx->tail0 + 3, dst_prime, dst_prime_len);
    ctx->tail0_len = 3 + dst_prime_len;
    ctx->tail1[0] = 1;
    memcpy(ctx->tail1 + 1, dst_prime, dst_prime_len);
    ctx->tail1_len = 1 + dst_prime_len;
}

static void xmd48(const xmd_ctx *ctx, const unsigned char *msg, size_t len, unsigned char out[64]) {
    sha512_state st;
    unsigned char b0[64];
    memcpy(&st, &ctx->after_zpad, sodium.sha512_state_bytes);
    sodium.sha512_update(&st, msg, len);
    sodium.sha512_update(&st, ctx->tail0, ctx->tail0_len);
    sodium.sha512_final(&st, b0);
    sodium.sha512_init(&st);
    sodium.sha512_update(&st, b0, sizeof b0);
    sodium.sha512_update(&st, ctx->tail1, ctx->tail1_len);
    sodium.sha512_final(&st, out); /* the first 48 bytes are hash_to_field's input */
}

/* RFC 9380 §5.2 hash_to_field (m = 1) then §6.7.1 steps 1-3: den = 1 + t1, t1 = Z u^2 (Z = 2), with
 * the exceptional case t1 == -1 mapped as t1 = 0. den is never 0, so batch inversion is safe. */
static void elligator_denominator(field_ws *ws, const unsigned char digest[64], mpz_t den) {
    mpz_import(ws->u, XMD_LEN, 1, 1, 1, 0, digest);
    mpz_mod(ws->u, ws->u, FIELD_P);
    mpz_mul(ws->t, ws->u, ws->u);
    mpz_mul_2exp(ws->t, ws->t, 1);
    mpz_mod(ws->t, ws->t, FIELD_P);
    if (mpz_cmp(ws->t, FIELD_P_MINUS_1) == 0) mpz_set_ui(ws->t, 0);
    mpz_add_ui(den, ws->t, 1);
}

/* §6.7.1 steps 4-12, x only: x1 = -A / den; x = x1 if x1^3 + A x1^2 + x1 is square, else -x1 - A.
 * is_square(0) is true (RFC 9380 §4), hence "== -1" for the second branch. */
static void elligator_x(field_ws *ws, const mpz_t inv_den, unsigned char out[ELEMENT]) {
    mpz_mul_ui(ws->x, inv_den, CURVE_A);
    mpz_mod(ws->x, ws->x, FIELD_P);
    mpz_sub(ws->x, FIELD_P, ws->x);
    mpz_add_ui(ws->t, ws->x, CURVE_A);
    mpz_mul(ws->t, ws->t, ws->x);
    mpz_add_ui(ws->t, ws->t, 1);
    mpz_mod(ws->t, ws->t, FIELD_P);
    mpz_mul(ws->t, ws->t, ws->x);
    mpz_mod(ws->t, ws->t, FIELD_P);
    if (mpz_jacobi(ws->t, FIELD_P) == -1) {
        mpz_add_ui(ws->t, ws->x, CURVE_A);
        mpz_sub(ws->x, FIELD_P, ws->t);
        if (mpz_sgn(ws->x) < 0) mpz_add(ws->x, ws->x, FIELD_P);
    }
    memset(out, 0, ELEMENT);
    mpz_export(out, NULL, -1, 1, 0, 0, ws->x); /* RFC 7748 §5: little-endian u-coordinate */
}

/* Montgomery's trick (Montgomery 1987, "Speeding the Pollard and elliptic curve methods", §10.3.1):
 * one inversion for k denominators; writes the k u-coordinates. */
static void encode_batch(field_ws *ws, size_t k, unsigned char (*us)[ELEMENT]) {
    mpz_set(ws->prefix[0], ws->den[0]);
    for (size_t j = 1; j < k; j++) {
        mpz_mul(ws->prefix[j], ws->prefix[j - 1], ws->den[j]);
        mpz_mod(ws->prefix[j], ws->prefix[j], FIELD_P);
    }
    mpz_invert(ws->inv, ws->prefix[k - 1], FIELD_P); /* a product of non-zero elements of GF(p) */
    for (size_t j = k - 1; j > 0; j--) {
        mpz_mul(ws->t, ws->inv, ws->prefix[j - 1]); /* 1 / den[j] */
        mpz_mod(ws->t, ws->t, FIELD_P);
        mpz_mul(ws->inv, ws->inv, ws->den[j]);
        mpz_mod(ws->inv, ws->inv, FIELD_P);
        mpz_set(ws->prefix[j], ws->t);
    }
    mpz_set(ws->prefix[0], ws->inv);
    for (size_t j = 0; j < k; j++) elligator_x(ws, ws->prefix[j], us[j]);
}

/* Returns -1, or the index of the first item whose hash X25519 refuses (small order). */
static Py_ssize_t hash_and_blind_loop(field_ws *ws, const xmd_ctx *xmd, char *const *ptrs,
                                      const Py_ssize_t *lens, Py_ssize_t n, const unsigned char *key,
                                      unsigned char *out) {
    unsigned char digest[64];
    unsigned char us[BATCH][ELEMENT];
    for (Py_ssize_t start = 0; start < n; start += BATCH) {
        size_t k = (size_t)(n - start < BATCH ? n - start : BATCH);
        for (size_t j = 0; j < k; j++) {
            xmd48(xmd, (const unsigned char *)ptrs[start + j], (size_t)lens[start + j], digest);
            elligator_denominator(ws, digest, ws->den[j]);
        }
        encode_batch(ws, k, us);
        for (size_t j = 0; j < k; j++) {
            if (sodium.scalarmult(out + (start + j) * ELEMENT, key, us[j]) != 0) return start + j;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- received elements (RFC 7748 §5) */

static int less_than_p(const unsigned char *e) {
    for (int i = ELEMENT - 1; i >= 0; i--) {
        if (e[i] != P_LE[i]) return e[i] < P_LE[i];
    }
    return 0;
}

/* The rules of psi.x25519.element_problem: canonical (top bit clear, u < p), not a small-order
 * u-coordinate, on curve25519 rather than its twist (u^3 + A u^2 + u a non-zero square). */
static int element_ok(field_ws *ws, const unsigned char *e) {
    if ((e[ELEMENT - 1] & 0x80) || !less_than_p(e)) return 0;
    for (size_t k = 0; k < sodium.small_order_count; k++) {
        if (memcmp(e, sodium.small_order[k], ELEMENT) == 0) return 0;
    }
    mpz_import(ws->u, ELEMENT, -1, 1, 0, 0, e);
    mpz_add_ui(ws->t, ws->u, CURVE_A);
    mpz_mul(ws->t, ws->t, ws->u);
    mpz_add_ui(ws->t, ws->t, 1);
    mpz_mod(ws->t, ws->t, FIELD_P);
    mpz_mul(ws->t, ws->t, ws->u);
    mpz_mod(ws->t, ws->t, FIELD_P);
    return mpz_jacobi(ws->t, FIELD_P) == 1;
}

enum rejection { ACCEPTED = 0, INVALID = 1, ALL_ZERO = 2 };

typedef struct {
    Py_ssize_t index;
    enum rejection kind;
} outcome;

/* tag_bytes == 0: write the blinded elements; otherwise their BLAKE2b tags (RFC 7693). */
static outcome blind_loop(field_ws *ws, const unsigned char *blob, Py_ssize_t lo, Py_ssize_t hi,
                          const unsigned char *key, size_t tag_bytes, const unsigned char *person,
                          unsigned char *out) {
    unsigned char blinded[ELEMENT];
    for (Py_ssize_t i = lo; i < hi; i++) {
        const unsigned char *e = blob + i * ELEMENT;
        if (!element_ok(ws, e)) return (outcome){i, INVALID};
        unsigned char *dest = tag_bytes ? blinded : out + (i - lo) * ELEMENT;
        if (sodium.scalarmult(dest, key, e) != 0) return (outcome){i, ALL_ZERO};
        if (tag_bytes) {
            sodium.blake2b(out + (i - lo) * tag_bytes, tag_bytes, blinded, ELEMENT, NULL, 0, NULL, person);
        }
    }
    return (outcome){-1, ACCEPTED};
}

/* ---------------------------------------------------------------- Python interface */

static int require_configured(void) {
    if (!sodium.configured) {
        PyErr_SetString(PyExc_RuntimeError, "psi._x25519_batch: configure() was not called");
        return 0;
    }
    return 1;
}

static int require_key(const Py_buffer *key) {
    if (key->len != ELEMENT) {
        PyErr_Format(PyExc_ValueError, "an X25519 key is %d bytes, got %zd", ELEMENT, key->len);
        return 0;
    }
    return 1;
}

static void raise_rejected(Py_ssize_t index, const char *kind) {
    PyObject *args = Py_BuildValue("(ns)", index, kind);
    if (args != NULL) {
        PyErr_SetObject(ElementRejected, args);
        Py_DECREF(args);
    }
}

static PyObject *configure(PyObject *self, PyObject *args) {
    unsigned long long addr[5];
    Py_ssize_t state_bytes;
    Py_buffer small;
    if (!PyArg_ParseTuple(args, "KKKKKny*", &addr[0], &addr[1], &addr[2], &addr[3], &addr[4],
                          &state_bytes, &small))
        return NULL;
    for (int k = 0; k < 5; k++) {
        if (addr[k] == 0) {
            PyBuffer_Release(&small);
            PyErr_SetString(PyExc_ValueError, "configure: a libsodium function address is NULL");
            return NULL;
        }
    }
    if (state_bytes <= 0 || state_bytes > SHA512_STATE_MAX || small.len % ELEMENT ||
        small.len / ELEMENT > SMALL_ORDER_MAX) {
        PyBuffer_Release(&small);
        PyErr_SetString(PyExc_ValueError, "configure: unexpected SHA-512 state size or blocklist");
        return NULL;
    }
    sodium.scalarmult = (scalarmult_fn)(uintptr_t)addr[0];
    sodium.sha512_init = (sha512_init_fn)(uintptr_t)addr[1];
    sodium.sha512_update = (sha512_update_fn)(uintptr_t)addr[2];
    sodium.sha512_final = (sha512_final_fn)(uintptr_t)addr[3];
    sodium.blake2b = (blake2b_fn)(uintptr_t)addr[4];
    sodium.sha512_state_bytes = (size_t)state_bytes;
    memcpy(sodium.small_order, small.buf, (size_t)small.len);
    sodium.small_order_count = (size_t)(small.len / ELEMENT);
    sodium.configured = 1;
    PyBuffer_Release(&small);
    Py_RETURN_NONE;
}

/* Pointers and lengths of the items (bytes only), read while holding the GIL; the tuple keeps
 * every item alive while the loop runs without it. */
static int collect_items(PyObject *tuple, char ***ptrs, Py_ssize_t **lens) {
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    *ptrs = PyMem_Malloc(sizeof(char *) * (size_t)(n ? n : 1));
    *lens = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (*ptrs == NULL || *lens == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "item %zd is %.100s, not bytes", i, Py_TYPE(item)->tp_name);
            return 0;
        }
        (*ptrs)[i] = PyBytes_AS_STRING(item);
        (*lens)[i] = PyBytes_GET_SIZE(item);
    }
    return 1;
}

static PyObject *hash_and_blind(PyObject *self, PyObject *args) {
    PyObject *items, *tuple = NULL, *out = NULL;
    Py_buffer key, dst_prime;
    char **ptrs = NULL;
    Py_ssize_t *lens = NULL;
    field_ws *ws = NULL;
    xmd_ctx *xmd = NULL;
    if (!require_configured() || !PyArg_ParseTuple(args, "Oy*y*", &items, &key, &dst_prime)) return NULL;
    if (!require_key(&key)) goto done;
    if (dst_prime.len < 2 || dst_prime.len > DST_PRIME_MAX) {
        PyErr_SetString(PyExc_ValueError, "DST' must be 2..256 bytes (RFC 9380 §5.3.3)");
        goto done;
    }
    if ((tuple = PySequence_Tuple(items)) == NULL || !collect_items(tuple, &ptrs, &lens)) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    if ((out = PyBytes_FromStringAndSize(NULL, n * ELEMENT)) == NULL) goto done;
    if ((ws = ws_new()) == NULL || (xmd = PyMem_Malloc(sizeof(xmd_ctx))) == NULL) {
        Py_CLEAR(out);
        PyErr_NoMemory();
        goto done;
    }
    xmd_ctx_init(xmd, dst_prime.buf, (size_t)dst_prime.len);
    Py_ssize_t bad;
    unsigned char *dest = (unsigned char *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    bad = hash_and_blind_loop(ws, xmd, ptrs, lens, n, key.buf, dest);
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        Py_CLEAR(out);
        raise_rejected(bad, "small-order hash");
    }
done:
    if (ws != NULL) ws_free(ws);
    PyMem_Free(xmd);
    PyMem_Free(ptrs);
    PyMem_Free(lens);
    Py_XDECREF(tuple);
    PyBuffer_Release(&key);
    PyBuffer_Release(&dst_prime);
    return out;
}

static PyObject *blind_common(const Py_buffer *blob, const Py_buffer *key, Py_ssize_t lo, Py_ssize_t hi,
                              size_t tag_bytes, const unsigned char *person) {
    if (!require_key(key)) return NULL;
    if (blob->len % ELEMENT || lo < 0 || lo > hi || hi > blob->len / ELEMENT) {
        PyErr_Format(PyExc_ValueError, "range %zd..%zd is not inside a blob of %zd bytes", lo, hi, blob->len);
        return NULL;
    }
    size_t width = tag_bytes ? tag_bytes : ELEMENT;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (hi - lo) * (Py_ssize_t)width);
    if (out == NULL) return NULL;
    field_ws *ws = ws_new();
    if (ws == NULL) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    outcome result;
    unsigned char *dest = (unsigned char *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    result = blind_loop(ws, blob->buf, lo, hi, key->buf, tag_bytes, person, dest);
    Py_END_ALLOW_THREADS
    ws_free(ws);
    if (result.kind != ACCEPTED) {
        Py_DECREF(out);
        raise_rejected(result.index, result.kind == INVALID ? "invalid" : "all-zero");
        return NULL;
    }
    return out;
}

static PyObject *blind(PyObject *self, PyObject *args) {
    Py_buffer blob, key;
    Py_ssize_t lo, hi;
    if (!require_configured() || !PyArg_ParseTuple(args, "y*y*nn", &blob, &key, &lo, &hi)) return NULL;
    PyObject *out = blind_common(&blob, &key, lo, hi, 0, NULL);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&key);
    return out;
}

static PyObject *blind_to_tags(PyObject *self, PyObject *args) {
    Py_buffer blob, key, person;
    Py_ssize_t lo, hi, tag_bytes;
    PyObject *out = NULL;
    if (!require_configured() ||
        !PyArg_ParseTuple(args, "y*y*nnny*", &blob, &key, &lo, &hi, &tag_bytes, &person))
        return NULL;
    /* RFC 7693 §2.1: digests of 1..64 bytes; the personalisation block is 16 bytes. */
    if (tag_bytes < 1 || tag_bytes > 64 || person.len != 16)
        PyErr_SetString(PyExc_ValueError, "tag_bytes must be 1..64 and person 16 bytes");
    else
        out = blind_common(&blob, &key, lo, hi, (size_t)tag_bytes, person.buf);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&key);
    PyBuffer_Release(&person);
    return out;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(scalarmult, sha512_init, sha512_update, sha512_final, blake2b_salt_personal, "
     "sha512_state_bytes, small_order_blob): libsodium function addresses and the small-order blocklist."},
    {"hash_and_blind", hash_and_blind, METH_VARARGS,
     "hash_and_blind(items, key, dst_prime) -> bytes: X25519(key, encode_to_u(item)) for every item."},
    {"blind", blind, METH_VARARGS, "blind(blob, key, lo, hi) -> bytes: X25519(key, e) for elements lo..hi."},
    {"blind_to_tags", blind_to_tags, METH_VARARGS,
     "blind_to_tags(blob, key, lo, hi, tag_bytes, person) -> bytes: BLAKE2b tags of X25519(key, e)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "psi._x25519_batch",
    .m_doc = "The X25519 PSI hot loops in C (see psi/x25519.py, the reference implementation).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__x25519_batch(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    mpz_init(FIELD_P);
    mpz_ui_pow_ui(FIELD_P, 2, 255);
    mpz_sub_ui(FIELD_P, FIELD_P, 19);
    mpz_init(FIELD_P_MINUS_1);
    mpz_sub_ui(FIELD_P_MINUS_1, FIELD_P, 1);
    ElementRejected = PyErr_NewException("psi._x25519_batch.ElementRejected", PyExc_ValueError, NULL);
    if (ElementRejected == NULL || PyModule_AddObjectRef(m, "ElementRejected", ElementRejected) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
