#!/bin/sh
# Recomputes a meshnode content id from a file with standard tools only
# (docs/PROTOCOL.md §3): BLAKE2b-256 over
#   "meshnode/content/v1" NUL || u64be(size) || u32be(chunk size) || chunk hashes...
# where each chunk hash is BLAKE2b-256 (b2sum -l 256) of one chunk-size piece.
#
# usage: scripts/content-id.sh FILE [CHUNK_SIZE_BYTES]   (default 2097152)
set -eu
file=$1
chunk=${2:-2097152}
size=$(stat -c %s "$file")
{
    printf 'meshnode/content/v1\000'
    printf '%016x%08x' "$size" "$chunk" | xxd -r -p
    # One b2sum per chunk, in file order; an empty file has no chunks.
    split -b "$chunk" --filter='b2sum -l 256 | cut -c1-64' "$file" | xxd -r -p
} | b2sum -l 256 | cut -c1-64
