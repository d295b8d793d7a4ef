/* Hand-written AVX2 / AVX-512 fast loops for F32, BF16, F16, F8_E5M2 and F8_E4M3.

   Included after _kernel_simd.h inside the same `#pragma GCC target`, with SUFFIX and X86_BITS (256 or 512).
   Same results as _kernel_simd.h's FN(fast_) (the baseline variant's loop): the four integer extremes of the
   codes with native min/max instructions, BF16 widened by interleaving with zeros, F16 and F8 by the hardware
   F16 conversion (exact for every finite code, subnormals included), float32 lane sums flushed to float64
   every FLUSH_X86 terms a lane. The order of lanes does not matter to any of these. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SUFFIX)
#define FLUSH_X86 32
/* Software prefetch this far ahead of the loads: +30% CPU throughput over page-cached files here (1/2/4/8/16 KiB
   ahead: +19/+26/+31/+32/+31% for F32, same shape for BF16/F16; bench in RESULTS.md). A prefetch never faults,
   so reading ahead past the block is harmless. */
#define PREFETCH_AHEAD 4096
#define PREFETCH(q) _mm_prefetch((const char *)(q) + PREFETCH_AHEAD, _MM_HINT_T0)

#if X86_BITS == 512
#define VI __m512i
#define VF __m512
#define VD __m512d
#define VBYTES 64
#define LOADI(q) _mm512_loadu_si512((const void *)(q))
#define ZEROI() _mm512_setzero_si512()
#define ZEROF() _mm512_setzero_ps()
#define ZEROD() _mm512_setzero_pd()
#define SET16(x) _mm512_set1_epi16((short)(x))
#define SET32(x) _mm512_set1_epi32((int)(x))
#define MINU16 _mm512_min_epu16
#define MAXU16 _mm512_max_epu16
#define MINS16 _mm512_min_epi16
#define MAXS16 _mm512_max_epi16
#define MINU32 _mm512_min_epu32
#define MAXU32 _mm512_max_epu32
#define MINS32 _mm512_min_epi32
#define MAXS32 _mm512_max_epi32
#define ADDF _mm512_add_ps
#define FMAF _mm512_fmadd_ps
#define ADDD _mm512_add_pd
#define CASTF _mm512_castsi512_ps
#define CVT_LO(a) _mm512_cvtps_pd(_mm512_castps512_ps256(a))
#define CVT_HI(a) _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1))
#define UNPACKLO16 _mm512_unpacklo_epi16
#define UNPACKHI16 _mm512_unpackhi_epi16
#define CVTPH_LO(c) _mm512_cvtph_ps(_mm512_castsi512_si256(c))
#define CVTPH_HI(c) _mm512_cvtph_ps(_mm512_extracti64x4_epi64(c, 1))
#define STOREI(q, v) _mm512_storeu_si512((void *)(q), v)
#define SET8(x) _mm512_set1_epi8((char)(x))
#define MINU8 _mm512_min_epu8
#define MAXU8 _mm512_max_epu8
#define MINS8 _mm512_min_epi8
#define MAXS8 _mm512_max_epi8
#define WIDEN8_LO(c) _mm512_cvtepu8_epi16(_mm512_castsi512_si256(c))
#define WIDEN8_HI(c) _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(c, 1))
#define SLLI16 _mm512_slli_epi16
#define ANDI _mm512_and_si512
#define ORI _mm512_or_si512
#define STORED(q, v) _mm512_storeu_pd(q, v)
#else
#define VI __m256i
#define VF __m256
#define VD __m256d
#define VBYTES 32
#define LOADI(q) _mm256_loadu_si256((const __m256i *)(q))
#define ZEROI() _mm256_setzero_si256()
#define ZEROF() _mm256_setzero_ps()
#define ZEROD() _mm256_setzero_pd()
#define SET16(x) _mm256_set1_epi16((short)(x))
#define SET32(x) _mm256_set1_epi32((int)(x))
#define MINU16 _mm256_min_epu16
#define MAXU16 _mm256_max_epu16
#define MINS16 _mm256_min_epi16
#define MAXS16 _mm256_max_epi16
#define MINU32 _mm256_min_epu32
#define MAXU32 _mm256_max_epu32
#define MINS32 _mm256_min_epi32
#define MAXS32 _mm256_max_epi32
#define ADDF _mm256_add_ps
#define FMAF _mm256_fmadd_ps
#define ADDD _mm256_add_pd
#define CASTF _mm256_castsi256_ps
#define CVT_LO(a) _mm256_cvtps_pd(_mm256_castps256_ps128(a))
#define CVT_HI(a) _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))
#define UNPACKLO16 _mm256_unpacklo_epi16
#define UNPACKHI16 _mm256_unpackhi_epi16
#define CVTPH_LO(c) _mm256_cvtph_ps(_mm256_castsi256_si128(c))
#define CVTPH_HI(c) _mm256_cvtph_ps(_mm256_extracti128_si256(c, 1))
#define STOREI(q, v) _mm256_storeu_si256((__m256i *)(q), v)
#define SET8(x) _mm256_set1_epi8((char)(x))
#define MINU8 _mm256_min_epu8
#define MAXU8 _mm256_max_epu8
#define MINS8 _mm256_min_epi8
#define MAXS8 _mm256_max_epi8
#define WIDEN8_LO(c) _mm256_cvtepu8_epi16(_mm256_castsi256_si128(c))
#define WIDEN8_HI(c) _mm256_cvtepu8_epi16(_mm256_extracti128_si256(c, 1))
#define SLLI16 _mm256_slli_epi16
#define ANDI _mm256_and_si256
#define ORI _mm256_or_si256
#define STORED(q, v) _mm256_storeu_pd(q, v)
#endif

#define FLUSH_SUMS() do { \
        d1 = ADDD(d1, ADDD(CVT_LO(a1), CVT_HI(a1))); d1 = ADDD(d1, ADDD(CVT_LO(b1), CVT_HI(b1))); \
        d2 = ADDD(d2, ADDD(CVT_LO(a2), CVT_HI(a2))); d2 = ADDD(d2, ADDD(CVT_LO(b2), CVT_HI(b2))); \
        a1 = b1 = a2 = b2 = ZEROF(); \
    } while (0)

/* One loop per dtype: the widening (WIDEN sets x and y from the codes c) is the only difference. */
#define LOOP16(WIDEN) \
    for (; i + per <= n; i += per) { \
        PREFETCH(p + 2 * i); \
        VI c = LOADI(p + 2 * i); \
        umin = MINU16(umin, c); umax = MAXU16(umax, c); smin = MINS16(smin, c); smax = MAXS16(smax, c); \
        VF x, y; WIDEN; \
        a1 = ADDF(a1, x); b1 = ADDF(b1, y); a2 = FMAF(x, x, a2); b2 = FMAF(y, y, b2); \
        if (++flush == FLUSH_X86) { flush = 0; FLUSH_SUMS(); } \
    }

static void FN(fast_x86_)(int kind, const uint8_t *p, size_t n, fast_t *out)
{
    const int itemsize = KINDS[kind].itemsize;
    const size_t per = VBYTES / itemsize;
    VI umin = SET32(-1), umax = ZEROI(), smin, smax, zero = ZEROI();
    if (itemsize == 1) { smin = SET8(0x7F); smax = SET8(0x80); }
    else if (itemsize == 2) { smin = SET16(0x7FFF); smax = SET16(0x8000); }
    else { smin = SET32(0x7FFFFFFF); smax = SET32(0x80000000u); }
    double scale = 1.0;   /* the vector sums are of value * 2**-8 for E4M3 (see below) */
    VF a1 = ZEROF(), b1 = ZEROF(), a2 = ZEROF(), b2 = ZEROF();
    VD d1 = ZEROD(), d2 = ZEROD();
    size_t i = 0;
    int flush = 0;
    if (kind == K_F32) {   /* two vectors per iteration: two independent add chains, as the 16-bit loops */
        for (; i + 2 * per <= n; i += 2 * per) {
            PREFETCH(p + 4 * i);
            if (VBYTES == 64) PREFETCH(p + 4 * i + 64);
            VI c = LOADI(p + 4 * i), e = LOADI(p + 4 * i + VBYTES);
            umin = MINU32(umin, c); umax = MAXU32(umax, c); smin = MINS32(smin, c); smax = MAXS32(smax, c);
            umin = MINU32(umin, e); umax = MAXU32(umax, e); smin = MINS32(smin, e); smax = MAXS32(smax, e);
            VF x = CASTF(c), y = CASTF(e);
            a1 = ADDF(a1, x); b1 = ADDF(b1, y); a2 = FMAF(x, x, a2); b2 = FMAF(y, y, b2);
            if (++flush == FLUSH_X86) { flush = 0; FLUSH_SUMS(); }
        }
    } else if (kind == K_BF16) {
        LOOP16(x = CASTF(UNPACKLO16(zero, c)); y = CASTF(UNPACKHI16(zero, c)))
    } else if (kind == K_F16) {
        LOOP16(x = CVTPH_LO(c); y = CVTPH_HI(c))
    } else {   /* F8: E5M2 is the top byte of an F16; E4M3's bits placed as an F16 are its value * 2**-8 (subnormals
                  included), so the hardware F16 conversion decodes both exactly and the sums are scaled after */
        const int e4m3 = kind == K_E4M3;
        const VI low7 = SET16(0x7F), sign = SET16(0x80);
        for (; i + per <= n; i += per) {
            PREFETCH(p + i);
            VI c = LOADI(p + i);
            umin = MINU8(umin, c); umax = MAXU8(umax, c); smin = MINS8(smin, c); smax = MAXS8(smax, c);
            VI h0 = WIDEN8_LO(c), h1 = WIDEN8_HI(c);
            if (e4m3) {
                h0 = ORI(SLLI16(ANDI(h0, low7), 7), SLLI16(ANDI(h0, sign), 8));
                h1 = ORI(SLLI16(ANDI(h1, low7), 7), SLLI16(ANDI(h1, sign), 8));
            } else {
                h0 = SLLI16(h0, 8);
                h1 = SLLI16(h1, 8);
            }
            VF x0 = CVTPH_LO(h0), x1 = CVTPH_HI(h0), x2 = CVTPH_LO(h1), x3 = CVTPH_HI(h1);
            a1 = ADDF(a1, x0); b1 = ADDF(b1, x1); a2 = FMAF(x0, x0, a2); b2 = FMAF(x1, x1, b2);
            a1 = ADDF(a1, x2); b1 = ADDF(b1, x3); a2 = FMAF(x2, x2, a2); b2 = FMAF(x3, x3, b2);
            if (++flush == FLUSH_X86 / 2) { flush = 0; FLUSH_SUMS(); }   /* still FLUSH_X86 terms a lane */
        }
        scale = e4m3 ? 256.0 : 1.0;
    }
    FLUSH_SUMS();
    double sums[2][VBYTES / 8];
    STORED(sums[0], d1);
    STORED(sums[1], d2);
    double s1 = 0, s2 = 0;
    for (int j = 0; j < VBYTES / 8; j++) { s1 += sums[0][j]; s2 += sums[1][j]; }
    s1 *= scale;
    s2 *= scale * scale;
    uint8_t lanes[4][VBYTES];
    STOREI(lanes[0], umin); STOREI(lanes[1], umax); STOREI(lanes[2], smin); STOREI(lanes[3], smax);
    uint64_t lo_u = UINT64_MAX, hi_u = 0;
    int64_t lo_s = INT64_MAX, hi_s = INT64_MIN;
    for (int j = 0; j < VBYTES / itemsize; j++) {
        uint64_t u0 = load_code(itemsize, lanes[0] + j * itemsize), u1 = load_code(itemsize, lanes[1] + j * itemsize);
        int64_t s0 = signed_code(itemsize, load_code(itemsize, lanes[2] + j * itemsize));
        int64_t s3 = signed_code(itemsize, load_code(itemsize, lanes[3] + j * itemsize));
        if (u0 < lo_u) lo_u = u0;
        if (u1 > hi_u) hi_u = u1;
        if (s0 < lo_s) lo_s = s0;
        if (s3 > hi_s) hi_s = s3;
    }
    for (; i < n; i++) {   /* the tail, element by element */
        uint64_t c = load_code(itemsize, p + i * itemsize);
        int64_t s = signed_code(itemsize, c);
        if (c < lo_u) lo_u = c;
        if (c > hi_u) hi_u = c;
        if (s < lo_s) lo_s = s;
        if (s > hi_s) hi_s = s;
        double x = decode_finite(kind, c);
        s1 += x; s2 += x * x;
    }
    out->umin = lo_u; out->umax = hi_u; out->smin = lo_s; out->smax = hi_s; out->s1 = s1; out->s2 = s2;
}

static const simd_t FN(variant_) = {FN(fast_x86_), FN(sums_), FN(count_zeros_), FN(count_overflow_), FN(find_code_)};

#undef VI
#undef VF
#undef VD
#undef VBYTES
#undef LOADI
#undef ZEROI
#undef ZEROF
#undef ZEROD
#undef SET16
#undef SET32
#undef MINU16
#undef MAXU16
#undef MINS16
#undef MAXS16
#undef MINU32
#undef MAXU32
#undef MINS32
#undef MAXS32
#undef ADDF
#undef FMAF
#undef ADDD
#undef CASTF
#undef CVT_LO
#undef CVT_HI
#undef UNPACKLO16
#undef UNPACKHI16
#undef CVTPH_LO
#undef CVTPH_HI
#undef STOREI
#undef STORED
#undef ORI
#undef ANDI
#undef SLLI16
#undef WIDEN8_HI
#undef WIDEN8_LO
#undef MAXS8
#undef MINS8
#undef MAXU8
#undef MINU8
#undef SET8
#undef FLUSH_SUMS
#undef LOOP16
#undef FLUSH_X86
#undef PREFETCH_AHEAD
#undef PREFETCH
#undef FN
#undef CAT
#undef CAT_
