/* The statistics kernel's element and block level (included once by _kernel.c): the dtypes, scalar decoding,
   the SIMD variants (_kernel_simd.h, _kernel_x86.h) and the statistics of one block, vectorised or element by
   element. _kernel.c adds the running fold, the histogram, the max-|x| search and the Python binding. */
enum { K_F32, K_BF16, K_F16, K_E5M2, K_E4M3, K_F64, K_I8, K_U8, K_I16, K_U16, K_I32, K_U32, K_I64, K_U64, K_COUNT };

typedef struct {
    const char *name;
    int itemsize;
    int fast;           /* has a vectorised fast path (IEEE-like codes, float32 values) */
    int codes;          /* IEEE-like float codes: min/max/zero/special from integer extremes */
    uint64_t max_code;  /* largest finite magnitude code */
    int lanes;          /* numpy decodes blocks of whole 32-bit words lane by lane: its element order */
    int work_double;    /* numpy's working dtype is float64 (else float32): the histogram's arithmetic */
    int can_overflow;   /* fp16 overflow is counted */
} kind_t;

static const kind_t KINDS[K_COUNT] = {
    [K_F32] = {"F32", 4, 1, 1, 0x7F7FFFFFu, 1, 0, 1},
    [K_BF16] = {"BF16", 2, 1, 1, 0x7F7Fu, 2, 0, 1},
    [K_F16] = {"F16", 2, 1, 1, 0x7BFFu, 2, 0, 0},
    [K_E5M2] = {"F8_E5M2", 1, 1, 1, 0x7Bu, 4, 0, 0},
    [K_E4M3] = {"F8_E4M3", 1, 1, 1, 0x7Eu, 4, 0, 0},
    [K_F64] = {"F64", 8, 0, 1, 0x7FEFFFFFFFFFFFFFull, 1, 1, 1},
    [K_I8] = {"I8", 1, 0, 0, 0, 1, 0, 0},
    [K_U8] = {"U8", 1, 0, 0, 0, 1, 0, 0},
    [K_I16] = {"I16", 2, 0, 0, 0, 1, 0, 0},
    [K_U16] = {"U16", 2, 0, 0, 0, 1, 0, 0},
    [K_I32] = {"I32", 4, 0, 0, 0, 1, 1, 0},
    [K_U32] = {"U32", 4, 0, 0, 0, 1, 1, 0},
    [K_I64] = {"I64", 8, 0, 0, 0, 1, 1, 0},
    [K_U64] = {"U64", 8, 0, 0, 0, 1, 1, 0},
};

#if PY_BIG_ENDIAN   /* codes are read in place as little-endian integers: fail the (optional) build instead */
#error "the C statistics kernel reads little-endian codes in place; big-endian hosts use the numpy kernel"
#endif

#define FP16_MAX 65504.0
#define FLOAT32_SAFE_MAGNITUDE 1e15   /* above this, sums in float64 only (float32 squares could overflow) */

/* ---- scalar decoding ------------------------------------------------------------------------------------ */

static inline uint64_t load_code(int itemsize, const uint8_t *p)
{
    switch (itemsize) {
    case 1: return p[0];
    case 2: { uint16_t c; memcpy(&c, p, 2); return c; }
    case 4: { uint32_t c; memcpy(&c, p, 4); return c; }
    default: { uint64_t c; memcpy(&c, p, 8); return c; }
    }
}

static inline int64_t signed_code(int itemsize, uint64_t c)
{
    switch (itemsize) {
    case 1: return (int8_t)c;
    case 2: return (int16_t)c;
    case 4: return (int32_t)c;
    default: return (int64_t)c;
    }
}

static inline float bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

/* A finite code of a fast kind -> its value (numpy's bit-trick decoders, exact). */
/* A finite code of a small float format (F16, E5M2, E4M3) -> float32, the value numpy's bit trick gives, without
   ever forming a float32 subnormal (x86 takes a ~100-cycle assist per subnormal operand): the exponent field
   is re-biased by an integer add; a subnormal code becomes a normal float minus its implicit bit (exact). */
static inline float small_float(uint32_t code, int bits, int mantissa_bits, int bias)
{
    uint32_t top = code << (32 - bits), sign = top & 0x80000000u;
    uint32_t magnitude = (top & 0x7FFFFFFFu) >> ((32 - bits) - (23 - mantissa_bits));
    float value = magnitude >> 23 ? bits_to_float(magnitude + ((uint32_t)(127 - bias) << 23))
        : bits_to_float(magnitude | ((uint32_t)(128 - bias) << 23)) - bits_to_float((uint32_t)(128 - bias) << 23);
    uint32_t out;
    memcpy(&out, &value, 4);
    return bits_to_float(out | sign);
}

static inline double decode_finite(int kind, uint64_t c)
{
    switch (kind) {
    case K_F32: return bits_to_float((uint32_t)c);
    case K_BF16: return bits_to_float((uint32_t)c << 16);
    case K_F16: return small_float((uint32_t)c, 16, 10, 15);
    case K_E5M2: return small_float((uint32_t)c, 8, 2, 15);
    default: return small_float((uint32_t)c, 8, 3, 7);   /* K_E4M3 */
    }
}

/* Any element -> its value in numpy's working dtype (float32 values returned exactly as double). */
static inline double decode_any(int kind, const uint8_t *p)
{
    const kind_t *k = &KINDS[kind];
    uint64_t c = load_code(k->itemsize, p);
    switch (kind) {
    case K_F64: { double d; memcpy(&d, &c, 8); return d; }
    case K_I8: return (float)(int8_t)c;
    case K_U8: return (float)(uint8_t)c;
    case K_I16: return (float)(int16_t)c;
    case K_U16: return (float)(uint16_t)c;
    case K_I32: return (double)(int32_t)c;
    case K_U32: return (double)(uint32_t)c;
    case K_I64: return (double)(int64_t)c;
    case K_U64: return (double)c;
    case K_F32: case K_BF16: return decode_finite(kind, c);   /* Inf/NaN codes decode to Inf/NaN */
    default: break;
    }
    uint64_t sign = c & 0x80, magnitude = c & 0x7F;           /* the bit-trick formats: Inf/NaN codes */
    if (kind == K_F16) { sign = c & 0x8000; magnitude = c & 0x7FFF; }
    if (magnitude > k->max_code) {
        if (kind == K_E4M3) return NAN;
        uint64_t mantissa = kind == K_F16 ? (c & 0x3FF) : (c & 0x3);
        return mantissa ? NAN : (sign ? -INFINITY : INFINITY);
    }
    return decode_finite(kind, c);
}

/* ---- SIMD variants ---------------------------------------------------------------------------------------- */

typedef struct { uint64_t umin, umax; int64_t smin, smax; double s1, s2; } fast_t;
typedef struct {
    void (*fast)(int kind, const uint8_t *p, size_t n, fast_t *out);
    void (*sums)(int kind, const uint8_t *p, size_t n, float shift, double *s1, double *s2);
    int64_t (*count_zeros)(int kind, const uint8_t *p, size_t n);
    int64_t (*count_overflow)(int kind, const uint8_t *p, size_t n);
    size_t (*find_code)(int itemsize, const uint8_t *p, size_t n, uint64_t mask, uint64_t target);
} simd_t;

#define SUFFIX generic
#define VB 16
#include "_kernel_simd.h"
#undef SUFFIX
#undef VB

/* GCC only (clang has no `#pragma GCC target`): other compilers build the baseline loops, which are never
   picked by themselves, so the numpy kernel runs there unless c-generic is asked for. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_X86 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define SUFFIX avx2
#define VB 32
#define X86_BITS 256
#include "_kernel_simd.h"
#include "_kernel_x86.h"
#undef X86_BITS
#undef SUFFIX
#undef VB
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#define SUFFIX avx512
#define VB 64
#define X86_BITS 512
#include "_kernel_simd.h"
#include "_kernel_x86.h"
#undef X86_BITS
#undef SUFFIX
#undef VB
#pragma GCC pop_options
#endif

typedef struct { const char *name; const simd_t *simd; } variant_t;

static const variant_t VARIANTS[] = {
#ifdef HAVE_X86
    {"avx512", &variant_avx512},
    {"avx2", &variant_avx2},
#endif
    {"generic", &variant_generic},
};
#define N_VARIANTS ((int)(sizeof VARIANTS / sizeof VARIANTS[0]))

static int variant_usable(const variant_t *v)
{
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (strcmp(v->name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (strcmp(v->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#endif
    return strcmp(v->name, "generic") == 0;
}

static const variant_t *current;

/* ---- one block ---------------------------------------------------------------------------------------------- */

typedef struct {
    int64_t finite, zeros, nan, pos_inf, neg_inf, overflow;
    double low, high, s1, s2;   /* finite min/max; sums of x and x^2 (shift 0) over finite values */
    uint64_t low_code, high_code;   /* the codes of low/high (when by_codes) */
    int by_codes;               /* low/high came from the code extremes (IEEE-like kind, no Inf/NaN) */
    int special;                /* holds Inf/NaN codes */
    int exact_sums;             /* s1/s2 are float64 sums (else float32 lanes) */
} block_t;

/* min/max of finite codes from the 4 integer extremes (numpy's _SignMagnitude.extremes); 0 on Inf/NaN codes. */
static int code_extremes(const kind_t *k, uint64_t umin, uint64_t umax, int64_t smin, int64_t smax,
                         int kind, block_t *b)
{
    uint64_t sign = 1ull << (8 * k->itemsize - 1), high_code, low_code;
    if (umin < sign) {
        if (smax >= 0 && (uint64_t)smax > k->max_code) return 0;
        high_code = (uint64_t)smax;
    } else {
        high_code = umin;
    }
    if (umax >= sign) {
        if (umax - sign > k->max_code) return 0;
        low_code = umax;
    } else {
        low_code = umin;
    }
    uint8_t buf[8];
    memcpy(buf, &low_code, 8);
    b->low = kind == K_F64 ? decode_any(kind, buf) : decode_finite(kind, low_code);
    memcpy(buf, &high_code, 8);
    b->high = kind == K_F64 ? decode_any(kind, buf) : decode_finite(kind, high_code);
    b->low_code = low_code;
    b->high_code = high_code;
    b->by_codes = 1;
    return 1;
}

/* Every statistic of a block, element by element: any kind, any block (Inf/NaN included). */
static void scalar_block(int kind, const uint8_t *p, size_t n, block_t *b)
{
    const kind_t *k = &KINDS[kind];
    uint64_t umin = UINT64_MAX, umax = 0;
    int64_t smin = INT64_MAX, smax = INT64_MIN;
    double low = INFINITY, high = -INFINITY, s1 = 0, s2 = 0;
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = p + i * k->itemsize;
        if (k->codes) {
            uint64_t c = load_code(k->itemsize, e);
            int64_t s = signed_code(k->itemsize, c);
            if (c < umin) umin = c;
            if (c > umax) umax = c;
            if (s < smin) smin = s;
            if (s > smax) smax = s;
        }
        double x = decode_any(kind, e);
        if (isnan(x)) { b->nan++; continue; }
        if (isinf(x)) { if (x > 0) b->pos_inf++; else b->neg_inf++; continue; }
        b->finite++;
        if (x < low) low = x;
        if (x > high) high = x;
        b->zeros += x == 0.0;
        b->overflow += k->can_overflow && fabs(x) > FP16_MAX;
        s1 += x;
        s2 += x * x;
    }
    b->special = b->nan + b->pos_inf + b->neg_inf > 0;
    b->low = low; b->high = high; b->s1 = s1; b->s2 = s2; b->exact_sums = 1;
    if (k->codes && n && !b->special)   /* numpy reads these blocks' min/max from the codes (-0 below +0) */
        code_extremes(k, umin, umax, smin, smax, kind, b);
}

/* The vectorised pass for a fast kind; 0 when the block holds Inf/NaN codes (take scalar_block). */
static int fast_block(const simd_t *simd, int kind, const uint8_t *p, size_t n, block_t *b)
{
    const kind_t *k = &KINDS[kind];
    fast_t f;
    memset(b, 0, sizeof *b);
    simd->fast(kind, p, n, &f);
    if (!code_extremes(k, f.umin, f.umax, f.smin, f.smax, kind, b)) return 0;
    uint64_t sign = 1ull << (8 * k->itemsize - 1);
    b->finite = (int64_t)n;
    b->s1 = f.s1; b->s2 = f.s2;
    if (f.umin == 0 || f.smin == -(int64_t)sign) b->zeros = simd->count_zeros(kind, p, n);
    double magnitude = fmax(-b->low, b->high);
    if (k->can_overflow && magnitude > FP16_MAX) b->overflow = simd->count_overflow(kind, p, n);
    return 1;
}

/* Sums of (x - shift) over the finite values, in float64, element by element (the slow and big-value paths). */
static void scalar_sums(int kind, const uint8_t *p, size_t n, double shift, double *s1, double *s2)
{
    double t1 = 0, t2 = 0;
    for (size_t i = 0; i < n; i++) {
        double x = decode_any(kind, p + i * KINDS[kind].itemsize);
        if (!isfinite(x)) continue;
        double d = x - shift;
        t1 += d; t2 += d * d;
    }
    *s1 = t1; *s2 = t2;
}
