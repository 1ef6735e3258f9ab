// BLAKE2b (RFC 7693) of four messages of the same length at once, one message per 64-bit
// lane of AVX2's 256-bit registers. The four hashes are independent (nothing here is a tree
// or a new hash): each lane computes exactly `meshnode_blake2b` of its message. What it buys
// is throughput: a chunk's rounds are a chain of dependent 64-bit operations, so one
// message keeps few of the core's units busy; four in lock step fill them. Callers with
// several chunks of one size in hand (a put's workers, a batch of received chunks) hash
// them four at a time. Checked against the one-message code at first use (Store/Sodium.swift)
// and by the tests; used only where the CPU has AVX2.
#include "cblake2b.h"
#include "blake2b_constants.h"
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define X4 __attribute__((target("avx2")))
#define X4_NAME(f) f##_avx2
#define X4_AVX512 0
#include "blake2b_x4_impl.h"
#undef X4
#undef X4_NAME
#undef X4_AVX512

#define X4 __attribute__((target("avx2,avx512f,avx512vl")))
#define X4_NAME(f) f##_avx512
#define X4_AVX512 1
#include "blake2b_x4_impl.h"

// 2 with AVX-512VL (its 64-bit rotate: about 20 % faster here), 1 with AVX2, 0 without.
int meshnode_blake2b_x4_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        l = __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

int meshnode_blake2b_x4_available(void) { return meshnode_blake2b_x4_level() > 0; }

int meshnode_blake2b_x4_at(int level, uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen) {
    if (outlen < 1 || outlen > 64 || level < 1 || level > meshnode_blake2b_x4_level()) return -1;
    for (int k = 0; k < 4; k++)
        if (out[k] == NULL || (in[k] == NULL && inlen > 0)) return -1;
    if (level == 2) hash4_avx512(out, outlen, in, inlen); else hash4_avx2(out, outlen, in, inlen);
    return 0;
}

int meshnode_blake2b_x4(uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen) {
    return meshnode_blake2b_x4_at(meshnode_blake2b_x4_level(), out, outlen, in, inlen);
}

#else
int meshnode_blake2b_x4_level(void) { return 0; }
int meshnode_blake2b_x4_available(void) { return 0; }
int meshnode_blake2b_x4_at(int level, uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen) {
    (void)level; (void)out; (void)outlen; (void)in; (void)inlen;
    return -1;
}
int meshnode_blake2b_x4(uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen) {
    return meshnode_blake2b_x4_at(0, out, outlen, in, inlen);
}
#endif
