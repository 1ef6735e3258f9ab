#ifndef MESHNODE_CBLAKE2B_H
#define MESHNODE_CBLAKE2B_H
#include <stddef.h>
#include <stdint.h>

/// Unkeyed BLAKE2b (RFC 7693) of `in[0..<inlen]` with an `outlen`-byte digest (1 ... 64),
/// written to `out`. Returns 0, or -1 if `outlen` is out of range. Thread-safe (no state).
int meshnode_blake2b(uint8_t *out, size_t outlen, const void *in, size_t inlen);

#endif
