// distill_main.c - "lmpress distill TEACHER STUDENT DATA -o OUT": knowledge distillation on the command line
// (progress on stderr, CSV log, Ctrl-C checkpoints), and "lmpress init --like TEACHER -o OUT" (a new student).
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "distill/distill.h"

static const char *HELP =
    "usage: lmpress distill TEACHER STUDENT DATA -o OUT [options]\n"
    "Trains STUDENT (an f32 model: a pruned model, or one from 'lmpress init') to imitate TEACHER (any type the\n"
    "runtime runs, quantized included) on the text file DATA, tokenized once with the teacher's tokenizer. Each step\n"
    "draws --batch random windows of --seq tokens and takes one AdamW step on\n"
    "    alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels, student)\n"
    "  --steps N            AdamW steps (default 1000)\n"
    "  --batch B            sequences per step (default 8)\n"
    "  --seq T              tokens per sequence (default min(context, 512), as eval-ppl's chunks: a student\n"
    "                       trained on shorter windows never sees the later positions it is scored on)\n"
    "  --lr LR              peak learning rate (default 1e-3)\n"
    "  --min-lr LR          final learning rate of the cosine decay (default 1e-4)\n"
    "  --warmup N           linear warmup steps (default 50)\n"
    "  --weight-decay W     decoupled weight decay on matrices (default 0.1)\n"
    "  --clip C             global gradient-norm clip, 0 = off (default 1.0)\n"
    "  --temp T             distillation temperature (default 2)\n"
    "  --alpha A            weight of the KD term, 0 = labels only (default 0.5)\n"
    "  --loss fkl|rkl       forward KL(teacher || student) or reverse KL(student || teacher) (default fkl)\n"
    "  --seed S             data-sampler seed (default 1)\n"
    "  -t, --threads N      CPU threads (default: all cores)\n"
    "  --save-every N       write a checkpoint every N steps (default 0: only on Ctrl-C)\n"
    "  --ckpt FILE          checkpoint file (default OUT.ckpt)\n"
    "  --resume CKPT        continue from a checkpoint (same options; ends as the uninterrupted run)\n"
    "  --eval FILE          held-out text: perplexity every --eval-every steps and at the end\n"
    "  --eval-every N       (default 0: only at the end)\n"
    "  --eval-chunks N      evaluate on the first N chunks only (default all)\n"
    "  --eval-ctx N         evaluation chunk length (default min(context, 512))\n"
    "  --log FILE.csv       one CSV row per step (step,loss,kd,ce,lr,grad_norm,tok_s,tokens,eval_ppl)\n"
    "  --tokenizer FILE     llama2.c tokenizer.bin for .bin inputs\n"
    "  -f, --force          replace an existing OUT, checkpoint and log\n"
    "  -q, --quiet / -v, --verbose\n"
    "  -h, --help\n"
    "The output is an f32 .lmp with distill.* provenance; Ctrl-C writes a checkpoint and stops.\n";

static volatile int g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}

typedef struct cli_state {
    FILE *log;
    int row_open;  // a row is waiting for its eval_ppl column
    double t_last;
    int tty;
    int line_open;
} cli_state;

static void fmt_dur(double s, char *b, size_t n) {
    if (!(s >= 0) || s > 1e8) snprintf(b, n, "?");
    else if (s < 60) snprintf(b, n, "%.0fs", s);
    else if (s < 3600) snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(b, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void log_end_row(cli_state *c, double ppl) {
    if (!c->log || !c->row_open) return;
    if (ppl > 0) fprintf(c->log, "%.6g\n", ppl);
    else fputc('\n', c->log);
    c->row_open = 0;
    fflush(c->log);
}

static void on_step(void *user, const lmp_distill_step *s) {
    cli_state *c = user;
    log_end_row(c, 0);
    if (c->log) {
        fprintf(c->log, "%lld,%.6f,%.6f,%.6f,%.6g,%.6g,%.1f,%lld,", (long long)s->step, s->loss, s->kd, s->ce, s->lr,
                s->grad_norm, s->tok_s, (long long)s->tokens_seen);
        c->row_open = 1;
    }
    if (cli_verbosity < 1) return;
    double now = lmp_time_now();
    int last = s->step == s->steps;
    if (!last && s->step > 1 && now - c->t_last < (cli_verbosity >= 2 ? 0.0 : c->tty ? 0.25 : 10.0)) return;
    c->t_last = now;
    char eta[32];
    fmt_dur(s->eta, eta, sizeof eta);
    fprintf(stderr, "%sstep %lld/%lld  loss %.4f  kd %.4f  ce %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s%s",
            c->tty ? "\r" : "", (long long)s->step, (long long)s->steps, s->loss, s->kd, s->ce, s->lr, s->grad_norm,
            s->tok_s, eta, c->tty && !last ? "   " : "\n");
    c->line_open = c->tty && !last;
    fflush(stderr);
}

static void end_line(cli_state *c) {
    if (c->line_open) fputc('\n', stderr);
    c->line_open = 0;
}

static void on_eval(void *user, int64_t step, double ppl, double ppl_err) {
    cli_state *c = user;
    log_end_row(c, ppl);
    if (cli_verbosity < 1) return;
    end_line(c);
    fprintf(stderr, "eval at step %lld: PPL %.4f +/- %.4f\n", (long long)step, ppl, ppl_err);
}

static void on_note(void *user, const char *msg) {
    cli_state *c = user;
    if (cli_verbosity < 1) return;
    end_line(c);
    fprintf(stderr, "lmpress: %s\n", msg);
}

// Keeps the header and the rows of steps <= last_step of an existing log (a resumed run appends after them).
static int log_truncate(const char *path, int64_t last_step) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return -1;
    }
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        if (!first && strtoll(line, NULL, 10) > last_step) continue;
        first = 0;
        fputs(line, o);
    }
    fclose(f);
    if (fclose(o) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int cli_distill_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"steps", required_argument, 0, 'S'},        {"batch", required_argument, 0, 'B'},
        {"seq", required_argument, 0, 'T'},          {"lr", required_argument, 0, 'l'},
        {"min-lr", required_argument, 0, 'm'},       {"warmup", required_argument, 0, 'w'},
        {"weight-decay", required_argument, 0, 'W'}, {"clip", required_argument, 0, 'c'},
        {"temp", required_argument, 0, 'P'},         {"alpha", required_argument, 0, 'a'},
        {"loss", required_argument, 0, 'L'},         {"seed", required_argument, 0, 's'},
        {"threads", required_argument, 0, 't'},      {"save-every", required_argument, 0, 'E'},
        {"ckpt", required_argument, 0, 'C'},         {"resume", required_argument, 0, 'R'},
        {"eval", required_argument, 0, 'e'},         {"eval-every", required_argument, 0, 'V'},
        {"eval-chunks", required_argument, 0, 'N'},  {"eval-ctx", required_argument, 0, 'X'},
        {"log", required_argument, 0, 'g'},          {"tokenizer", required_argument, 0, 'k'},
        {"output", required_argument, 0, 'o'},       {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},              {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    lmp_distill_params p;
    lmp_distill_params_default(&p);
    lmp_import_opts io = {0};
    const char *log_path = NULL;
    int force = 0, c;
    long long v;
    double d;
    const char *cmd = "distill";
    while ((c = cli_getopt(cmd, argc, argv, "t:o:fqvh", opts)) != -1) {
        switch (c) {
        case 'S': if (cli_parse_int(cmd, "--steps", optarg, 1, 1000000000LL, &v)) return 2; p.steps = v; break;
        case 'B': if (cli_parse_int(cmd, "--batch", optarg, 1, 65536, &v)) return 2; p.batch = (int)v; break;
        case 'T': if (cli_parse_int(cmd, "--seq", optarg, 2, 1 << 20, &v)) return 2; p.seq = (int)v; break;
        case 'l': if (cli_parse_float(cmd, "--lr", optarg, 1e-12, 10, &d)) return 2; p.lr = (float)d; break;
        case 'm': if (cli_parse_float(cmd, "--min-lr", optarg, 0, 10, &d)) return 2; p.min_lr = (float)d; break;
        case 'w': if (cli_parse_int(cmd, "--warmup", optarg, 0, 1000000000LL, &v)) return 2; p.warmup = v; break;
        case 'W': if (cli_parse_float(cmd, "--weight-decay", optarg, 0, 10, &d)) return 2; p.weight_decay = (float)d; break;
        case 'c': if (cli_parse_float(cmd, "--clip", optarg, 0, 1e9, &d)) return 2; p.clip = (float)d; break;
        case 'P': if (cli_parse_float(cmd, "--temp", optarg, 1e-3, 1e3, &d)) return 2; p.temp = (float)d; break;
        case 'a': if (cli_parse_float(cmd, "--alpha", optarg, 0, 1, &d)) return 2; p.alpha = (float)d; break;
        case 'L':
            if (!strcmp(optarg, "fkl")) p.kd = LMP_KD_FKL;
            else if (!strcmp(optarg, "rkl")) p.kd = LMP_KD_RKL;
            else return cli_usage_error(cmd, "--loss '%s': must be fkl or rkl", optarg);
            break;
        case 's': if (cli_parse_int(cmd, "--seed", optarg, 0, INT64_MAX, &v)) return 2; p.seed = (uint64_t)v; break;
        case 't': if (cli_parse_int(cmd, "--threads", optarg, 1, 256, &v)) return 2; p.n_threads = (int)v; break;
        case 'E': if (cli_parse_int(cmd, "--save-every", optarg, 0, 1000000000LL, &v)) return 2; p.save_every = v; break;
        case 'C': p.ckpt_path = optarg; break;
        case 'R': p.resume_path = optarg; break;
        case 'e': p.eval_path = optarg; break;
        case 'V': if (cli_parse_int(cmd, "--eval-every", optarg, 0, 1000000000LL, &v)) return 2; p.eval_every = v; break;
        case 'N': if (cli_parse_int(cmd, "--eval-chunks", optarg, 1, 1 << 30, &v)) return 2; p.eval_chunks = (int)v; break;
        case 'X': if (cli_parse_int(cmd, "--eval-ctx", optarg, 4, 1 << 20, &v)) return 2; p.eval_ctx = (int)v; break;
        case 'g': log_path = optarg; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': p.out_path = optarg; break;
        case 'f': force = 1; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (argc - optind != 3) return cli_usage_error(cmd, "expected TEACHER STUDENT DATA, got %d argument%s", argc - optind,
                                                   argc - optind == 1 ? "" : "s");
    p.teacher_path = argv[optind];
    p.student_path = argv[optind + 1];
    p.data_path = argv[optind + 2];
    if (!p.out_path) return cli_usage_error(cmd, "missing -o OUT");
    if (p.min_lr > p.lr) return cli_usage_error(cmd, "--min-lr %g is larger than --lr %g", p.min_lr, p.lr);
    if (p.eval_every && !p.eval_path) return cli_usage_error(cmd, "--eval-every needs --eval FILE");
    const char *inputs[] = {p.teacher_path, p.student_path, p.data_path, p.resume_path, p.eval_path, io.tokenizer_path};
    const char *what[] = {"teacher", "student", "data file", "checkpoint to resume", "evaluation file", "tokenizer"};
    for (int i = 0; i < 6; i++)
        if (inputs[i] && cli_check_input(cmd, inputs[i])) return 1;
    char ckpt_def[4200];
    if (!p.ckpt_path) {
        snprintf(ckpt_def, sizeof ckpt_def, "%s.ckpt", p.out_path);
        p.ckpt_path = ckpt_def;
    }
    // no output may be an input (same device and inode), nor another output
    const char *outs[] = {p.out_path, p.ckpt_path, log_path};
    const char *out_what[] = {"output", "checkpoint", "log"};
    for (int o = 0; o < 3; o++) {
        if (!outs[o]) continue;
        for (int i = 0; i < 6; i++) {
            if (!inputs[i]) continue;
            if (o == 1 && i == 3) continue;  // the checkpoint may continue in the file it resumed from
            if (cli_same_file(inputs[i], outs[o]) || !strcmp(inputs[i], outs[o]))
                return cli_usage_error(cmd, "%s '%s' is the %s; choose another name", out_what[o], outs[o], what[i]);
        }
        if (cli_check_clobber(cmd, o == 0 ? p.teacher_path : p.student_path, io.tokenizer_path, outs[o])) return 2;
        for (int k = 0; k < o; k++)
            if (outs[k] && (!strcmp(outs[k], outs[o]) || cli_same_file(outs[k], outs[o])))
                return cli_usage_error(cmd, "%s '%s' is also the %s; choose another name", out_what[o], outs[o],
                                       out_what[k]);
        // the checkpoint may be the one resumed from, and a resumed run continues its log
        int may_exist = force || (p.resume_path && (o == 1 ? cli_same_file(p.resume_path, outs[o]) : o == 2));
        if (o == 1 && !may_exist && file_exists(outs[o]))
            return cli_usage_error(cmd, "checkpoint '%s' exists; use --resume %s to continue or -f to replace it",
                                   outs[o], outs[o]);
        if (cli_check_output(cmd, outs[o], may_exist)) return 1;
    }

    cli_state cs = {0};
    cs.tty = isatty(2);
    p.command_line = cli_command_line();
    p.import = &io;
    p.stop = &g_stop;
    p.on_step = on_step;
    p.on_eval = on_eval;
    p.on_note = on_note;
    p.user = &cs;
    if (log_path) {
        if (p.resume_path && file_exists(log_path)) {
            // a resumed run continues the log after the checkpoint's step: rows past it are dropped first
            lmp_file *f = NULL;
            int64_t ck_step = -1;
            if (lmp_file_open(p.resume_path, LMP_OPEN_SKIP_CRC, &f, NULL) == LMP_OK) {
                lmp_meta_get_i64(lmp_file_meta(f), "distill.ckpt.step", &ck_step, NULL);
                lmp_file_close(f);
            }
            if (ck_step >= 0 && log_truncate(log_path, ck_step)) {
                cli_error("%s: cannot rewrite log '%s': %s", cmd, log_path, strerror(errno));
                return 1;
            }
            cs.log = fopen(log_path, "a");
        } else {
            cs.log = fopen(log_path, "w");
            if (cs.log) fprintf(cs.log, "step,loss,kd,ce,lr,grad_norm,tok_s,tokens,eval_ppl\n");
        }
        if (!cs.log) {
            cli_error("%s: cannot write log '%s': %s", cmd, log_path, strerror(errno));
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    lmp_error err = {0};
    lmp_distill_summary s;
    lmp_status st = lmp_distill(&p, &s, &err);
    signal(SIGINT, SIG_DFL);
    log_end_row(&cs, 0);
    if (cs.log) fclose(cs.log);
    end_line(&cs);
    if (st) {
        cli_error("distill: %s", err.msg);
        return 1;
    }
    if (cli_verbosity >= 1) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "lmpress: distilled %s -> %s (teacher %s)\n", p.student_path, p.out_path, p.teacher_path);
        fprintf(stderr, "  steps: %lld..%lld of %lld, %lld training tokens (data: %lld tokens)\n",
                (long long)s.step_first, (long long)s.step_last, (long long)p.steps, (long long)s.tokens_seen,
                (long long)s.data_tokens);
        fprintf(stderr, "  final loss %.4f (kd %.4f, ce %.4f)", s.loss, s.kd, s.ce);
        if (p.eval_path) fprintf(stderr, ", eval PPL %.4f +/- %.4f", s.eval_ppl, s.eval_ppl_err);
        fprintf(stderr, "\n  memory: training buffers %.1f MB (estimate %.1f MB), peak resident %.1f MB\n",
                s.mem_allocated.total / 1e6, s.mem_estimate.total / 1e6, ru.ru_maxrss / 1e3);
        fprintf(stderr, "  time: %.1f s\n", s.seconds);
    }
    return 0;
}

// ---- init ----

static const char *INIT_HELP =
    "usage: lmpress init --like TEACHER [--dim D] [--layers L] [--heads H] [--kv-heads K] [--ffn F] [--seed S] -o OUT\n"
    "Writes a new f32 student for 'lmpress distill': the teacher's vocabulary, tokenizer, context, RoPE and norm\n"
    "epsilon, with the given sizes (default: the teacher's). Weights N(0, 0.02^2), attn_output and ffn_down scaled\n"
    "by 1/sqrt(2 * layers), norms 1; the same seed gives the same file.\n"
    "  --tokenizer FILE   llama2.c tokenizer.bin when TEACHER is a .bin\n"
    "  -f, --force        replace an existing OUT\n"
    "  -h, --help\n";

int cli_init_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"like", required_argument, 0, 'L'},      {"dim", required_argument, 0, 'd'},
        {"layers", required_argument, 0, 'l'},    {"heads", required_argument, 0, 'H'},
        {"kv-heads", required_argument, 0, 'K'},  {"ffn", required_argument, 0, 'F'},
        {"seed", required_argument, 0, 's'},      {"tokenizer", required_argument, 0, 'k'},
        {"output", required_argument, 0, 'o'},    {"force", no_argument, 0, 'f'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    lmp_init_params ip = {0};
    ip.seed = 1;
    lmp_import_opts io = {0};
    const char *like = NULL, *out = NULL, *cmd = "init";
    int force = 0, c;
    long long v;
    while ((c = cli_getopt(cmd, argc, argv, "o:fh", opts)) != -1) {
        switch (c) {
        case 'L': like = optarg; break;
        case 'd': if (cli_parse_int(cmd, "--dim", optarg, 2, 1 << 16, &v)) return 2; ip.dim = (int)v; break;
        case 'l': if (cli_parse_int(cmd, "--layers", optarg, 1, 1024, &v)) return 2; ip.n_layers = (int)v; break;
        case 'H': if (cli_parse_int(cmd, "--heads", optarg, 1, 1024, &v)) return 2; ip.n_heads = (int)v; break;
        case 'K': if (cli_parse_int(cmd, "--kv-heads", optarg, 1, 1024, &v)) return 2; ip.n_kv_heads = (int)v; break;
        case 'F': if (cli_parse_int(cmd, "--ffn", optarg, 1, 1 << 20, &v)) return 2; ip.ffn = (int)v; break;
        case 's': if (cli_parse_int(cmd, "--seed", optarg, 0, INT64_MAX, &v)) return 2; ip.seed = (uint64_t)v; break;
        case 'k': io.tokenizer_path = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(INIT_HELP, stdout); return 0;
        default: return 2;
        }
    }
    if (optind != argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!like) return cli_usage_error(cmd, "missing --like TEACHER");
    if (!out) return cli_usage_error(cmd, "missing -o OUT");
    if (cli_check_input(cmd, like)) return 1;
    if (io.tokenizer_path && cli_check_input(cmd, io.tokenizer_path)) return 1;
    if (cli_check_clobber(cmd, like, io.tokenizer_path, out)) return 2;
    if (cli_check_output(cmd, out, force)) return 1;
    lmp_error err = {0};
    lmp_model *t = NULL;
    if (lmp_model_load(like, &io, &t, &err)) return cli_fail(&err);
    ip.teacher_path = like;
    ip.command_line = cli_command_line();
    lmp_builder *b = NULL;
    lmp_status st = lmp_distill_init(t, &ip, &b, &err);
    lmp_model_free(t);
    if (st) {
        cli_error("init: %s", err.msg);
        return 1;
    }
    int64_t n = 0;
    for (size_t i = 0; i < lmp_builder_n_tensors(b); i++) n += lmp_tensor_nelements(lmp_builder_tensor(b, i));
    st = lmp_builder_write(b, out, &err);
    lmp_builder_free(b);
    if (st) return cli_fail(&err);
    fprintf(stderr, "lmpress: wrote %s: %lld parameters (%.2f MB f32), seed %llu\n", out, (long long)n, n * 4 / 1e6,
            (unsigned long long)ip.seed);
    return 0;
}
