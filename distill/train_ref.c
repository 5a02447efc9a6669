// train_ref.c - double-precision scalar references of the training ops (see train_ref.h). Every loop is
// the definition written out; the derivations of the backward formulas are in docs/training.md.
#include "distill/train_ref.h"

#include <math.h>
#include <string.h>

void lmp_tref_embed_fwd(double *out, const double *E, const int32_t *tok, int n, int dim) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, E + (size_t)tok[i] * dim, (size_t)dim * sizeof(double));
}

void lmp_tref_embed_bwd(double *dE, const double *dout, const int32_t *tok, int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) dE[(size_t)tok[i] * dim + j] += dout[(size_t)i * dim + j];
}

void lmp_tref_rmsnorm_fwd(double *out, double *rstd, const double *x, const double *w, int n, int dim, double eps) {
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)i * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += xi[j] * xi[j];
        double r = 1.0 / sqrt(ss / dim + eps);
        rstd[i] = r;
        for (int j = 0; j < dim; j++) out[(size_t)i * dim + j] = xi[j] * r * w[j];
    }
}

// y_j = w_j x_j r, r = (mean x^2 + eps)^-1/2, dr/dx_k = -r^3 x_k / dim:
// dx_k = r w_k dy_k - (r^3 / dim) x_k sum_j dy_j w_j x_j
void lmp_tref_rmsnorm_bwd(double *dx, double *dw, const double *dout, const double *x, const double *w,
                          const double *rstd, int n, int dim) {
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)i * dim, *gi = dout + (size_t)i * dim;
        double r = rstd[i], dot = 0;
        for (int j = 0; j < dim; j++) dot += gi[j] * w[j] * xi[j];
        for (int j = 0; j < dim; j++) {
            dx[(size_t)i * dim + j] += r * w[j] * gi[j] - r * r * r / dim * xi[j] * dot;
            dw[j] += gi[j] * xi[j] * r;
        }
    }
}

void lmp_tref_matmul_fwd(double *y, const double *x, const double *W, int n, int in, int out) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int k = 0; k < in; k++) s += x[(size_t)i * in + k] * W[(size_t)o * in + k];
            y[(size_t)i * out + o] = s;
        }
}

void lmp_tref_matmul_bwd(double *dx, double *dW, const double *dy, const double *x, const double *W, int n, int in,
                         int out) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double g = dy[(size_t)i * out + o];
            for (int k = 0; k < in; k++) {
                if (dx) dx[(size_t)i * in + k] += g * W[(size_t)o * in + k];
                if (dW) dW[(size_t)o * in + k] += g * x[(size_t)i * in + k];
            }
        }
}

// Rotation of pair (a, b) by angle t: (a cos t - b sin t, a sin t + b cos t); sign -1 rotates by -t.
static void rope_one(double *v, const double *cs, const double *sn, int rope_dim, int neox, double sign) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
        double a = v[ia], b = v[ib], c = cs[i], s = sign * sn[i];
        v[ia] = a * c - b * s;
        v[ib] = a * s + b * c;
    }
}

static void rope_all(double *x, int n, int T, int n_heads, int hd, const double *cos_tab, const double *sin_tab,
                     int rope_dim, int neox, double sign) {
    int half = rope_dim / 2;
    for (int i = 0; i < n; i++) {
        int pos = i % T;
        for (int h = 0; h < n_heads; h++)
            rope_one(x + ((size_t)i * n_heads + h) * hd, cos_tab + (size_t)pos * half, sin_tab + (size_t)pos * half,
                     rope_dim, neox, sign);
    }
}

void lmp_tref_rope_fwd(double *x, int n, int T, int n_heads, int hd, const double *cos_tab, const double *sin_tab,
                       int rope_dim, int neox) {
    rope_all(x, n, T, n_heads, hd, cos_tab, sin_tab, rope_dim, neox, 1.0);
}

void lmp_tref_rope_bwd(double *dx, int n, int T, int n_heads, int hd, const double *cos_tab, const double *sin_tab,
                       int rope_dim, int neox) {
    rope_all(dx, n, T, n_heads, hd, cos_tab, sin_tab, rope_dim, neox, -1.0);
}

void lmp_tref_attn_fwd(double *out, double *P, const double *q, const double *k, const double *v,
                       const lmp_attn_dims *d) {
    const int T = d->T, hd = d->hd, nh = d->n_heads, group = d->n_heads / d->n_kv;
    const size_t qs = (size_t)nh * hd, ks = (size_t)d->n_kv * hd;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < nh; h++) {
            const int kh = h / group;
            for (int t = 0; t < T; t++) {
                const double *qt = q + ((size_t)b * T + t) * qs + (size_t)h * hd;
                double *p = P + (((size_t)b * nh + h) * T + t) * T;
                double mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const double *ks_ = k + ((size_t)b * T + s) * ks + (size_t)kh * hd;
                    double dot = 0;
                    for (int j = 0; j < hd; j++) dot += qt[j] * ks_[j];
                    p[s] = dot * scale;
                    if (p[s] > mx) mx = p[s];
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int s = 0; s <= t; s++) p[s] /= sum;
                for (int s = t + 1; s < T; s++) p[s] = 0;
                double *ot = out + ((size_t)b * T + t) * qs + (size_t)h * hd;
                for (int j = 0; j < hd; j++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += p[s] * v[((size_t)b * T + s) * ks + (size_t)kh * hd + j];
                    ot[j] = acc;
                }
            }
        }
}

// o_t = sum_s P_ts v_s; dP_ts = do_t . v_s; dS_ts = P_ts (dP_ts - sum_r P_tr dP_tr);
// dq_t = scale sum_s dS_ts k_s; dk_s += scale sum_t dS_ts q_t; dv_s += sum_t P_ts do_t.
void lmp_tref_attn_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q, const double *k,
                       const double *v, const double *P, const lmp_attn_dims *d) {
    const int T = d->T, hd = d->hd, nh = d->n_heads, group = d->n_heads / d->n_kv;
    const size_t qs = (size_t)nh * hd, ks = (size_t)d->n_kv * hd;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < nh; h++) {
            const int kh = h / group;
            for (int t = 0; t < T; t++) {
                const double *p = P + (((size_t)b * nh + h) * T + t) * T;
                const double *dot_ = dout + ((size_t)b * T + t) * qs + (size_t)h * hd;
                const double *qt = q + ((size_t)b * T + t) * qs + (size_t)h * hd;
                double *dqt = dq + ((size_t)b * T + t) * qs + (size_t)h * hd;
                double dp[t + 1], rowdot = 0;
                for (int s = 0; s <= t; s++) {
                    const double *vs = v + ((size_t)b * T + s) * ks + (size_t)kh * hd;
                    double acc = 0;
                    for (int j = 0; j < hd; j++) acc += dot_[j] * vs[j];
                    dp[s] = acc;
                    rowdot += p[s] * acc;
                }
                for (int s = 0; s <= t; s++) {
                    const size_t ko = ((size_t)b * T + s) * ks + (size_t)kh * hd;
                    double ds = p[s] * (dp[s] - rowdot) * scale;
                    for (int j = 0; j < hd; j++) {
                        dqt[j] += ds * k[ko + j];
                        dk[ko + j] += ds * qt[j];
                        dv[ko + j] += p[s] * dot_[j];
                    }
                }
            }
        }
}

static double silu(double x) { return x / (1.0 + exp(-x)); }

void lmp_tref_swiglu_fwd(double *h, const double *g, const double *u, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = silu(g[i]) * u[i];
}

// silu'(x) = s(x) (1 + x (1 - s(x))), s the logistic function
void lmp_tref_swiglu_bwd(double *dg, double *du, const double *dh, const double *g, const double *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double s = 1.0 / (1.0 + exp(-g[i]));
        dg[i] += dh[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
        du[i] += dh[i] * g[i] * s;
    }
}

static double logsumexp(const double *x, int n, double mul) {
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < n; j++) mx = x[j] * mul > mx ? x[j] * mul : mx;
    for (int j = 0; j < n; j++) s += exp(x[j] * mul - mx);
    return mx + log(s);
}

// CE = lse(z) - z_y, dCE/dz = softmax(z) - onehot(y).
// With zs = z/T, q = softmax(zs), pt = softmax(t/T):
//   FKL: KD = T^2 sum pt (log pt - log q),  dKD/dz = T (q - pt);
//   RKL: KD = T^2 sum q (log q - log pt),   dKD/dz_j = T q_j (a_j - sum_k q_k a_k), a = log q - log pt.
void lmp_tref_loss(double *dlogits, double *ce, double *kd, const double *logits, const int32_t *labels,
                   const double *teacher, int n, int V, const lmp_loss_params *p, double scale) {
    const double a = p->alpha, T = p->temp;
    for (int i = 0; i < n; i++) {
        const double *z = logits + (size_t)i * V;
        double *dz = dlogits + (size_t)i * V;
        double lse = logsumexp(z, V, 1.0);
        ce[i] = lse - z[labels[i]];
        for (int j = 0; j < V; j++) dz[j] = scale * (1 - a) * (exp(z[j] - lse) - (j == labels[i]));
        kd[i] = 0;
        if (a <= 0) continue;
        const double *t = teacher + (size_t)i * V;
        double lse_s = logsumexp(z, V, 1.0 / T), lse_t = logsumexp(t, V, 1.0 / T), kl = 0, eqa = 0;
        for (int j = 0; j < V; j++) {
            double lq = z[j] / T - lse_s, lp = t[j] / T - lse_t;
            if (p->kd == LMP_KD_FKL) kl += exp(lp) * (lp - lq);
            else kl += exp(lq) * (lq - lp);
        }
        eqa = kl;  // RKL: sum q a = KL(q || p)
        kd[i] = T * T * kl;
        for (int j = 0; j < V; j++) {
            double lq = z[j] / T - lse_s, lp = t[j] / T - lse_t, g;
            if (p->kd == LMP_KD_FKL) g = T * (exp(lq) - exp(lp));
            else g = T * exp(lq) * ((lq - lp) - eqa);
            dz[j] += scale * a * g;
        }
    }
}

void lmp_tref_adamw(double *p, const double *g, double *m, double *v, size_t n, double lr, double b1, double b2,
                    double eps, double wd, double bc1, double bc2, double gscale) {
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * gscale;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        p[i] -= lr * wd * p[i];
        p[i] -= lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
    }
}
