#!/usr/bin/env bash
# decode_check.sh - one device call for the decode-speed work (branch cudadec): the lab (checks + quick
# timings), the backend tests, then the 7B-shape decode with its A/B switches and the per-op profile.
#   cuda/lab/decode_check.sh BIN_DIR [PART...]     parts: lab test bench ab prof (default: all)
# BIN_DIR holds lab, lmpress, test_cuda (built by the dev machine, stripped); logs go to $OUT.
set -uo pipefail
B=$1; shift
O=${OUT:-/tmp/out}
mkdir -p "$O"
PARTS=${*:-lab test bench ab prof}
SYN=dim=4096,layers=32,heads=32,ffn=11008,vocab=32000,ctx=4096
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$O/host.txt"
for p in $PARTS; do
    t0=$(date +%s)
    case $p in
    lab) timeout 200 "$B/lab" --quick >"$O/lab.txt" 2>&1; echo "lab rc $?"; grep -E "^FAIL" "$O/lab.txt" | head; tail -1 "$O/lab.txt" ;;
    test) SHARED=${SHARED:-shared} timeout 240 "$B/test_cuda" >"$O/test_cuda.txt" 2>&1; echo "test_cuda rc $?"
          grep -E "FAIL|rms\(diff\)|passed" "$O/test_cuda.txt" | tail -30 ;;
    bench) timeout 240 "$B/lmpress" bench --device cuda --synth $SYN --synth-types ${TYPES:-f16,q8_0,q4_0} --prefill 512 \
               --decode 128 --reps 3 >"$O/bench7b.txt" 2>&1; echo "bench rc $?"; grep -E "^\|" "$O/bench7b.txt" ;;
    ab) for v in LMP_CUDA_NO_PDL=1 LMP_CUDA_OLD_ATTN=1 LMP_CUDA_NO_FUSE=1 LMP_CUDA_NO_GRAPH=1; do
            env $v timeout 100 "$B/lmpress" bench --device cuda --synth $SYN --synth-types ${AB_TYPE:-q4_0} --prefill 512 \
                --decode 128 --reps 2 >"$O/ab.txt.tmp" 2>&1; echo "-- $v rc $?"; grep -E "^\| synth" "$O/ab.txt.tmp" | sed "s/^/$v /" | tee -a "$O/ab.txt"
        done; rm -f "$O/ab.txt.tmp" ;;
    prof) for t in ${PROF_TYPES:-q4_0 f16}; do
            LMP_CUDA_PROFILE="$O/prof_$t.txt" timeout 100 "$B/lmpress" bench --device cuda --synth $SYN --synth-types $t \
                --prefill 512 --decode 64 --reps 1 >"$O/prof_bench_$t.txt" 2>&1; echo "-- profile $t rc $?"; cat "$O/prof_$t.txt"
        done ;;
    ncu) N=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
         [ -n "$N" ] || { echo "no ncu"; continue; }
         timeout 200 "$N" --clock-control none -k regex:lmp_matvec_kernel --launch-skip 400 --launch-count 4 \
             --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis \
             --section LaunchStats "$B/lmpress" bench --device cuda --synth $SYN --synth-types ${NCU_TYPE:-q4_0} \
             --prefill 16 --decode 8 --reps 1 >"$O/ncu.txt" 2>&1; echo "ncu rc $?"
         grep -E "lmp_matvec_kernel|Duration|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Theoretical Occupancy|Block Limit" "$O/ncu.txt" | head -80 ;;
    esac
    echo "== $p: $(( $(date +%s) - t0 )) s"
done
