// ckpt.c - training checkpoints as .lmp files (see ckpt.h).
#include "distill/ckpt.h"

#include <stdio.h>
#include <string.h>

static lmp_status set_state(lmp_meta *m, const lmp_ckpt_state *s) {
    lmp_status st = LMP_OK;
    st |= lmp_meta_set_u32(m, "distill.ckpt.version", LMP_CKPT_VERSION);
    st |= lmp_meta_set_i64(m, "distill.ckpt.step", s->step);
    st |= lmp_meta_set_u64(m, "distill.ckpt.rng", s->rng);
    st |= lmp_meta_set_i64(m, "distill.ckpt.tokens_seen", s->tokens_seen);
    st |= lmp_meta_set_f64(m, "distill.ckpt.first_loss", s->first_loss);
    st |= lmp_meta_set_u32(m, "distill.ckpt.student_checksum", s->student_checksum);
    st |= lmp_meta_set_u32(m, "distill.ckpt.teacher_checksum", s->teacher_checksum);
    st |= lmp_meta_set_u32(m, "distill.ckpt.data_crc32", s->data_crc);
    return st ? LMP_E_NOMEM : LMP_OK;
}

lmp_status lmp_ckpt_write(const char *path, lmp_trainer *t, const lmp_meta *meta, const lmp_ckpt_state *s,
                          lmp_error *err) {
    lmp_builder *b = NULL;
    lmp_status st = lmp_trainer_to_builder(t, meta, &b, err);
    if (st) return st;
    if (set_state(lmp_builder_meta(b), s)) {
        lmp_builder_free(b);
        return lmp_err(err, LMP_E_NOMEM, "out of memory");
    }
    const float *mom[2] = {lmp_trainer_adam_m(t), lmp_trainer_adam_v(t)};
    const char *prefix[2] = {"adam.m.", "adam.v."};
    for (int k = 0; k < 2 && !st; k++)
        for (int i = 0; i < lmp_trainer_n_tensors(t) && !st; i++) {
            const lmp_train_tensor *e = lmp_trainer_tensor(t, i);
            char name[96];
            snprintf(name, sizeof name, "%s%s", prefix[k], e->name);
            st = lmp_builder_add_ref(b, name, LMP_DTYPE_F32, e->ndim, e->shape, mom[k] + e->offset, err);
        }
    if (!st) st = lmp_builder_write(b, path, err);
    lmp_builder_free(b);
    return lmp_err_prefix(err, st, "checkpoint '%s'", path);
}

static lmp_status get_i64(const lmp_meta *m, const char *key, int64_t *v, lmp_error *err) {
    return lmp_meta_get_i64(m, key, v, err);
}

lmp_status lmp_ckpt_open(const char *path, const lmp_trainer *t, lmp_file **out, lmp_ckpt_state *s, lmp_error *err) {
    *out = NULL;
    lmp_file *f = NULL;
    lmp_status st = lmp_file_open(path, LMP_OPEN_DEFAULT, &f, err);
    if (st) return lmp_err_prefix(err, st, "checkpoint");  // the reader's message names the file
    const lmp_meta *m = lmp_file_meta(f);
    uint32_t version = 0;
    if (!lmp_meta_find(m, "distill.ckpt.version")) {
        lmp_file_close(f);
        return lmp_err(err, LMP_E_FORMAT, "'%s' is not a training checkpoint (no distill.ckpt.version)", path);
    }
    uint64_t rng = 0;
    if ((st = lmp_meta_get_u32(m, "distill.ckpt.version", &version, err)) ||
        (version != LMP_CKPT_VERSION &&
         (st = lmp_err(err, LMP_E_UNSUPPORTED, "checkpoint version %u (this build reads %d)", version,
                       LMP_CKPT_VERSION))) ||
        (st = get_i64(m, "distill.ckpt.step", &s->step, err)) ||
        (st = lmp_meta_get_u64(m, "distill.ckpt.rng", &rng, err)) ||
        (st = get_i64(m, "distill.ckpt.tokens_seen", &s->tokens_seen, err)) ||
        (st = lmp_meta_get_u32(m, "distill.ckpt.student_checksum", &s->student_checksum, err)) ||
        (st = lmp_meta_get_u32(m, "distill.ckpt.teacher_checksum", &s->teacher_checksum, err)) ||
        (st = lmp_meta_get_u32(m, "distill.ckpt.data_crc32", &s->data_crc, err))) {
        lmp_file_close(f);
        return lmp_err_prefix(err, st, "checkpoint '%s'", path);
    }
    s->rng = rng;
    const lmp_kv *fl = lmp_meta_find(m, "distill.ckpt.first_loss");
    s->first_loss = fl && fl->type == LMP_KV_F64 ? fl->v.f64 : 0.0;
    if (s->step < 0) {
        lmp_file_close(f);
        return lmp_err(err, LMP_E_FORMAT, "checkpoint '%s': negative step %lld", path, (long long)s->step);
    }
    // every parameter and its two moments, with the trainer's shapes
    for (int i = 0; i < lmp_trainer_n_tensors(t); i++) {
        const lmp_train_tensor *e = lmp_trainer_tensor(t, i);
        for (int k = 0; k < 3; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", k == 0 ? "" : k == 1 ? "adam.m." : "adam.v.", e->name);
            const lmp_tensor *te = lmp_file_find(f, name);
            if (!te) {
                lmp_file_close(f);
                return lmp_err(err, LMP_E_FORMAT, "checkpoint '%s' has no tensor '%s': it is not of this student",
                               path, name);
            }
            int same = te->type == LMP_DTYPE_F32 && te->ndim == e->ndim && te->shape[0] == e->shape[0] &&
                       (e->ndim == 1 || te->shape[1] == e->shape[1]);
            if (!same) {
                lmp_file_close(f);
                return lmp_err(err, LMP_E_FORMAT,
                               "checkpoint '%s': tensor '%s' has another shape or type than the student's: it is not "
                               "of this student", path, name);
            }
        }
    }
    *out = f;
    return LMP_OK;
}

void lmp_ckpt_load(const lmp_file *f, lmp_trainer *t, const lmp_ckpt_state *s) {
    float *buf[3] = {lmp_trainer_params(t), lmp_trainer_adam_m(t), lmp_trainer_adam_v(t)};
    for (int i = 0; i < lmp_trainer_n_tensors(t); i++) {
        const lmp_train_tensor *e = lmp_trainer_tensor(t, i);
        for (int k = 0; k < 3; k++) {
            char name[96];
            snprintf(name, sizeof name, "%s%s", k == 0 ? "" : k == 1 ? "adam.m." : "adam.v.", e->name);
            const lmp_tensor *te = lmp_file_find(f, name);  // checked by lmp_ckpt_open
            memcpy(buf[k] + e->offset, te->data, e->count * sizeof(float));
        }
    }
    lmp_trainer_set_step(t, s->step);
}
