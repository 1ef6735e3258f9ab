// The four-lane BLAKE2b of blake2b_x4.c, included there once per instruction set: X4 is the
// target attribute, X4_NAME suffixes each function, X4_AVX512 picks the rotations.

// Rotations right by 32, 24, 16 and 63: AVX-512VL has a 64-bit rotate; plain AVX2 shuffles
// bytes within each word (32, 24, 16) or shifts and adds (63).
#if X4_AVX512
X4 static inline __m256i X4_NAME(rot32)(__m256i x) { return _mm256_ror_epi64(x, 32); }
X4 static inline __m256i X4_NAME(rot24)(__m256i x) { return _mm256_ror_epi64(x, 24); }
X4 static inline __m256i X4_NAME(rot16)(__m256i x) { return _mm256_ror_epi64(x, 16); }
X4 static inline __m256i X4_NAME(rot63)(__m256i x) { return _mm256_ror_epi64(x, 63); }
#else
X4 static inline __m256i X4_NAME(rot32)(__m256i x) { return _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)); }
X4 static inline __m256i X4_NAME(rot24)(__m256i x) {
    const __m256i r = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10,
                                       3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
    return _mm256_shuffle_epi8(x, r);
}
X4 static inline __m256i X4_NAME(rot16)(__m256i x) {
    const __m256i r = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,
                                       2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
    return _mm256_shuffle_epi8(x, r);
}
X4 static inline __m256i X4_NAME(rot63)(__m256i x) { return _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x)); }
#endif

#define ADD(a, b) _mm256_add_epi64(a, b)
#define XOR(a, b) _mm256_xor_si256(a, b)

// G (§3.1) on four lanes.
#define G4(a, b, c, d, x, y)                     \
    do {                                         \
        v[a] = ADD(ADD(v[a], v[b]), (x));        \
        v[d] = X4_NAME(rot32)(XOR(v[d], v[a]));           \
        v[c] = ADD(v[c], v[d]);                  \
        v[b] = X4_NAME(rot24)(XOR(v[b], v[c]));           \
        v[a] = ADD(ADD(v[a], v[b]), (y));        \
        v[d] = X4_NAME(rot16)(XOR(v[d], v[a]));           \
        v[c] = ADD(v[c], v[d]);                  \
        v[b] = X4_NAME(rot63)(XOR(v[b], v[c]));           \
    } while (0)

#define ROUND4(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15) \
    do {                                                                              \
        G4(0, 4, 8, 12, m[s0], m[s1]);                                                \
        G4(1, 5, 9, 13, m[s2], m[s3]);                                                \
        G4(2, 6, 10, 14, m[s4], m[s5]);                                               \
        G4(3, 7, 11, 15, m[s6], m[s7]);                                               \
        G4(0, 5, 10, 15, m[s8], m[s9]);                                               \
        G4(1, 6, 11, 12, m[s10], m[s11]);                                             \
        G4(2, 7, 8, 13, m[s12], m[s13]);                                              \
        G4(3, 4, 9, 14, m[s14], m[s15]);                                              \
    } while (0)

// F (§3.2) on one 128-byte block of each message: `blk[k]` is message k's block. The
// 16 words are loaded as a 4x4 transpose per 32 bytes, so that m[i] holds word i of all four.
X4 static void X4_NAME(compress4)(__m256i h[8], const uint8_t *const blk[4], uint64_t t, int last) {
    __m256i m[16], v[16];
    for (int j = 0; j < 4; j++) {
        __m256i r0 = _mm256_loadu_si256((const __m256i *)(blk[0] + 32 * j));
        __m256i r1 = _mm256_loadu_si256((const __m256i *)(blk[1] + 32 * j));
        __m256i r2 = _mm256_loadu_si256((const __m256i *)(blk[2] + 32 * j));
        __m256i r3 = _mm256_loadu_si256((const __m256i *)(blk[3] + 32 * j));
        __m256i t0 = _mm256_unpacklo_epi64(r0, r1), t1 = _mm256_unpackhi_epi64(r0, r1);
        __m256i t2 = _mm256_unpacklo_epi64(r2, r3), t3 = _mm256_unpackhi_epi64(r2, r3);
        m[4 * j + 0] = _mm256_permute2x128_si256(t0, t2, 0x20);
        m[4 * j + 1] = _mm256_permute2x128_si256(t1, t3, 0x20);
        m[4 * j + 2] = _mm256_permute2x128_si256(t0, t2, 0x31);
        m[4 * j + 3] = _mm256_permute2x128_si256(t1, t3, 0x31);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = _mm256_set1_epi64x((long long)blake2b_iv[i]);
    }
    v[12] = XOR(v[12], _mm256_set1_epi64x((long long)t));
    if (last) v[14] = XOR(v[14], _mm256_set1_epi64x(-1));
    B2B_TWELVE_ROUNDS(ROUND4);
    for (int i = 0; i < 8; i++) h[i] = XOR(h[i], XOR(v[i], v[i + 8]));
}

X4 static void X4_NAME(hash4)(uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen) {
    __m256i h[8];
    for (int i = 0; i < 8; i++) h[i] = _mm256_set1_epi64x((long long)blake2b_iv[i]);
    h[0] = XOR(h[0], _mm256_set1_epi64x((long long)(0x01010000ULL ^ (uint64_t)outlen)));
    const uint8_t *p[4] = {in[0], in[1], in[2], in[3]};
    uint64_t t = 0;
    while (inlen > 128) {  // as the one-message code: every full block but the last
        t += 128;
        X4_NAME(compress4)(h, p, t, 0);
        for (int k = 0; k < 4; k++) p[k] += 128;
        inlen -= 128;
    }
    uint8_t last[4][128];
    memset(last, 0, sizeof last);
    const uint8_t *lp[4];
    for (int k = 0; k < 4; k++) {
        if (inlen > 0) memcpy(last[k], p[k], inlen);
        lp[k] = last[k];
    }
    t += inlen;
    X4_NAME(compress4)(h, lp, t, 1);
    uint64_t words[8][4];
    for (int i = 0; i < 8; i++) _mm256_storeu_si256((__m256i *)words[i], h[i]);
    for (int k = 0; k < 4; k++) {
        uint8_t digest[64];
        for (int i = 0; i < 8; i++)
            for (int b = 0; b < 8; b++) digest[8 * i + b] = (uint8_t)(words[i][k] >> (8 * b));
        memcpy(out[k], digest, outlen);
    }
}

#undef ADD
#undef XOR
#undef G4
#undef ROUND4
