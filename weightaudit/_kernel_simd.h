/* One vectorised variant of the statistics kernel's hot loops (see _kernel.c).

   Included once per instruction set, inside `#pragma GCC target(...)`, with SUFFIX (name suffix) and VB (vector
   bytes: 64 AVX-512, 32 AVX2, 16 baseline) defined. Written with GCC vector extensions, so the same source
   compiles to each instruction set and to NEON/scalar elsewhere. Only IEEE-like float codes without Inf/NaN
   reach these loops (the caller checks the code extremes and takes the scalar path otherwise).

   fast: the four integer extremes of the raw codes (unsigned/signed min and max, as numpy's _SignMagnitude)
         and the sum and sum of squares of the decoded values, in one pass. Sums are float32 per lane for
         FLUSH iterations, then added into float64 (so each float32 partial holds at most FLUSH terms).
   sums: sum and sum of squares of (x - shift), the re-centring pass of a block whose mean is large. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define W (VB / 4)          /* float32 lanes */
#define FLUSH 32            /* iterations between float32 -> float64 flushes */

typedef float FN(vf_) __attribute__((vector_size(VB)));
typedef int32_t FN(vi_) __attribute__((vector_size(VB)));
typedef uint32_t FN(vu_) __attribute__((vector_size(VB)));
typedef uint16_t FN(vu16_) __attribute__((vector_size(VB / 2)));
typedef int16_t FN(vi16_) __attribute__((vector_size(VB / 2)));
typedef uint8_t FN(vu8_) __attribute__((vector_size(VB / 4)));
typedef int8_t FN(vi8_) __attribute__((vector_size(VB / 4)));
#define vf FN(vf_)
#define vi FN(vi_)
#define vu FN(vu_)

/* Element-wise min/max as compare + select (C has no vector ?:). */
#define VSEL(m, a, b) (__typeof__(a))((((__typeof__(m))(a)) & (m)) | (((__typeof__(m))(b)) & ~(m)))
#define VMIN(a, b) VSEL((a) < (b), a, b)
#define VMAX(a, b) VSEL((a) > (b), a, b)

/* Codes (zero-extended to 32 bits) -> float32 values; exact for every finite code (see stats_decode). */
/* small_float (see _kernel_core.h) lane by lane: no float32 subnormal is ever formed. */
static inline __attribute__((always_inline)) vf FN(small_)(vu w, int bits, int mantissa_bits, int bias)
{
    vu top = w << (32 - bits), sign = top & 0x80000000u;
    vu magnitude = (top & 0x7FFFFFFFu) >> ((32 - bits) - (23 - mantissa_bits));
    vf normal = (vf)(magnitude + ((uint32_t)(127 - bias) << 23));
    vf implicit = (vf)((vu){0} + ((uint32_t)(128 - bias) << 23));
    vf subnormal = (vf)(magnitude | ((uint32_t)(128 - bias) << 23)) - implicit;
    vf value = VSEL((vi)((magnitude >> 23) == 0), subnormal, normal);
    return (vf)((vu)value | sign);
}

static inline __attribute__((always_inline)) vf FN(decode_)(int kind, vu w)
{
    switch (kind) {
    case K_F32: return (vf)w;
    case K_BF16: return (vf)(w << 16);
    case K_F16: return FN(small_)(w, 16, 10, 15);
    case K_E5M2: return FN(small_)(w, 8, 2, 15);
    default: return FN(small_)(w, 8, 3, 7);   /* K_E4M3 */
    }
}

#define FLUSH_LANES(a1, a2, s1, s2) do { \
        for (int j_ = 0; j_ < W; j_++) { s1 += (double)(a1)[j_]; s2 += (double)(a2)[j_]; } \
        a1 = (vf){0}; a2 = (vf){0}; \
    } while (0)

#define FAST_LOOP(VC, VS, CT, ST, KIND) do { \
        VC umin, umax = {0}; VS smin, smax; \
        memset(&umin, 0xFF, sizeof umin); \
        smin = (VS)(umin >> 1); smax = ~smin; \
        vf a1 = {0}, a2 = {0}; double s1 = 0, s2 = 0; size_t i = 0; int flush = 0; \
        for (; i + W <= n; i += W) { \
            VC c; memcpy(&c, p + i * sizeof(CT), sizeof c); \
            umin = VMIN(umin, c); umax = VMAX(umax, c); \
            smin = VMIN(smin, (VS)c); smax = VMAX(smax, (VS)c); \
            vf x = FN(decode_)(KIND, __builtin_convertvector(c, vu)); \
            a1 += x; a2 += x * x; \
            if (++flush == FLUSH) { flush = 0; FLUSH_LANES(a1, a2, s1, s2); } \
        } \
        FLUSH_LANES(a1, a2, s1, s2); \
        uint64_t lo_u = UINT64_MAX, hi_u = 0; int64_t lo_s = INT64_MAX, hi_s = INT64_MIN; \
        for (int j = 0; j < W; j++) { \
            if (umin[j] < lo_u) lo_u = umin[j]; \
            if (umax[j] > hi_u) hi_u = umax[j]; \
            if (smin[j] < lo_s) lo_s = smin[j]; \
            if (smax[j] > hi_s) hi_s = smax[j]; \
        } \
        for (; i < n; i++) { \
            CT c; memcpy(&c, p + i * sizeof(CT), sizeof c); \
            if (c < lo_u) lo_u = c; \
            if (c > hi_u) hi_u = c; \
            if ((ST)c < lo_s) lo_s = (ST)c; \
            if ((ST)c > hi_s) hi_s = (ST)c; \
            double x = decode_finite(KIND, c); \
            s1 += x; s2 += x * x; \
        } \
        out->umin = lo_u; out->umax = hi_u; out->smin = lo_s; out->smax = hi_s; out->s1 = s1; out->s2 = s2; \
    } while (0)

__attribute__((unused)) static void FN(fast_)(int kind, const uint8_t *p, size_t n, fast_t *out)
{
    switch (kind) {
    case K_F32: FAST_LOOP(vu, vi, uint32_t, int32_t, K_F32); break;
    case K_BF16: FAST_LOOP(FN(vu16_), FN(vi16_), uint16_t, int16_t, K_BF16); break;
    case K_F16: FAST_LOOP(FN(vu16_), FN(vi16_), uint16_t, int16_t, K_F16); break;
    case K_E5M2: FAST_LOOP(FN(vu8_), FN(vi8_), uint8_t, int8_t, K_E5M2); break;
    case K_E4M3: FAST_LOOP(FN(vu8_), FN(vi8_), uint8_t, int8_t, K_E4M3); break;
    }
}

#define SUMS_LOOP(VC, CT, KIND) do { \
        vf a1 = {0}, a2 = {0}; double s1 = 0, s2 = 0; size_t i = 0; int flush = 0; \
        for (; i + W <= n; i += W) { \
            VC c; memcpy(&c, p + i * sizeof(CT), sizeof c); \
            vf x = FN(decode_)(KIND, __builtin_convertvector(c, vu)) - shift; \
            a1 += x; a2 += x * x; \
            if (++flush == FLUSH) { flush = 0; FLUSH_LANES(a1, a2, s1, s2); } \
        } \
        FLUSH_LANES(a1, a2, s1, s2); \
        for (; i < n; i++) { \
            CT c; memcpy(&c, p + i * sizeof(CT), sizeof c); \
            float x = (float)decode_finite(KIND, c) - shift; \
            s1 += x; s2 += (double)x * x; \
        } \
        *sum1 = s1; *sum2 = s2; \
    } while (0)

static void FN(sums_)(int kind, const uint8_t *p, size_t n, float shift, double *sum1, double *sum2)
{
    switch (kind) {
    case K_F32: SUMS_LOOP(vu, uint32_t, K_F32); break;
    case K_BF16: SUMS_LOOP(FN(vu16_), uint16_t, K_BF16); break;
    case K_F16: SUMS_LOOP(FN(vu16_), uint16_t, K_F16); break;
    case K_E5M2: SUMS_LOOP(FN(vu8_), uint8_t, K_E5M2); break;
    case K_E4M3: SUMS_LOOP(FN(vu8_), uint8_t, K_E4M3); break;
    }
}

/* Zeros (+0 and -0) of a block of float codes: only run when the code extremes show one may be there. */
static int64_t FN(count_zeros_)(int kind, const uint8_t *p, size_t n)
{
    int64_t zeros = 0;
    if (kind == K_F32) {
        for (size_t i = 0; i < n; i++) { uint32_t c; memcpy(&c, p + 4 * i, 4); zeros += (c & 0x7FFFFFFFu) == 0; }
    } else if (kind == K_BF16 || kind == K_F16) {
        for (size_t i = 0; i < n; i++) { uint16_t c; memcpy(&c, p + 2 * i, 2); zeros += (c & 0x7FFFu) == 0; }
    } else {
        for (size_t i = 0; i < n; i++) zeros += (p[i] & 0x7Fu) == 0;
    }
    return zeros;
}

/* |x| > 65504 for F32/BF16 (the only fast kinds that can overflow fp16): the magnitude code above the
   largest code whose value is <= 65504 (codes sort by magnitude). */
static int64_t FN(count_overflow_)(int kind, const uint8_t *p, size_t n)
{
    int64_t over = 0;
    if (kind == K_F32) {
        for (size_t i = 0; i < n; i++) { uint32_t c; memcpy(&c, p + 4 * i, 4); over += (c & 0x7FFFFFFFu) > 0x477FE000u; }
    } else if (kind == K_BF16) {
        for (size_t i = 0; i < n; i++) { uint16_t c; memcpy(&c, p + 2 * i, 2); over += (c & 0x7FFFu) > 0x477Fu; }
    }
    return over;
}

/* First element whose code & mask == target (n when none): 64 codes at a time tested with a vectorisable OR,
   then the chunk that holds it element by element. */
#define FIND_LOOP(CT) do { \
        for (; i + 64 <= n; i += 64) { \
            int hit = 0; \
            for (int j = 0; j < 64; j++) { CT c; memcpy(&c, p + (i + j) * sizeof(CT), sizeof c); hit |= (c & (CT)mask) == (CT)target; } \
            if (hit) break; \
        } \
        for (; i < n; i++) { CT c; memcpy(&c, p + i * sizeof(CT), sizeof c); if ((c & (CT)mask) == (CT)target) return i; } \
    } while (0)

static size_t FN(find_code_)(int itemsize, const uint8_t *p, size_t n, uint64_t mask, uint64_t target)
{
    size_t i = 0;
    switch (itemsize) {
    case 1: FIND_LOOP(uint8_t); break;
    case 2: FIND_LOOP(uint16_t); break;
    case 4: FIND_LOOP(uint32_t); break;
    default: FIND_LOOP(uint64_t); break;
    }
    return n;
}
#undef FIND_LOOP

#ifndef X86_BITS   /* else _kernel_x86.h, included next, puts its hand-written fast loops in the table */
static const simd_t FN(variant_) = {FN(fast_), FN(sums_), FN(count_zeros_), FN(count_overflow_), FN(find_code_)};
#endif

#undef vf
#undef vi
#undef vu
#undef VSEL
#undef VMIN
#undef VMAX
#undef FLUSH_LANES
#undef FAST_LOOP
#undef SUMS_LOOP
#undef W
#undef FLUSH
#undef FN
#undef CAT
#undef CAT_
