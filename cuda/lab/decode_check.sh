#!/usr/bin/env bash
# decode_check.sh - one device call for the decode-speed work (branch cudadec): the lab (checks + quick
# timings), the backend tests, then the 7B-shape decode with its A/B switches and the per-op profile.
#   cuda/lab/decode_check.sh BIN_DIR [PART...]     parts: lab test bench ab prof mvab ncu (default: the first 5)
# mvab (branch cudamv): the 7B decode with the matvec choice of cudadec (LMP_CUDA_MV=old), then for each of
# q4_0, q8_0 (MV_TYPES) with the per-class best of the lab's decode-step table (needs the lab part first),
# f16 likewise; extra choices to try in $MV_EXTRA (';'-separated).
# BIN_DIR holds lab, lmpress, test_cuda (built by the dev machine, stripped); logs go to $OUT.
set -uo pipefail
B=$1; shift
O=${OUT:-/tmp/out}
mkdir -p "$O"
PARTS=${*:-lab test bench ab prof}
# cuBLAS of the machine's toolkit or of its Python wheels (the CUDA binaries link it dynamically)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__) + "/lib")' 2>/dev/null); do
    [ -e "$d/libcublas.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
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
    mvab) for v in old $(printf '%s' "${MV_EXTRA:-}" | tr ';' ' '); do
            LMP_CUDA_MV=$v timeout 150 "$B/lmpress" bench --device cuda --synth $SYN --synth-types ${MV_TYPES:-q8_0,q4_0} \
                --prefill 512 --decode 128 --reps 3 >"$O/mv.tmp" 2>&1; echo "-- LMP_CUDA_MV=$v rc $?"
            grep -E "^\| synth" "$O/mv.tmp" | sed "s/^/mv=$v /" | tee -a "$O/mvab.txt"
        done
        # the lab's best per launch class (q/k/v -> tall, wo -> square, down -> wide, gate/up -> qo, classifier -> vtall)
        for t in ${MV_TYPES:-q8_0,q4_0} f16; do for tt in $(echo $t | tr ',' ' '); do
            c=$(awk -F'|' -v T=" $tt " '
                /^\| type \| launch \| old \|/ { for (i = 4; i < NF; i++) { n = $i; gsub(/ /, "", n); name[i] = n } next }
                $2 == T && $3 ~ /(q\/k\/v|wo|down|gate|classifier)/ {
                    best = 1e30; bi = 0
                    for (i = 4; i < NF - 2; i++) { split($i, a, " "); if (a[1] != "" && name[i] != "default" && a[1] + 0 < best) { best = a[1] + 0; bi = i } }
                    k = $3 ~ /q\/k\/v/ ? "tall" : $3 ~ /wo/ ? "square" : $3 ~ /down/ ? "wide" : $3 ~ /classifier/ ? "vtall" : "qo"
                    v = name[bi]; if (v == "old") v = (k == "qo") ? "r4u1" : "r1u4"
                    out = out (out ? "," : "") k "=" v
                }
                END { print out }
            ' "$O/lab.txt")
            echo "lab-best for $tt: $c"
            LMP_CUDA_MV=$c timeout 150 "$B/lmpress" bench --device cuda --synth $SYN --synth-types $tt \
                --prefill 512 --decode 128 --reps 3 >"$O/mv.tmp" 2>&1; echo "-- LMP_CUDA_MV=$c rc $?"
            grep -E "^\| synth" "$O/mv.tmp" | sed "s/^/mv=$c /" | tee -a "$O/mvab.txt"
        done; done; rm -f "$O/mv.tmp" ;;
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
