// refmath.c - scalar reference math of the Llama block (refmath.h).
#include "runtime/refmath.h"

#include <math.h>

void lmp_ref_rmsnorm(float *out, const float *x, const float *w, int dim, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < dim; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int j = 0; j < dim; j++) out[j] = w[j] * (ss * x[j]);
}

void lmp_ref_rope_tables(float *cos_tab, float *sin_tab, int n_ctx, int rope_dim, float theta) {
    int half = rope_dim / 2;
    for (int p = 0; p < n_ctx; p++) {
        for (int i = 0; i < half; i++) {
            float freq = 1.0f / powf(theta, (float)(2 * i) / (float)rope_dim);
            float val = (float)p * freq;
            cos_tab[(size_t)p * half + i] = cosf(val);
            sin_tab[(size_t)p * half + i] = sinf(val);
        }
    }
}

void lmp_ref_rope_rotate(float *v, const float *cs, const float *sn, int rope_dim, int neox) {
    int half = rope_dim / 2;
    if (neox) {
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = a * sn[i] + b * cs[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    }
}

void lmp_ref_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}
