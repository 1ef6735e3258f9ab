#ifndef MESHNODE_CBLAKE2B_H
#define MESHNODE_CBLAKE2B_H
#include <stddef.h>
#include <stdint.h>

/// Unkeyed BLAKE2b (RFC 7693) of `in[0..<inlen]` with an `outlen`-byte digest (1 ... 64),
/// written to `out`. Returns 0, or -1 if `outlen` is out of range. Thread-safe (no state).
int meshnode_blake2b(uint8_t *out, size_t outlen, const void *in, size_t inlen);

/// The same hash of four messages of one length `inlen` at once (AVX2; blake2b_x4.c):
/// `out[k]` gets the digest of `in[k]`. Returns 0, or -1 if `outlen` is out of range, a
/// pointer is NULL, or the CPU has no AVX2 (then hash them one at a time).
int meshnode_blake2b_x4(uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen);

/// 1 if `meshnode_blake2b_x4` can run on this CPU, else 0.
int meshnode_blake2b_x4_available(void);

/// The instruction set `meshnode_blake2b_x4` uses here: 2 AVX-512VL, 1 AVX2, 0 none.
int meshnode_blake2b_x4_level(void);

/// `meshnode_blake2b_x4` with a given instruction set (1 or 2; -1 if this CPU lacks it), for tests.
int meshnode_blake2b_x4_at(int level, uint8_t *const out[4], size_t outlen, const uint8_t *const in[4], size_t inlen);

#endif
