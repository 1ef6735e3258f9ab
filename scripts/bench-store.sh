#!/usr/bin/env bash
# Store benchmark: ingest (`meshnode put`) and export (`meshnode get`, every chunk
# re-verified) of one random file, against `b2sum -l 256` and `cp` of the same file in
# the same run. Prints wall times (median of N runs), ratios to b2sum and peak RSS.
#
# usage: scripts/bench-store.sh [SIZE_MIB] [RUNS]      (defaults: 1024 MiB, 3 runs)
# Builds the release binary first (MESHNODE_BIN=path skips that). Everything it writes
# lives in one temp dir (under $TMPDIR or /var/tmp) that is removed on exit.
set -euo pipefail

size_mib=${1:-1024}
runs=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)

if [[ ! -x /usr/bin/time ]]; then
    echo "installing GNU time (for peak RSS)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

if [[ -n "${MESHNODE_BIN:-}" ]]; then
    bin=$MESHNODE_BIN
else
    echo "building release meshnode..." >&2
    (cd "$root" && swift build -c release --product meshnode >&2)
    bin="$(cd "$root" && swift build -c release --show-bin-path)/meshnode"
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/meshnode-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
file=$work/input.bin

echo "creating a ${size_mib} MiB random file in $work..." >&2
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$file"
sync
b2sum -l 256 "$file" >/dev/null  # warm the page cache the same way for everyone

# run LABEL CMD...: one timed run; appends "wall_s max_rss_kib" to $work/LABEL.
run() {
    local label=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/.t" "$@" >/dev/null
    cat "$work/.t" >>"$work/$label"
}

for ((i = 0; i < runs; i++)); do
    run b2sum b2sum -l 256 "$file"
    # Context: the disk's own floor for writing a file of this size durably, which export
    # must do on top of reading every chunk back from disk.
    run disk_write dd if="$file" of="$work/dd.bin" bs=2M oflag=direct conv=fsync status=none
    rm -f "$work/dd.bin"
    run cp cp "$file" "$work/copy.bin"
    rm -f "$work/copy.bin"
    # A fresh store per run (so nothing is deduplicated). Old ones are kept until the end:
    # deleting thousands of files right before a run makes ext4's inode allocator slow
    # (recently_deleted), which is not what a real ingest meets.
    "$bin" init --data "$work/data-$i" --name bench >/dev/null
    run put env MESHNODE_NO_PROGRESS=1 "$bin" put "$file" --data "$work/data-$i"
    rm -f "$work/out.bin"
    run get env MESHNODE_NO_PROGRESS=1 "$bin" get input.bin -o "$work/out.bin" --data "$work/data-$i"
done
cmp "$file" "$work/out.bin" || { echo "get produced different bytes!" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wall() { awk '{print $1}' "$work/$1" | median; }
rss_max() { awk '{print $2}' "$work/$1" | sort -n | tail -1; }

base=$(wall b2sum)
echo
echo "file: ${size_mib} MiB, ${runs} runs each, median wall time; $(nproc) cores; $(uname -r)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
printf '%-24s %9s %10s %12s %14s\n' operation "wall s" "MiB/s" "x b2sum" "peak RSS MiB"
for op in b2sum disk_write cp put get; do
    w=$(wall $op)
    r=$(rss_max $op)
    awk -v op="$op" -v w="$w" -v b="$base" -v s="$size_mib" -v r="$r" 'BEGIN {
        names["b2sum"] = "b2sum -l 256"; names["cp"] = "cp"
        names["disk_write"] = "dd write, direct+fsync"
        names["put"] = "meshnode put (ingest)"; names["get"] = "meshnode get (export)"
        printf "%-24s %9.3f %10.0f %12.2f %14.1f\n", names[op], w, (w > 0 ? s / w : 0), (b > 0 ? w / b : 0), r / 1024
    }'
done
echo
awk -v g="$(wall get)" -v d="$(wall disk_write)" 'BEGIN { printf "get vs the disk write floor: %.2fx\n", g / d }'
echo "targets: put <= 1.00x b2sum, get <= 1.20x b2sum, peak RSS <= 64 MiB"
