/* weightaudit._kernel: the per-block statistics kernel in C (one pass per block, SIMD, GIL released).

   Optional: weightaudit.stats_kernels falls back to its numpy kernel when this module is missing (no compiler
   at install time) or when WEIGHTAUDIT_KERNEL=numpy. Results equal the numpy kernel's: counts, min/max,
   max |x| and its first position, zeros, NaN/+-Inf, fp16 overflow, histogram bins and the fingerprint samples
   exactly; mean and M2 within float tolerance (float32 lane sums flushed to float64 every FLUSH iterations,
   then the same shift guard and Chan merge as the numpy kernel). Only raw bytes are read.

   Fold(dtype, histogram_stride, histogram_lo, histogram_hi, has_histogram, block_bytes, histogram_every,
        sample_bytes)
     .block(raw, first_index) -> next index   fold one block of a tensor (a trailing partial element ignored)
     .blocks(iterable, first_index) -> next index   .block for each block the iterable yields
     .result() -> (count, finite, mean, m2, min, max, zeros, nan, pos_inf, neg_inf, fp16_overflow, max_abs,
                   max_abs_index, histogram tuple, samples list)
   extremes(dtype, raw) -> (min, max) of a block without Inf/NaN codes, else None (histogram ranges)
   variants() -> names usable on this CPU, best first; select(name); selected() -> name; dtypes(). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_kernel_core.h"   /* dtypes, decoding, SIMD variants, one block */

/* ---- the Fold object ---------------------------------------------------------------------------------------- */

#define BINS 16

typedef struct {
    PyObject_HEAD
    int kind;
    const simd_t *simd;
    const char *variant;
    int64_t hist_stride, block_bytes, hist_every, sample_bytes;
    int has_hist;
    double hist_lo, hist_hi;
    int64_t count, finite, zeros, nan, pos_inf, neg_inf, overflow, max_abs_index;
    double mean, m2, min, max, max_abs;
    int64_t histogram[BINS];
    PyObject *samples;
} Fold;

static uint32_t CRC_TABLE[8][256];   /* slice-by-8 tables of zlib's CRC-32 (reflected 0xEDB88320) */

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        CRC_TABLE[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            CRC_TABLE[t][i] = CRC_TABLE[0][CRC_TABLE[t - 1][i] & 0xFF] ^ (CRC_TABLE[t - 1][i] >> 8);
}

static uint32_t crc32(const uint8_t *p, size_t n)   /* zlib.crc32 (the fingerprint samples), 8 bytes a step */
{
    uint32_t c = 0xFFFFFFFFu;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p + i, 4);
        memcpy(&hi, p + i + 4, 4);
        lo ^= c;   /* little-endian host (x86, arm64): the bytes in order */
        c = CRC_TABLE[7][lo & 0xFF] ^ CRC_TABLE[6][(lo >> 8) & 0xFF] ^ CRC_TABLE[5][(lo >> 16) & 0xFF]
            ^ CRC_TABLE[4][lo >> 24] ^ CRC_TABLE[3][hi & 0xFF] ^ CRC_TABLE[2][(hi >> 8) & 0xFF]
            ^ CRC_TABLE[1][(hi >> 16) & 0xFF] ^ CRC_TABLE[0][hi >> 24];
    }
    for (; i < n; i++) c = CRC_TABLE[0][(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* _Partial.add_moments, operation for operation. */
static void add_moments(Fold *f, int64_t n, double mean, double m2)
{
    if (n == 0) return;
    int64_t total = f->finite + n;
    double delta = mean - f->mean;
    f->mean += delta * (double)n / (double)total;
    f->m2 += m2 + delta * delta * (double)f->finite * (double)n / (double)total;
    f->finite = total;
}

/* Mean and M2 of the block's finite values: shift 0 when the mean is small against the spread (numpy's
   guard, loss <= 4/3), else the block re-centred on its own mean (see stats_kernels._block_moments). */
static void block_moments(Fold *f, const uint8_t *p, size_t n, block_t *b, double magnitude, double *mean, double *m2)
{
    double nf = (double)b->finite, s1 = b->s1, s2 = b->s2;
    int exact = b->exact_sums || magnitude > FLOAT32_SAFE_MAGNITUDE;
    if (!b->exact_sums && magnitude > FLOAT32_SAFE_MAGNITUDE) scalar_sums(f->kind, p, n, 0.0, &s1, &s2);
    if (s1 * s1 <= 0.25 * s2 * nf) {
        *mean = s1 / nf;
        *m2 = fmax(s2 - s1 * s1 / nf, 0.0);
        return;
    }
    double shift = KINDS[f->kind].work_double || exact ? s1 / nf : (double)(float)(s1 / nf);
    if (exact) scalar_sums(f->kind, p, n, shift, &s1, &s2);
    else f->simd->sums(f->kind, p, n, (float)shift, &s1, &s2);
    *mean = shift + s1 / nf;
    *m2 = fmax(s2 - s1 * s1 / nf, 0.0);
}

/* First natural position of max |x| in the block, as numpy's one-comparison search: x == low when -low is
   the magnitude, else x == high, else |x| == magnitude. With the codes of low/high known, on the codes: in the
   first two cases the value is not zero, so its code is unique; in the third the magnitude bits decide. */
static int64_t first_position(const simd_t *simd, int kind, const uint8_t *p, size_t n, const block_t *b,
                              double magnitude)
{
    double low = b->low, high = b->high;
    int mode = high != magnitude ? 0 : (-low != magnitude ? 1 : 2);
    if (b->by_codes) {
        int itemsize = KINDS[kind].itemsize;
        uint64_t all = itemsize == 8 ? UINT64_MAX : (1ull << (8 * itemsize)) - 1, sign = 1ull << (8 * itemsize - 1);
        uint64_t mask = mode == 2 ? all & ~sign : all, target = (mode == 0 ? b->low_code : b->high_code) & mask;
        return (int64_t)simd->find_code(itemsize, p, n, mask, target);
    }
    for (size_t i = 0; i < n; i++) {
        double x = decode_any(kind, p + i * KINDS[kind].itemsize);
        if ((mode == 0 && x == low) || (mode == 1 && x == high) || (mode == 2 && fabs(x) == magnitude))
            return (int64_t)i;
    }
    return 0;   /* unreachable: the extremes come from these values */
}

typedef struct { float lo32, scale32; double lo, scale, half; } bins_t;

/* numpy's arithmetic: (x - lo) * (16 / (hi - lo)) in the working dtype (float32: lo and the scale rounded to
   float32 first, as numpy casts Python floats to the array's dtype), clipped to 0..15, truncated. */
static bins_t bins_of(const Fold *f)
{
    bins_t b;
    double lo = f->hist_lo, hi = f->hist_hi;
    b.lo32 = (float)lo;
    b.scale32 = (float)((double)BINS / (hi - lo));
    b.half = isfinite(hi - lo) ? 1.0 : 0.5;   /* an F64 range wider than float64 holds: numpy halves first */
    b.lo = lo * b.half;
    b.scale = (double)BINS / (hi * b.half - lo * b.half);
    return b;
}

static inline int bin32(const bins_t *b, float x)
{
    float pos = (x - b->lo32) * b->scale32;
    pos = !(pos >= 0) ? 0 : pos;   /* NaN cannot happen; never index with it */
    pos = pos > BINS - 1 ? BINS - 1 : pos;
    return (int)pos;
}

static inline int bin64(const bins_t *b, double x)
{
    double pos = (b->half == 1.0 ? x - b->lo : x * 0.5 - b->lo) * b->scale;
    pos = !(pos >= 0) ? 0 : pos;
    pos = pos > BINS - 1 ? BINS - 1 : pos;
    return (int)pos;
}

/* The sampled positions, in numpy's decode order (lane by lane: q = lane * words + w is element w * lanes +
   lane), without a division per element. BODY sees `natural`. */
#define FOR_SAMPLED(n, step, lanes, words, BODY) do { \
        size_t lane_ = 0, w_ = 0; \
        for (size_t q_ = 0; q_ < (n); q_ += (step)) { \
            size_t natural = w_ * (lanes) + lane_; \
            do BODY while (0);   /* a `continue` in BODY ends this element only */ \
            w_ += (step); \
            while (w_ >= (words) && lane_ + 1 < (lanes)) { w_ -= (words); lane_++; } \
        } \
    } while (0)

/* Clean blocks of the common floats: 4 interleaved sub-histograms (a run of equal bins would otherwise wait on
   each increment); every element binned (step 1, small tensors) needs no decode order. */
#define HIST_FAST(KIND, CT) do { \
        uint32_t sub_[4][BINS]; size_t k_ = 0; \
        memset(sub_, 0, sizeof sub_); \
        if (step == 1) {   /* bins of 256 elements at a time (a loop the compiler vectorises), then counted */ \
            uint8_t idx_[256]; \
            for (size_t i0_ = 0; i0_ < n; i0_ += 256) { \
                size_t m_ = n - i0_ < 256 ? n - i0_ : 256; \
                for (size_t j_ = 0; j_ < m_; j_++) { \
                    CT c_; memcpy(&c_, p + (i0_ + j_) * sizeof(CT), sizeof c_); \
                    idx_[j_] = (uint8_t)bin32(&bins, (float)decode_finite(KIND, c_)); \
                } \
                for (size_t j_ = 0; j_ < m_; j_++) sub_[j_ & 3][idx_[j_]]++; \
            } \
        } else { \
            FOR_SAMPLED(n, step, lanes, words, { \
                CT c_; memcpy(&c_, p + natural * sizeof(CT), sizeof c_); \
                sub_[k_++ & 3][bin32(&bins, (float)decode_finite(KIND, c_))]++; }); \
        } \
        for (int b_ = 0; b_ < BINS; b_++) f->histogram[b_] += (int64_t)sub_[0][b_] + sub_[1][b_] + sub_[2][b_] + sub_[3][b_]; \
    } while (0)

/* numpy bins every stride-th value of the block in its decode order (lane by lane for 16/8-bit floats); in a
   block with Inf/NaN, every stride-th *finite* value. */
static void add_histogram(Fold *f, const uint8_t *p, size_t n, int special, int64_t first_index)
{
    const kind_t *k = &KINDS[f->kind];
    if (f->hist_stride != 1 && (first_index * k->itemsize / f->block_bytes) % f->hist_every) return;
    size_t lanes = (n * k->itemsize) % 4 == 0 ? (size_t)k->lanes : 1, words = n / lanes;
    size_t step = special ? 1 : (size_t)f->hist_stride;
    bins_t bins = bins_of(f);
    if (!special && f->kind == K_F32) { HIST_FAST(K_F32, uint32_t); return; }
    if (!special && f->kind == K_BF16) { HIST_FAST(K_BF16, uint16_t); return; }
    if (!special && f->kind == K_F16) { HIST_FAST(K_F16, uint16_t); return; }
    int64_t kept = 0, every = special ? f->hist_stride : 1;
    FOR_SAMPLED(n, step, lanes, words, {
        double x = decode_any(f->kind, p + natural * k->itemsize);
        if (!isfinite(x) || kept++ % every) continue;
        f->histogram[k->work_double ? bin64(&bins, x) : bin32(&bins, (float)x)]++;
    });
}

static void fold_block(Fold *f, const uint8_t *p, size_t n, int64_t first_index)
{
    const kind_t *k = &KINDS[f->kind];
    block_t b;
    f->count += (int64_t)n;
    if (n == 0) return;
    if (!(k->fast && fast_block(f->simd, f->kind, p, n, &b))) scalar_block(f->kind, p, n, &b);
    f->nan += b.nan; f->pos_inf += b.pos_inf; f->neg_inf += b.neg_inf;
    if (b.finite == 0) return;
    if (b.low < f->min) f->min = b.low;
    if (b.high > f->max) f->max = b.high;
    double magnitude = b.high > -b.low ? b.high : -b.low, mean, m2;   /* Python's max(-low, high) */
    block_moments(f, p, n, &b, magnitude, &mean, &m2);
    add_moments(f, b.finite, mean, m2);
    f->zeros += b.zeros;
    f->overflow += b.overflow;
    if (magnitude > f->max_abs) {
        f->max_abs = magnitude;
        f->max_abs_index = first_index + first_position(f->simd, f->kind, p, n, &b, magnitude);
    }
    if (f->has_hist) add_histogram(f, p, n, b.special, first_index);
}

static int Fold_init(Fold *f, PyObject *args, PyObject *kwargs)
{
    const char *dtype;
    int has_hist;
    if (!PyArg_ParseTuple(args, "sLddpLLL", &dtype, &f->hist_stride, &f->hist_lo, &f->hist_hi, &has_hist,
                          &f->block_bytes, &f->hist_every, &f->sample_bytes))
        return -1;
    f->kind = -1;
    for (int i = 0; i < K_COUNT; i++)
        if (strcmp(KINDS[i].name, dtype) == 0) f->kind = i;
    if (strcmp(dtype, "BOOL") == 0) f->kind = K_U8;
    if (f->kind < 0) { PyErr_Format(PyExc_ValueError, "no C kernel for dtype %s", dtype); return -1; }
    if (f->hist_stride < 1 || f->block_bytes < 1 || f->hist_every < 1 || f->sample_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "bad histogram/block parameters");
        return -1;
    }
    f->has_hist = has_hist;
    f->simd = current->simd;
    f->variant = current->name;
    f->count = f->finite = f->zeros = f->nan = f->pos_inf = f->neg_inf = f->overflow = 0;
    f->max_abs_index = -1;
    f->mean = f->m2 = 0.0;
    f->min = INFINITY; f->max = -INFINITY; f->max_abs = -1.0;
    memset(f->histogram, 0, sizeof f->histogram);
    Py_XSETREF(f->samples, PyList_New(0));
    return f->samples ? 0 : -1;
}

/* Fold one block (any buffer); returns the index after it, or -1 with an exception set. */
static long long fold_one(Fold *f, PyObject *raw, long long first_index)
{
    Py_buffer view;
    if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) return -1;
    size_t itemsize = (size_t)KINDS[f->kind].itemsize, usable = (size_t)view.len - (size_t)view.len % itemsize;
    const uint8_t *p = view.buf;
    uint32_t crc;
    Py_BEGIN_ALLOW_THREADS
    crc = crc32(p, usable < (size_t)f->sample_bytes ? usable : (size_t)f->sample_bytes);
    fold_block(f, p, usable / itemsize, first_index);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *sample = PyLong_FromUnsignedLong(crc);
    if (sample == NULL || PyList_Append(f->samples, sample) < 0) { Py_XDECREF(sample); return -1; }
    Py_DECREF(sample);
    return first_index + (long long)(usable / itemsize);
}

static PyObject *Fold_block(Fold *f, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "block(raw, first_index)"); return NULL; }
    long long first_index = PyLong_AsLongLong(args[1]);
    if (first_index < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "first_index < 0");
        return NULL;
    }
    long long next = fold_one(f, args[0], first_index);
    return next < 0 ? NULL : PyLong_FromLongLong(next);
}

/* Every block an iterable yields, in order (no Python loop between blocks); returns the next index. */
static PyObject *Fold_blocks(Fold *f, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "blocks(iterable, first_index)"); return NULL; }
    long long index = PyLong_AsLongLong(args[1]);
    if (index < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "first_index < 0");
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(args[0]), *raw;
    if (iterator == NULL) return NULL;
    while ((raw = PyIter_Next(iterator)) != NULL) {
        index = fold_one(f, raw, index);
        Py_DECREF(raw);
        if (index < 0) break;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromLongLong(index);
}

static PyObject *Fold_result(Fold *f, PyObject *unused)
{
    PyObject *hist = PyTuple_New(BINS);
    if (hist == NULL) return NULL;
    for (int i = 0; i < BINS; i++) {
        PyObject *v = PyLong_FromLongLong(f->histogram[i]);
        if (v == NULL) { Py_DECREF(hist); return NULL; }
        PyTuple_SET_ITEM(hist, i, v);
    }
    return Py_BuildValue("LLddddLLLLLdLNO", f->count, f->finite, f->mean, f->m2, f->min, f->max, f->zeros, f->nan,
                         f->pos_inf, f->neg_inf, f->overflow, f->max_abs, f->max_abs_index, hist, f->samples);
}

static PyObject *Fold_variant(Fold *f, void *closure) { return PyUnicode_FromString(f->variant); }

static void Fold_dealloc(Fold *f)
{
    Py_XDECREF(f->samples);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMethodDef Fold_methods[] = {
    {"block", (PyCFunction)(void (*)(void))Fold_block, METH_FASTCALL, "Fold one block; returns the next index."},
    {"blocks", (PyCFunction)(void (*)(void))Fold_blocks, METH_FASTCALL, "Fold every block of an iterable."},
    {"result", (PyCFunction)Fold_result, METH_NOARGS, "The partial result as a tuple (see the module doc)."},
    {NULL},
};

static PyGetSetDef Fold_getset[] = {
    {"variant", (getter)Fold_variant, NULL, "the SIMD variant this fold runs", NULL},
    {NULL},
};

static PyTypeObject FoldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "weightaudit._kernel.Fold",
    .tp_basicsize = sizeof(Fold),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Statistics of consecutive blocks of one tensor (see the module doc).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fold_init,
    .tp_dealloc = (destructor)Fold_dealloc,
    .tp_methods = Fold_methods,
    .tp_getset = Fold_getset,
};

/* ---- module -------------------------------------------------------------------------------------------------- */

static PyObject *mod_variants(PyObject *self, PyObject *unused)
{
    PyObject *names = PyList_New(0);
    for (int i = 0; names && i < N_VARIANTS; i++) {
        if (!variant_usable(&VARIANTS[i])) continue;
        PyObject *name = PyUnicode_FromString(VARIANTS[i].name);
        if (name == NULL || PyList_Append(names, name) < 0) { Py_XDECREF(name); Py_DECREF(names); return NULL; }
        Py_DECREF(name);
    }
    if (names == NULL) return NULL;
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

static PyObject *mod_select(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) return NULL;
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(VARIANTS[i].name, name) == 0 && variant_usable(&VARIANTS[i])) {
            current = &VARIANTS[i];
            Py_RETURN_NONE;
        }
    return PyErr_Format(PyExc_ValueError, "kernel variant %s is not usable on this CPU", name);
}

static PyObject *mod_selected(PyObject *self, PyObject *unused) { return PyUnicode_FromString(current->name); }

static PyObject *mod_dtypes(PyObject *self, PyObject *unused)
{
    PyObject *names = PyTuple_New(K_COUNT + 1);
    for (int i = 0; names && i < K_COUNT; i++) PyTuple_SET_ITEM(names, i, PyUnicode_FromString(KINDS[i].name));
    if (names) PyTuple_SET_ITEM(names, K_COUNT, PyUnicode_FromString("BOOL"));
    return names;
}

/* extremes(dtype, raw) -> (min, max) of a block of a fast dtype without Inf/NaN codes (the numpy kernel's
   4-reduction fast path, the same values), else None: the caller's numpy path handles the rest. */
static PyObject *mod_extremes(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const char *dtype;
    if (nargs != 2 || (dtype = PyUnicode_AsUTF8(args[0])) == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "extremes(dtype, raw)");
        return NULL;
    }
    int kind = -1;
    for (int i = 0; i < K_COUNT; i++)
        if (strcmp(KINDS[i].name, dtype) == 0) kind = i;
    if (kind < 0 || !KINDS[kind].fast) Py_RETURN_NONE;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    size_t n = (size_t)view.len / (size_t)KINDS[kind].itemsize;
    block_t b;
    int ok = 0;
    if (n) {
        Py_BEGIN_ALLOW_THREADS
        ok = fast_block(current->simd, kind, view.buf, n, &b);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (!ok) Py_RETURN_NONE;
    return Py_BuildValue("dd", b.low, b.high);
}

static PyMethodDef module_methods[] = {
    {"extremes", (PyCFunction)(void (*)(void))mod_extremes, METH_FASTCALL, "(min, max) of a clean block, else None."},
    {"variants", mod_variants, METH_NOARGS, "SIMD variants usable on this CPU, best first."},
    {"select", mod_select, METH_O, "Use this variant for the folds created from now on."},
    {"selected", mod_selected, METH_NOARGS, "The variant new folds use."},
    {"dtypes", mod_dtypes, METH_NOARGS, "Dtype codes this kernel folds (little-endian bytes)."},
    {NULL},
};

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT, "weightaudit._kernel", "The statistics block kernel in C (see _kernel.c).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    crc_init();
    for (int i = N_VARIANTS - 1; i >= 0; i--)
        if (variant_usable(&VARIANTS[i])) current = &VARIANTS[i];
    if (PyType_Ready(&FoldType) < 0) return NULL;
    PyObject *m = PyModule_Create(&kernel_module);
    if (m == NULL) return NULL;
    Py_INCREF(&FoldType);
    if (PyModule_AddObject(m, "Fold", (PyObject *)&FoldType) < 0) { Py_DECREF(&FoldType); Py_DECREF(m); return NULL; }
    return m;
}
