#pragma once
// Only XXH3_64bits: the fingerprint that checks a folder file's bytes when they are served
// (Sources/Store/ChunkFingerprints.swift).
#include <xxhash.h>
