#!/usr/bin/env bash
# cli_distill.sh - command-line cases of "lmpress distill", "lmpress init" and "lmpress plot-log": bad options,
# a student with another vocabulary or tokenizer, a quantized student, a data file shorter than one window,
# checkpoints of another student, corrupted or truncated checkpoints, outputs equal to an input, a diverging
# run (stops naming the step, the last checkpoint stays), and the good paths: init, distill with evaluation,
# log, provenance, plot-log, and resume after SIGKILL and after Ctrl-C ending bit-identical (one thread) to an
# uninterrupted run. Needs no ../shared (tiny random models with the tokenizer of tests/fixtures/tiny.h5).
. "$(dirname "$0")/lib-cli.sh"

# teacher: random model with the 64-token tokenizer of tiny.h5; the text uses its letters
xok setup-teacher synth --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --vocab 64 --ctx 64 --untied \
    --tokenizer-from "$FIX/tiny.h5" -o teacher.lmp
awk 'BEGIN { srand(5); split("the cat a dog sat on mat and ran big red it is at in", w, " ");
             for (i = 0; i < 400; i++) { s = ""; for (j = 0; j < 10; j++) s = s w[int(rand() * 15) + 1] " "; print s "." } }' >data.txt
head -c 20000 data.txt | tail -c 6000 >valid.txt
echo "a cat sat." >short.txt
xok init-student init --like teacher.lmp --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --seed 3 -o student.lmp
xok init-student2 init --like teacher.lmp --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --seed 4 -o student2.lmp
xok init-other-shape init --like teacher.lmp --dim 32 --layers 1 -o other.lmp
xok setup-wide-vocab synth --dim 32 --layers 1 --heads 4 --ffn 64 --vocab 80 --ctx 64 --tokenizer-from "$FIX/tiny.h5" -o wide.lmp
xok setup-other-tok synth --dim 32 --layers 1 --heads 4 --ffn 64 --vocab 64 --ctx 64 \
    --tokenizer-from "$FIX/llama2c/tiny_v1.bin" -o othertok.lmp
xok setup-short-ctx synth --dim 32 --layers 1 --heads 4 --ffn 64 --vocab 64 --ctx 16 --tokenizer-from "$FIX/tiny.h5" -o shortctx.lmp
xok setup-student-q8 init --like teacher.lmp --dim 64 --layers 1 --heads 4 --ffn 64 -o s64.lmp
xok setup-quantize quantize s64.lmp --bits 8 -o s64-q8.lmp
xok setup-teacher-q8 quantize teacher.lmp --bits 8 -o teacher-q8.lmp

# ---- init: its description and bad values ----
check init-info-keys grep -q . <("$LMPRESS" info student.lmp --no-tensors | grep -E 'distill.init +"normal')
check init-deterministic cmp -s <("$LMPRESS" info student.lmp | grep -E '^ +(blk|tok|out)') \
    <("$LMPRESS" init --like teacher.lmp --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --seed 3 -o s3b.lmp 2>/dev/null && "$LMPRESS" info s3b.lmp | grep -E '^ +(blk|tok|out)')
rm -f s3b.lmp
while IFS='|' read -r name re args; do
    eval "extra=($args)"
    xfail "init-$name" "$re" init "${extra[@]}"
done <<'EOF'
no-like|missing --like TEACHER|-o x.lmp
no-output|missing -o OUT|--like teacher.lmp
heads-not-dividing|--heads 5 does not divide --dim 32|--like teacher.lmp --dim 32 --heads 5 -o x.lmp
kv-not-dividing|--kv-heads 3 does not divide --heads 4|--like teacher.lmp --dim 32 --heads 4 --kv-heads 3 -o x.lmp
odd-head-dim|head dimension 3 .* must be even|--like teacher.lmp --dim 12 --heads 4 -o x.lmp
dim-abc|--dim expects an integer|--like teacher.lmp --dim abc -o x.lmp
missing-teacher|cannot open 'nope.lmp'|--like nope.lmp -o x.lmp
output-is-teacher|output 'teacher.lmp' is the input|--like teacher.lmp -o teacher.lmp
output-exists|output 'student.lmp' exists \(use -f/--force to overwrite\)|--like teacher.lmp -o student.lmp
EOF

D=(distill teacher.lmp student.lmp data.txt --steps 8 --batch 2 --seq 16 --threads 1)

# ---- option values and paths ----
while IFS='|' read -r name re args; do
    eval "extra=($args)"
    xfail "distill-$name" "$re" "${D[@]}" "${extra[@]}"
done <<'EOF'
no-output|missing -o OUT|
steps-0|--steps 0 is out of range|--steps 0 -o x.lmp
seq-1|--seq 1 is out of range|--seq 1 -o x.lmp
alpha-2|--alpha 2 is out of range|--alpha 2 -o x.lmp
temp-0|--temp 0 is out of range|--temp 0 -o x.lmp
lr-abc|--lr expects a number, got 'abc'|--lr abc -o x.lmp
min-lr-above-lr|--min-lr 0.1 is larger than --lr 0.01|--lr 0.01 --min-lr 0.1 -o x.lmp
loss-foo|--loss 'foo': must be fkl or rkl|--loss foo -o x.lmp
threads-0|--threads 0 is out of range|--threads 0 -o x.lmp
eval-every-no-eval|--eval-every needs --eval FILE|--eval-every 2 -o x.lmp
eval-missing|cannot open 'nope.txt'|--eval nope.txt -o x.lmp
output-is-teacher|output 'teacher.lmp' is the teacher|-o teacher.lmp
output-is-student|output 'student.lmp' is the student|-o student.lmp
output-is-student-dot|output './student.lmp' is the student|-o ./student.lmp
output-is-data|output 'data.txt' is the data file|-o data.txt
output-is-eval|output 'valid.txt' is the evaluation file|--eval valid.txt -o valid.txt
ckpt-is-data|checkpoint 'data.txt' is the data file|--ckpt data.txt -o x.lmp
ckpt-is-teacher|checkpoint 'teacher.lmp' is the teacher|--ckpt teacher.lmp -o x.lmp
log-is-student|log 'student.lmp' is the student|--log student.lmp -o x.lmp
log-is-output|log 'x.lmp' is also the output|--log x.lmp -o x.lmp
output-exists|output 'wide.lmp' exists \(use -f/--force to overwrite\)|-o wide.lmp
log-exists|output 'wide.lmp' exists \(use -f/--force|--log wide.lmp -o x.lmp
output-missing-dir|directory 'nowhere' does not exist|-o nowhere/x.lmp
seq-above-ctx|--seq 100 exceeds the context of the student \(64\)|--seq 100 -o x.lmp
EOF
xfail distill-two-args "expected TEACHER STUDENT DATA, got 2 arguments" distill teacher.lmp student.lmp -o x.lmp
xfail distill-data-nonexistent "cannot open 'nope.txt'" distill teacher.lmp student.lmp nope.txt -o x.lmp

# ---- inputs that do not fit ----
xfail distill-other-vocab "the teacher has a vocabulary of 64 tokens, the student 80" \
    distill teacher.lmp wide.lmp data.txt --steps 2 --seq 16 -o x.lmp
xfail distill-other-tokenizer "the student's tokenizer differs from the teacher's at token 1" \
    distill teacher.lmp othertok.lmp data.txt --steps 2 --seq 16 -o x.lmp
xfail distill-quantized-student "tensor '.*' is q8_0: training needs f32 weights" \
    distill teacher.lmp s64-q8.lmp data.txt --steps 2 --seq 16 -o x.lmp
xfail distill-short-data "data file 'short.txt' has [0-9]+ tokens, fewer than one window of 17 \(--seq 16 \+ 1\)" \
    distill teacher.lmp student.lmp short.txt --steps 2 --seq 16 -o x.lmp
xfail distill-short-ctx-student "--seq 32 exceeds the context of the student \(16\)" \
    distill teacher.lmp shortctx.lmp data.txt --steps 2 --seq 32 -o x.lmp
xfail distill-teacher-not-model "teacher: .*data.txt" distill data.txt student.lmp data.txt --steps 2 -o x.lmp
xfail distill-resume-not-ckpt "'student2.lmp' is not a training checkpoint" \
    distill teacher.lmp student.lmp data.txt --steps 2 --seq 16 --resume student2.lmp -o x.lmp

# ---- a good run: quantized teacher, evaluation, log, provenance, plot ----
if xok distill-run distill teacher-q8.lmp student.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --lr 5e-3 \
    --warmup 5 --eval valid.txt --eval-every 10 --eval-chunks 4 --eval-ctx 32 --log run.csv --save-every 10 -o run.lmp; then
    check run-progress grep -qE '^step 30/30  loss [0-9.]+  kd [0-9.]+  ce [0-9.]+  lr [0-9.e+-]+  \|g\| [0-9.]+  [0-9]+ tok/s  ETA' .err
    check run-eval-lines grep -qE '^eval at step 10: PPL [0-9.]+ \+/- [0-9.]+$' .err
    check run-summary grep -qE '^lmpress: distilled student.lmp -> run.lmp \(teacher teacher-q8.lmp\)$' .err
    check run-memory grep -qE '^  memory: training buffers [0-9.]+ MB \(estimate [0-9.]+ MB\), peak resident' .err
    check run-ckpt-note grep -q "checkpoint 'run.lmp.ckpt' written at step 30" .err
    check run-log-rows test "$(wc -l <run.csv)" = 31
    check run-log-header grep -qx 'step,loss,kd,ce,lr,grad_norm,tok_s,tokens,eval_ppl' run.csv
    check run-log-eval grep -qE '^10,([^,]*,){7}[0-9.]+$' run.csv
    "$LMPRESS" info run.lmp --no-tensors >info.txt 2>&1
    for k in distill.teacher distill.teacher_checksum distill.data distill.data_crc32 distill.steps distill.tokens_seen \
        distill.lr distill.alpha distill.temp distill.loss distill.final_loss distill.final_ce distill.final_kd \
        distill.eval_ppl provenance.parent provenance.command; do
        check "run-provenance-$k" grep -qE "^  $k +" info.txt
    done
    check run-no-ckpt-keys bash -c "! grep -q distill.ckpt info.txt"
    check run-tokens-seen grep -qE '^  distill.tokens_seen +960$' info.txt
    check run-output-loads bash -c "'$LMPRESS' run run.lmp -p 'a cat' -n 4 --temp 0 >/dev/null 2>&1"
    xok plot-log plot-log run.csv -o curve.svg
    check plot-svg grep -q '<polyline' curve.svg
    # the checkpoint also loads as a model
    check ckpt-loads bash -c "'$LMPRESS' run run.lmp.ckpt -p a -n 2 --temp 0 >/dev/null 2>&1"
fi

# ---- --seq defaults to min(context, 512) ----
if xok distill-default-seq distill teacher.lmp student.lmp data.txt --steps 2 --batch 1 --threads 1 -o seqdef.lmp; then
    check default-seq-64 grep -qE '^  distill.seq +64$' <("$LMPRESS" info seqdef.lmp --no-tensors)
fi

# ---- checkpoints that do not fit or are damaged ----
if [ -f run.lmp.ckpt ]; then
    cp run.lmp.ckpt good.ckpt
    R=(distill teacher-q8.lmp student.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --lr 5e-3 --warmup 5 -o y.lmp)
    xfail ckpt-other-student "checkpoint 'good.ckpt' belongs to another student" \
        distill teacher-q8.lmp student2.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --lr 5e-3 --warmup 5 \
        --resume good.ckpt -o y.lmp
    xfail ckpt-other-shape "checkpoint 'good.ckpt': tensor .* it is not of this student" \
        distill teacher-q8.lmp other.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --resume good.ckpt -o y.lmp
    xfail ckpt-other-teacher "checkpoint 'good.ckpt' was made with another teacher" \
        distill teacher.lmp student.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --lr 5e-3 --warmup 5 \
        --resume good.ckpt -o y.lmp
    xfail ckpt-other-data "checkpoint 'good.ckpt' was made on other data" \
        distill teacher-q8.lmp student.lmp valid.txt --steps 30 --batch 2 --seq 16 --threads 1 --lr 5e-3 --warmup 5 \
        --resume good.ckpt -o y.lmp
    xfail ckpt-other-lr "checkpoint 'good.ckpt' was made with --lr 0.005, this run has 0.001" \
        distill teacher-q8.lmp student.lmp data.txt --steps 30 --batch 2 --seq 16 --threads 1 --warmup 5 \
        --resume good.ckpt -o y.lmp
    xfail ckpt-past-steps "checkpoint 'good.ckpt' was made with --steps 30, this run has 20" \
        distill teacher-q8.lmp student.lmp data.txt --steps 20 --batch 2 --seq 16 --threads 1 --lr 5e-3 --warmup 5 \
        --resume good.ckpt -o y.lmp
    size=$(stat -c %s good.ckpt)
    head -c $((size - 100)) good.ckpt >trunc.ckpt
    xfail ckpt-truncated "checkpoint: trunc.ckpt: truncated" "${R[@]}" --resume trunc.ckpt
    cp good.ckpt bad.ckpt
    printf '\x55' | dd of=bad.ckpt bs=1 seek=$((size - 40)) conv=notrunc status=none
    xfail ckpt-corrupted "checkpoint: bad.ckpt: tensor '[^']+': CRC32 mismatch" "${R[@]}" --resume bad.ckpt
    printf 'LMP?' | dd of=bad.ckpt bs=1 seek=0 conv=notrunc status=none
    xfail ckpt-bad-magic "checkpoint: bad.ckpt: bad magic" "${R[@]}" --resume bad.ckpt
    xfail ckpt-exists "checkpoint 'good.ckpt' exists; use --resume good.ckpt to continue or -f" "${R[@]}" --ckpt good.ckpt
fi

# ---- a diverging run stops naming the step; the last good checkpoint stays ----
lmp distill teacher.lmp student.lmp data.txt --steps 200 --batch 2 --seq 16 --threads 1 --lr 10 --warmup 0 --clip 0 \
    --weight-decay 0 --save-every 1 -o div.lmp
rc=$?
mapfile -t lines <"$W/.err"
last=${lines[${#lines[@]}-1]}
if [ $rc = 1 ] && [[ $last =~ ^lmpress:\ distill:\ loss\ (exploded|is\ not\ finite|has\ a\ gradient).*at\ step\ ([0-9]+).*last\ good\ checkpoint:\ \'div.lmp.ckpt\'\ \(step\ ([0-9]+)\)$ ]]; then
    ok
    bad_step=${BASH_REMATCH[2]} ck_step=${BASH_REMATCH[3]}
    check diverge-ckpt-before-step test "$ck_step" -lt "$bad_step"
    check diverge-ckpt-valid bash -c "'$LMPRESS' info div.lmp.ckpt --no-tensors >/dev/null"
    check diverge-ckpt-step grep -qE "distill.ckpt.step +$ck_step$" <("$LMPRESS" info div.lmp.ckpt --no-tensors)
    check diverge-no-output test ! -e div.lmp
else
    bad diverge "exit $rc, last line: $last"
fi

# ---- resume after SIGKILL and after Ctrl-C: bit-identical weights (one thread) ----
tensors() { "$LMPRESS" info "$1" | grep -E '^ +(blk|token_embd|output)'; }
RUN=(distill teacher.lmp student.lmp data.txt --steps 1000 --batch 2 --seq 16 --threads 1 --lr 3e-3 --warmup 20
     --alpha 0.5 --temp 2)
if xok resume-reference "${RUN[@]}" -o ref.lmp; then
    # SIGKILL once the first checkpoint exists
    "$LMPRESS" "${RUN[@]}" --save-every 100 -o k.lmp >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 3000); do [ -f k.lmp.ckpt ] && break; sleep 0.01; done  # a loaded machine may take a while
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e k.lmp ]; then
        skip "resume-sigkill: the run finished before it could be killed"
    else
        check sigkill-ckpt-left test -f k.lmp.ckpt
        if xok resume-after-sigkill "${RUN[@]}" --save-every 100 --resume k.lmp.ckpt -o k.lmp; then
            check resume-note grep -qE "^lmpress: resumed from 'k.lmp.ckpt' at step [0-9]+ of 1000$" .err
            check resume-sigkill-bitwise cmp -s <(tensors ref.lmp) <(tensors k.lmp)
        fi
    fi
    # Ctrl-C (SIGINT): checkpoint and a one-line message, then resume
    "$LMPRESS" "${RUN[@]}" --save-every 100 -o c.lmp >/dev/null 2>c.err &
    pid=$!
    for _ in $(seq 3000); do [ -f c.lmp.ckpt ] && break; sleep 0.01; done
    kill -INT $pid 2>/dev/null
    wait $pid
    rc=$?
    if [ -e c.lmp ]; then
        skip "resume-sigint: the run finished before the interrupt"
    else
        check sigint-exit test $rc = 1
        check sigint-message grep -qE "^lmpress: distill: interrupted at step [0-9]+ of 1000; checkpoint 'c.lmp.ckpt' written \(continue with --resume c.lmp.ckpt\)$" c.err
        if xok resume-after-sigint "${RUN[@]}" --save-every 100 --resume c.lmp.ckpt -o c.lmp; then
            check resume-sigint-bitwise cmp -s <(tensors ref.lmp) <(tensors c.lmp)
        fi
    fi
fi

# ---- with two threads the resumed run also ends with the same bits (the same thread count) ----
RUN2=(distill teacher.lmp student.lmp data.txt --steps 1000 --batch 2 --seq 16 --threads 2 --lr 3e-3 --warmup 20)
if xok resume2-reference "${RUN2[@]}" -o ref2.lmp; then
    "$LMPRESS" "${RUN2[@]}" --save-every 100 -o k2.lmp >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 3000); do [ -f k2.lmp.ckpt ] && break; sleep 0.01; done
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
    if [ -e k2.lmp ]; then
        skip "resume2-sigkill: the run finished before it could be killed"
    elif [ ! -f k2.lmp.ckpt ]; then
        bad resume2-sigkill "no checkpoint after 30 s"
    elif xok resume2-after-sigkill "${RUN2[@]}" --save-every 100 --resume k2.lmp.ckpt -o k2.lmp; then
        check resume2-sigkill-bitwise cmp -s <(tensors ref2.lmp) <(tensors k2.lmp)
    fi
fi

# ---- plot-log bad input ----
printf 'a,b\n1,2\n' >notlog.csv
printf 'step,loss,kd,ce,lr,grad_norm,tok_s,tokens,eval_ppl\n1,2,3\n' >badrow.csv
printf 'step,loss,kd,ce,lr,grad_norm,tok_s,tokens,eval_ppl\n1,2,x,4,5,6,7,8,\n' >badnum.csv
: >empty.csv
xfail plot-not-log "'notlog.csv' has no column 'step'" plot-log notlog.csv -o p.svg
xfail plot-bad-row "'badrow.csv' line 2: 3 fields, the header has 9" plot-log badrow.csv -o p.svg
xfail plot-bad-number "'badnum.csv' line 2: column 'kd' is not a number: 'x'" plot-log badnum.csv -o p.svg
xfail plot-empty "'empty.csv' is empty" plot-log empty.csv -o p.svg
xfail plot-no-output "missing -o OUT.svg" plot-log notlog.csv
xfail plot-output-is-input "output 'notlog.csv' is the input" plot-log notlog.csv -o notlog.csv
xfail plot-missing "cannot open 'nope.csv'" plot-log nope.csv -o p.svg

finish
