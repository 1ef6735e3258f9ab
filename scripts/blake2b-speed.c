// BLAKE2b-256 throughput of Sources/CBlake2b on 2 MiB chunks: one message at a time, then
// four lanes with each instruction set this CPU has, as ratios to the first (same run).
//
//   clang -O3 -I Sources/CBlake2b/include Sources/CBlake2b/*.c scripts/blake2b-speed.c -o /tmp/b2speed && /tmp/b2speed
#include "cblake2b.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    enum { reps = 5, rounds = 32 };
    size_t n = 2 << 20;
    uint8_t *in[4], d[4][32], *out[4];
    for (int k = 0; k < 4; k++) {
        in[k] = malloc(n);
        for (size_t i = 0; i < n; i++) in[k][i] = (uint8_t)(i * 131 + k);
        out[k] = d[k];
    }
    double best[3] = {0, 0, 0};
    for (int r = 0; r < reps; r++) {
        double t = now();
        for (int i = 0; i < rounds * 4; i++) meshnode_blake2b(d[0], 32, in[i % 4], n);
        double mbs = rounds * 4.0 * n / (now() - t) / 1e6;
        if (mbs > best[0]) best[0] = mbs;
        for (int level = 1; level <= meshnode_blake2b_x4_level(); level++) {
            t = now();
            for (int i = 0; i < rounds; i++) meshnode_blake2b_x4_at(level, out, 32, (const uint8_t *const *)in, n);
            mbs = rounds * 4.0 * n / (now() - t) / 1e6;
            if (mbs > best[level]) best[level] = mbs;
        }
    }
    printf("one at a time        %6.0f MB/s\n", best[0]);
    if (best[1] > 0) printf("four lanes, AVX2     %6.0f MB/s  %.2fx\n", best[1], best[1] / best[0]);
    if (best[2] > 0) printf("four lanes, AVX-512VL %5.0f MB/s  %.2fx\n", best[2], best[2] / best[0]);
    return 0;
}
