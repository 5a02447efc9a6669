// distill.c - the distillation pass (see distill.h): inputs and their checks, the data sampler, the teacher
// session, the training loop with its schedule, explosion check, evaluation and checkpoints, and the
// output file with its provenance. The arithmetic is the engine's (train.h).
#include "distill/distill.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "distill/ckpt.h"
#include "runtime/calib.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "runtime/threadpool.h"

void lmp_distill_params_default(lmp_distill_params *p) {
    memset(p, 0, sizeof *p);
    p->steps = 1000;
    p->batch = 8;
    p->seq = 0;  // min(student context, teacher context, 512): the positions eval-ppl scores
    p->lr = 1e-3f;
    p->min_lr = 1e-4f;
    p->warmup = 50;
    p->weight_decay = 0.1f;
    p->clip = 1.0f;
    p->temp = 2.0f;
    p->alpha = 0.5f;
    p->kd = LMP_KD_FKL;
    p->seed = 1;
    p->eval_chunks = 0;
}

// ---- data ----

// CRC32 of a file's bytes (the data file's identity in checkpoints and provenance).
static lmp_status file_crc(const char *path, uint32_t *crc, lmp_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lmp_err(err, LMP_E_IO, "cannot open data file '%s'", path);
    char buf[65536];
    size_t n;
    uint32_t c = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) c = lmp_crc32(c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return lmp_err(err, LMP_E_IO, "cannot read data file '%s'", path);
    *crc = c;
    return LMP_OK;
}

// xorshift64* (the window starts); state never 0
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(uint64_t seed) {  // splitmix64 of the seed, so that nearby seeds differ
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

// B windows of T + 1 tokens at RNG-drawn starts; BOS first when the tokenizer adds one (as evaluation does).
static void sample_batch(const int32_t *data, size_t n, int B, int T, int bos, uint64_t *rng, int32_t *out) {
    const uint64_t starts = (uint64_t)(n - (size_t)T);  // windows [s, s + T] with s in [0, n - T - 1]
    for (int b = 0; b < B; b++) {
        uint64_t s = rng_next(rng) % starts;
        memcpy(out + (size_t)b * (T + 1), data + s, (size_t)(T + 1) * sizeof(int32_t));
        if (bos >= 0) out[(size_t)b * (T + 1)] = bos;
    }
}

// ---- checks ----

// Same tokenizer: same kind and the same token strings, id by id.
static lmp_status same_tokenizer(const lmp_model *t, const lmp_model *s, lmp_error *err) {
    const lmp_meta *mt = lmp_file_meta(t->file), *ms = lmp_file_meta(s->file);
    if (!s->tok) return LMP_OK;  // the student takes the teacher's
    if (strcmp(lmp_tokenizer_kind(t->tok), lmp_tokenizer_kind(s->tok)))
        return lmp_err(err, LMP_E_ARG, "the student's tokenizer (%s) is not the teacher's (%s)",
                       lmp_tokenizer_kind(s->tok), lmp_tokenizer_kind(t->tok));
    const void *da, *db;
    uint64_t na, nb;
    if (lmp_meta_get_arr(mt, "tokenizer.tokens", LMP_KV_STRING, &da, &na, NULL) ||
        lmp_meta_get_arr(ms, "tokenizer.tokens", LMP_KV_STRING, &db, &nb, NULL))
        return lmp_err(err, LMP_E_ARG, "cannot compare the tokenizers: tokenizer.tokens is missing");
    if (na != nb)
        return lmp_err(err, LMP_E_ARG, "the student's tokenizer has %llu tokens, the teacher's %llu",
                       (unsigned long long)nb, (unsigned long long)na);
    char *const *sa = da, *const *sb = db;
    for (uint64_t i = 0; i < na; i++)
        if (strcmp(sa[i], sb[i]))
            return lmp_err(err, LMP_E_ARG, "the student's tokenizer differs from the teacher's at token %llu",
                           (unsigned long long)i);
    return LMP_OK;
}

// ---- hyper-parameters (provenance, checkpoints, resume checks) ----

static const char *kd_name(lmp_kd_loss k) { return k == LMP_KD_RKL ? "rkl" : "fkl"; }

static lmp_status hyper_meta(const lmp_distill_params *p, lmp_meta *m) {
    lmp_status st = LMP_OK;
    st |= lmp_meta_set_i64(m, "distill.steps", p->steps);
    st |= lmp_meta_set_i64(m, "distill.batch", p->batch);
    st |= lmp_meta_set_i64(m, "distill.seq", p->seq);
    st |= lmp_meta_set_f64(m, "distill.lr", p->lr);
    st |= lmp_meta_set_f64(m, "distill.min_lr", p->min_lr);
    st |= lmp_meta_set_i64(m, "distill.warmup", p->warmup);
    st |= lmp_meta_set_f64(m, "distill.weight_decay", p->weight_decay);
    st |= lmp_meta_set_f64(m, "distill.clip", p->clip);
    st |= lmp_meta_set_f64(m, "distill.temp", p->temp);
    st |= lmp_meta_set_f64(m, "distill.alpha", p->alpha);
    st |= lmp_meta_set_str(m, "distill.loss", kd_name(p->kd));
    st |= lmp_meta_set_u64(m, "distill.seed", p->seed);
    return st ? LMP_E_NOMEM : LMP_OK;
}

static const struct {
    const char *key, *option;
} HYPER_OPTS[] = {{"distill.steps", "--steps"},   {"distill.batch", "--batch"},
                  {"distill.seq", "--seq"},       {"distill.lr", "--lr"},
                  {"distill.min_lr", "--min-lr"}, {"distill.warmup", "--warmup"},
                  {"distill.weight_decay", "--weight-decay"}, {"distill.clip", "--clip"},
                  {"distill.temp", "--temp"},     {"distill.alpha", "--alpha"},
                  {"distill.loss", "--loss"},     {"distill.seed", "--seed"}};

static void kv_str(const lmp_kv *kv, char *buf, size_t n) {
    if (!kv) snprintf(buf, n, "(none)");
    else if (kv->type == LMP_KV_STRING) snprintf(buf, n, "%s", (const char *)kv->data);
    else if (kv->type == LMP_KV_F64) snprintf(buf, n, "%g", kv->v.f64);
    else if (kv->type == LMP_KV_I64) snprintf(buf, n, "%lld", (long long)kv->v.i64);
    else if (kv->type == LMP_KV_U64) snprintf(buf, n, "%llu", (unsigned long long)kv->v.u64);
    else snprintf(buf, n, "?");
}

// Every hyper-parameter of the run equals the checkpoint's (a resumed run must be the same run).
static lmp_status hyper_check(const lmp_meta *ck, const lmp_meta *run, const char *path, lmp_error *err) {
    for (size_t i = 0; i < sizeof HYPER_OPTS / sizeof HYPER_OPTS[0]; i++) {
        const lmp_kv *a = lmp_meta_find(ck, HYPER_OPTS[i].key), *b = lmp_meta_find(run, HYPER_OPTS[i].key);
        char sa[64], sb[64];
        kv_str(a, sa, sizeof sa);
        kv_str(b, sb, sizeof sb);
        if (!a || strcmp(sa, sb))
            return lmp_err(err, LMP_E_ARG, "checkpoint '%s' was made with %s %s, this run has %s", path,
                           HYPER_OPTS[i].option, sa, sb);
    }
    return LMP_OK;
}

// ---- evaluation ----

static lmp_status eval_ppl(lmp_trainer *t, const lmp_meta *meta, const lmp_distill_params *p, double *ppl,
                           double *ppl_err, lmp_error *err) {
    lmp_builder *b = NULL;
    lmp_file *f = NULL;
    lmp_model *m = NULL;
    lmp_status st = lmp_trainer_to_builder(t, meta, &b, err);
    if (!st) st = lmp_builder_to_file(b, &f, err);
    lmp_builder_free(b);
    if (!st) st = lmp_model_from_file(f, &m, err);  // takes f
    if (st) return lmp_err_prefix(err, st, "evaluation");
    lmp_ppl_params pp = {p->eval_path, p->eval_ctx, p->eval_chunks, p->n_threads, 0, NULL, NULL};
    lmp_ppl_result r;
    st = lmp_eval_ppl(&m, 1, &pp, &r, err);
    lmp_model_free(m);
    if (st) return lmp_err_prefix(err, st, "evaluation on '%s'", p->eval_path);
    *ppl = r.ppl;
    *ppl_err = r.ppl_err;
    return LMP_OK;
}

static void note(const lmp_distill_params *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const lmp_distill_params *p, const char *fmt, ...) {
    if (!p->on_note) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p->on_note(p->user, buf);
}

// ---- output ----

static lmp_status output_meta(const lmp_distill_params *p, const lmp_model *teacher, const lmp_model *student,
                              uint32_t teacher_sum, uint32_t student_sum, uint32_t data_crc, int64_t data_tokens,
                              const lmp_meta *hyper, lmp_meta **out) {
    lmp_meta *m = lmp_meta_clone(lmp_file_meta(student->file));
    if (!m) return LMP_E_NOMEM;
    // the student's own distillation keys (or a checkpoint's run state) describe another run; how the student
    // was initialised (distill.init*) stays true of the output
    for (size_t i = lmp_meta_count(m); i-- > 0;) {
        const char *k = lmp_meta_at(m, i)->key;
        if (!strncmp(k, "distill.", 8) && strncmp(k, "distill.init", 12)) lmp_meta_remove(m, k);
    }
    lmp_status st = LMP_OK;
    if (!student->tok) {
        const lmp_meta *tm = lmp_file_meta(teacher->file);
        for (size_t i = 0; i < lmp_meta_count(tm); i++) {
            const lmp_kv *kv = lmp_meta_at(tm, i);
            if (!strncmp(kv->key, "tokenizer.", 10)) st |= lmp_meta_set_kv(m, kv->key, kv);
        }
    }
    for (size_t i = 0; i < lmp_meta_count(hyper); i++) st |= lmp_meta_set_kv(m, lmp_meta_at(hyper, i)->key, lmp_meta_at(hyper, i));
    st |= lmp_meta_set_str(m, "distill.teacher", p->teacher_path);
    st |= lmp_meta_set_u32(m, "distill.teacher_checksum", teacher_sum);
    st |= lmp_meta_set_str(m, "distill.data", p->data_path);
    st |= lmp_meta_set_u32(m, "distill.data_crc32", data_crc);
    st |= lmp_meta_set_i64(m, "distill.data_tokens", data_tokens);
    st |= lmp_meta_set_str(m, "provenance.tool", "lmpress " LMP_VERSION_STRING);
    st |= lmp_meta_set_str(m, "provenance.parent", p->student_path);
    st |= lmp_meta_set_u32(m, "provenance.parent_checksum", student_sum);
    if (p->command_line) st |= lmp_meta_set_str(m, "provenance.command", p->command_line);
    if (st) {
        lmp_meta_free(m);
        return LMP_E_NOMEM;
    }
    *out = m;
    return LMP_OK;
}

// ---- the pass ----

typedef struct run {
    lmp_model *teacher, *student;
    lmp_session *ts;
    lmp_trainer *t;
    int32_t *data;       // (n_data) the tokenized text
    size_t n_data;
    int32_t *batch;      // (B, T + 1)
    float *tlogits;      // (B * T, vocab) teacher logits
    lmp_meta *hyper, *meta;  // run's distill.* keys; output/checkpoint metadata
    lmp_file *ck;
    lmp_pool *pool;
} run;

static void run_free(run *r) {
    lmp_session_free(r->ts);
    lmp_trainer_free(r->t);
    lmp_model_free(r->teacher);
    lmp_model_free(r->student);
    lmp_free(r->data);
    lmp_free(r->batch);
    lmp_free(r->tlogits);
    lmp_meta_free(r->hyper);
    lmp_meta_free(r->meta);
    lmp_file_close(r->ck);
    lmp_pool_free(r->pool);
}

static lmp_status check_params(const lmp_distill_params *p, lmp_error *err) {
    if (!p->teacher_path || !p->student_path || !p->data_path || !p->out_path)
        return lmp_err(err, LMP_E_ARG, "teacher, student, data and output paths are required");
    if (p->steps < 1) return lmp_err(err, LMP_E_ARG, "steps %lld must be >= 1", (long long)p->steps);
    if (p->batch < 1 || p->seq == 1 || p->seq < 0)
        return lmp_err(err, LMP_E_ARG, "batch %d / seq %d out of range", p->batch, p->seq);
    if (!(p->lr > 0) || !(p->min_lr >= 0) || p->min_lr > p->lr)
        return lmp_err(err, LMP_E_ARG, "learning rates lr %g / min-lr %g out of range", p->lr, p->min_lr);
    if (p->warmup < 0) return lmp_err(err, LMP_E_ARG, "warmup %lld < 0", (long long)p->warmup);
    if (!(p->alpha >= 0 && p->alpha <= 1)) return lmp_err(err, LMP_E_ARG, "alpha %g outside 0..1", p->alpha);
    if (!(p->temp > 0)) return lmp_err(err, LMP_E_ARG, "temperature %g must be > 0", p->temp);
    return LMP_OK;
}

lmp_status lmp_distill(const lmp_distill_params *params, lmp_distill_summary *s, lmp_error *err) {
    memset(s, 0, sizeof *s);
    s->ckpt_step = -1;
    lmp_distill_params pp = *params, *p = &pp;  // seq 0 is resolved once the models are known
    lmp_status st = check_params(p, err);
    if (st) return st;
    const double t0 = lmp_time_now();
    run r = {0};
    const char *ckpt = p->ckpt_path;
    char ckpt_default[1024];
    if (!ckpt) {
        snprintf(ckpt_default, sizeof ckpt_default, "%s.ckpt", p->out_path);
        ckpt = ckpt_default;
    }
    snprintf(s->ckpt_path, sizeof s->ckpt_path, "%s", ckpt);

    // models
    if ((st = lmp_model_load(p->teacher_path, p->import, &r.teacher, err))) {
        lmp_err_prefix(err, st, "teacher");
        goto done;
    }
    if ((st = lmp_model_load(p->student_path, p->import, &r.student, err))) {
        lmp_err_prefix(err, st, "student");
        goto done;
    }
    if (!r.teacher->tok) {
        st = lmp_err(err, LMP_E_ARG, "teacher '%s' has no tokenizer: cannot tokenize the data", p->teacher_path);
        goto done;
    }
    if (r.teacher->cfg.vocab != r.student->cfg.vocab) {
        st = lmp_err(err, LMP_E_ARG, "the teacher has a vocabulary of %d tokens, the student %d: they must be the same",
                     r.teacher->cfg.vocab, r.student->cfg.vocab);
        goto done;
    }
    if ((st = same_tokenizer(r.teacher, r.student, err))) goto done;
    if (p->seq <= 0) {
        p->seq = r.student->cfg.ctx < r.teacher->cfg.ctx ? r.student->cfg.ctx : r.teacher->cfg.ctx;
        if (p->seq > 512) p->seq = 512;
        if (p->seq < 2) {
            st = lmp_err(err, LMP_E_ARG, "the models' context of %d positions is too short to train on", p->seq);
            goto done;
        }
    }
    if (p->seq > r.student->cfg.ctx || p->seq > r.teacher->cfg.ctx) {
        st = lmp_err(err, LMP_E_ARG, "--seq %d exceeds the context of the %s (%d)", p->seq,
                     p->seq > r.student->cfg.ctx ? "student" : "teacher",
                     p->seq > r.student->cfg.ctx ? r.student->cfg.ctx : r.teacher->cfg.ctx);
        goto done;
    }
    const uint32_t teacher_sum = lmp_file_checksum(r.teacher->file), student_sum = lmp_file_checksum(r.student->file);

    // data
    if ((st = lmp_text_tokenize_file(r.teacher->tok, p->data_path, "data file", &r.data, &r.n_data, err))) goto done;
    uint32_t data_crc = 0;
    if ((st = file_crc(p->data_path, &data_crc, err))) goto done;
    s->data_tokens = (int64_t)r.n_data;
    if (r.n_data < (size_t)p->seq + 1) {
        st = lmp_err(err, LMP_E_ARG, "data file '%s' has %zu tokens, fewer than one window of %d (--seq %d + 1)",
                     p->data_path, r.n_data, p->seq + 1, p->seq);
        goto done;
    }

    // trainer (refuses a student that is not f32) and teacher session
    // one thread pool for the trainer and the teacher session
    if (!(r.pool = lmp_pool_new(p->n_threads))) {
        st = lmp_err(err, LMP_E_NOMEM, "cannot start %d threads", p->n_threads);
        goto done;
    }
    lmp_trainer_opts to = {p->batch, p->seq, p->n_threads, r.pool, 0, 0};
    if ((st = lmp_trainer_new(r.student, &to, &r.t, err))) {
        lmp_err_prefix(err, st, "student '%s'", p->student_path);
        goto done;
    }
    s->mem_estimate = lmp_train_memory_estimate(r.student, p->batch, p->seq, 0, 0);
    s->mem_allocated = lmp_trainer_memory(r.t);
    if (p->alpha > 0) {
        lmp_session_opts so = {p->seq, p->seq, p->n_threads, "cpu", r.pool};
        if ((st = lmp_session_new(r.teacher, &so, &r.ts, err))) {
            lmp_err_prefix(err, st, "teacher");
            goto done;
        }
    }
    const int B = p->batch, T = p->seq, V = r.teacher->cfg.vocab;
    r.batch = lmp_malloc((size_t)B * (T + 1) * sizeof(int32_t));
    r.tlogits = p->alpha > 0 ? lmp_malloc((size_t)B * T * V * sizeof(float)) : NULL;
    r.hyper = lmp_meta_new();
    if (!r.batch || (p->alpha > 0 && !r.tlogits) || !r.hyper || hyper_meta(p, r.hyper) ||
        output_meta(p, r.teacher, r.student, teacher_sum, student_sum, data_crc, (int64_t)r.n_data, r.hyper, &r.meta)) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }

    // state: fresh or resumed
    lmp_ckpt_state cs = {0, rng_seed(p->seed), 0, 0.0, student_sum, teacher_sum, data_crc};
    if (p->resume_path) {
        lmp_ckpt_state got;
        if ((st = lmp_ckpt_open(p->resume_path, r.t, &r.ck, &got, err))) goto done;
        if (got.student_checksum != student_sum) {
            st = lmp_err(err, LMP_E_ARG,
                         "checkpoint '%s' belongs to another student (made from a student with checksum 0x%08x; '%s' has "
                         "0x%08x)", p->resume_path, got.student_checksum, p->student_path, student_sum);
            goto done;
        }
        if (got.teacher_checksum != teacher_sum) {
            st = lmp_err(err, LMP_E_ARG, "checkpoint '%s' was made with another teacher (checksum 0x%08x, '%s' has 0x%08x)",
                         p->resume_path, got.teacher_checksum, p->teacher_path, teacher_sum);
            goto done;
        }
        if (got.data_crc != data_crc) {
            st = lmp_err(err, LMP_E_ARG, "checkpoint '%s' was made on other data (CRC32 0x%08x, '%s' has 0x%08x)",
                         p->resume_path, got.data_crc, p->data_path, data_crc);
            goto done;
        }
        if ((st = hyper_check(lmp_file_meta(r.ck), r.hyper, p->resume_path, err))) goto done;
        if (got.step > p->steps) {
            st = lmp_err(err, LMP_E_ARG, "checkpoint '%s' is at step %lld, past --steps %lld", p->resume_path,
                         (long long)got.step, (long long)p->steps);
            goto done;
        }
        lmp_ckpt_load(r.ck, r.t, &got);
        lmp_file_close(r.ck);
        r.ck = NULL;
        cs = got;
        s->ckpt_step = got.step;
        note(p, "resumed from '%s' at step %lld of %lld", p->resume_path, (long long)got.step, (long long)p->steps);
    }

    note(p, "memory: %.1f MB allocated for training (documented estimate %.1f MB: parameters %.1f, gradients %.1f, "
            "AdamW %.1f, activations %.1f, logits %.1f, backward %.1f)",
         s->mem_allocated.total / 1e6, s->mem_estimate.total / 1e6, s->mem_estimate.params / 1e6,
         s->mem_estimate.grads / 1e6, s->mem_estimate.adam / 1e6, s->mem_estimate.activations / 1e6,
         s->mem_estimate.logits / 1e6, s->mem_estimate.backward / 1e6);
    const int bos = lmp_tokenizer_add_bos(r.teacher->tok) ? lmp_tokenizer_bos(r.teacher->tok) : -1;
    const lmp_loss_params lp = {p->alpha, p->temp, p->kd};
    const lmp_adamw_params ap = {0.9f, 0.95f, 1e-8f, p->weight_decay, p->clip};
    s->step_first = cs.step + 1;
    s->step_last = cs.step;
    const int64_t first_step = cs.step + 1;
    const double t_loop = lmp_time_now();
    for (int64_t step = first_step; step <= p->steps; step++) {
        sample_batch(r.data, r.n_data, B, T, bos, &cs.rng, r.batch);
        if (p->alpha > 0)
            for (int b = 0; b < B; b++)
                if ((st = lmp_session_eval(r.ts, r.batch + (size_t)b * (T + 1), T, 0, 0, r.tlogits + (size_t)b * T * V,
                                           err))) {
                    lmp_err_prefix(err, st, "teacher");
                    goto done;
                }
        lmp_train_loss l;
        lmp_trainer_zero_grad(r.t);
        if ((st = lmp_trainer_grad(r.t, r.batch, r.tlogits, &lp, 1.0f, &l, err))) goto done;
        const double gn = lmp_trainer_grad_norm(r.t);
        const char *bad = !isfinite(l.loss) ? "is not finite" : !isfinite(gn) ? "has a gradient that is not finite"
                          : (cs.first_loss > 0 && l.loss > 3.0 * cs.first_loss) ? "exploded" : NULL;
        if (bad) {
            char tail[1200];
            if (s->ckpt_step >= 0) snprintf(tail, sizeof tail, "last good checkpoint: '%s' (step %lld)", ckpt, (long long)s->ckpt_step);
            else snprintf(tail, sizeof tail, "no checkpoint was written");
            st = lmp_err(err, LMP_E_STATE, "loss %s at step %lld (%g%s); stopped, %s", bad, (long long)step, l.loss,
                         !strcmp(bad, "exploded") ? ", more than 3x the first step's" : "", tail);
            goto done;
        }
        if (cs.first_loss == 0) cs.first_loss = l.loss;
        const float lr = lmp_lr_schedule(step, p->steps, p->warmup, p->lr, p->min_lr);
        lmp_trainer_adamw(r.t, &ap, lr, gn);
        cs.step = step;
        cs.tokens_seen += (int64_t)B * T;
        s->tokens_seen = cs.tokens_seen;
        s->step_last = step;
        s->loss = l.loss, s->ce = l.ce, s->kd = l.kd;
        if (p->on_step) {
            const double el = lmp_time_now() - t_loop;
            const int64_t done_here = step - first_step + 1;
            lmp_distill_step rep = {step, p->steps, l.loss, l.ce, l.kd, lr, gn, (double)done_here * B * T / el, el,
                                    el / done_here * (double)(p->steps - step), cs.tokens_seen};
            p->on_step(p->user, &rep);
        }
        if (p->eval_path && p->eval_every > 0 && step % p->eval_every == 0 && step != p->steps) {
            if ((st = eval_ppl(r.t, r.meta, p, &s->eval_ppl, &s->eval_ppl_err, err))) goto done;
            if (p->on_eval) p->on_eval(p->user, step, s->eval_ppl, s->eval_ppl_err);
        }
        const int stop = p->stop && *p->stop;
        if ((p->save_every > 0 && step % p->save_every == 0) || stop) {
            if ((st = lmp_ckpt_write(ckpt, r.t, r.meta, &cs, err))) goto done;
            s->ckpt_step = step;
            note(p, "checkpoint '%s' written at step %lld", ckpt, (long long)step);
        }
        if (stop) {
            st = lmp_err(err, LMP_E_STATE, "interrupted at step %lld of %lld; checkpoint '%s' written (continue with "
                         "--resume %s)", (long long)step, (long long)p->steps, ckpt, ckpt);
            goto done;
        }
    }
    s->tokens_seen = cs.tokens_seen;
    if (p->eval_path) {
        if ((st = eval_ppl(r.t, r.meta, p, &s->eval_ppl, &s->eval_ppl_err, err))) goto done;
        if (p->on_eval) p->on_eval(p->user, cs.step, s->eval_ppl, s->eval_ppl_err);
    }

    // output
    lmp_status ms = LMP_OK;
    ms |= lmp_meta_set_i64(r.meta, "distill.tokens_seen", cs.tokens_seen);
    ms |= lmp_meta_set_f64(r.meta, "distill.final_loss", s->loss);
    ms |= lmp_meta_set_f64(r.meta, "distill.final_ce", s->ce);
    ms |= lmp_meta_set_f64(r.meta, "distill.final_kd", s->kd);
    if (p->eval_path) {
        ms |= lmp_meta_set_str(r.meta, "distill.eval_data", p->eval_path);
        ms |= lmp_meta_set_f64(r.meta, "distill.eval_ppl", s->eval_ppl);
    }
    char hist[1400];
    snprintf(hist, sizeof hist, "distill: %lld steps of %d x %d tokens from teacher %s on %s (alpha %g, T %g, %s)",
             (long long)p->steps, B, T, p->teacher_path, p->data_path, p->alpha, p->temp, kd_name(p->kd));
    ms |= lmp_meta_append_str(r.meta, "provenance.history", hist);
    if (ms) {
        st = lmp_err(err, LMP_E_NOMEM, "out of memory");
        goto done;
    }
    lmp_builder *b = NULL;
    if ((st = lmp_trainer_to_builder(r.t, r.meta, &b, err))) goto done;
    st = lmp_builder_write(b, p->out_path, err);
    lmp_builder_free(b);
done:
    s->seconds = lmp_time_now() - t0;
    run_free(&r);
    return st;
}
