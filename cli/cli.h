// cli.h - the lmpress command line: one entry point per subcommand and the helpers they share
// (messages, option errors, progress with ETA, input/output checks). Only cli/ prints or exits.
#ifndef LMP_CLI_H
#define LMP_CLI_H

#include <stdio.h>

#include "format/lmp_common.h"
#include "runtime/session.h"

// Subcommands: each returns the process exit status (0 ok, 1 failure, 2 usage error).
int cli_info_main(int argc, char **argv);
int cli_import_main(int argc, char **argv);
int cli_export_main(int argc, char **argv);
int cli_run_main(int argc, char **argv);
int cli_eval_main(int argc, char **argv);
int cli_quantize_main(int argc, char **argv);
int cli_prune_main(int argc, char **argv);
int cli_synth_main(int argc, char **argv);
int cli_distill_main(int argc, char **argv);
int cli_init_main(int argc, char **argv);
int cli_plotlog_main(int argc, char **argv);

// getopt_long with lmpress's messages: returns the option, -1 after the last option, or -2 after printing
// a usage error (unknown option, missing value). Call cli_getopt_reset() before the first call.
struct option;
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts);
void cli_getopt_reset(void);

// "lmpress: <message>" on stderr, one line.
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints the library error and returns 1.
int cli_fail(const lmp_error *err);
// Usage error: prints "lmpress CMD: <message> (see 'lmpress CMD --help')" and returns 2.
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Verbosity: 0 quiet (-q), 1 normal, 2 verbose (-v). Progress is printed at >= 1.
extern int cli_verbosity;

// Progress callback for the library (lmp_progress_fn): rate-limited, on stderr, with rate and ETA.
// user must point to a cli_progress state (zero-initialised).
typedef struct cli_progress {
    double t_start, t_last;
    char stage[64];
    int printed;  // a line is open on stderr
} cli_progress;
void cli_progress_cb(void *user, const char *stage, double done, double total);
void cli_progress_done(cli_progress *p);  // ends the progress line

// Number parsing with range checks; return 0 on success, -1 with a printed usage error otherwise.
int cli_parse_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi,
                  long long *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out);

// --device VALUE: "cpu", "cuda" or "auto"; 0 on success, -1 after a usage error.
int cli_parse_device(const char *cmd, const char *s, const char **out);
// The backend for device: "auto" becomes "cuda" when a CUDA backend can start here (a CUDA build and a
// GPU), otherwise "cpu" with one line on stderr saying why; "cpu" and "cuda" stay as they are.
const char *cli_resolve_device(const char *cmd, const char *device);
// One stderr line (unless -q): --device auto runs on the CPU, and why (the CUDA backend's message).
void cli_auto_fallback_note(const char *cmd, const char *why);
// lmp_session_new on so->backend; when device was "auto" and the CUDA session is refused as unsupported
// (a weight type without a CUDA kernel), says so on stderr and runs on the CPU instead.
lmp_status cli_session_new(const char *cmd, lmp_model *m, lmp_session_opts *so, const char *device,
                           lmp_session **out, lmp_error *err);

// 1 if both paths name the same existing file (same device and inode), else 0.
int cli_same_file(const char *a, const char *b);
// Refuses (usage error, returns 2) an output that would overwrite an input: the model itself (same device and
// inode, so ./x, hard links and symlinks count), the tokenizer file, the tokenizer a llama2.c checkpoint picks
// up beside itself when none is given, or a file of a model directory. Returns 0 when out is safe.
int cli_check_clobber(const char *cmd, const char *model, const char *tokenizer, const char *out);
// Checks that an input path exists and is readable (file or directory); prints and returns -1 if not.
int cli_check_input(const char *cmd, const char *path);
// Checks, before any work, that an output file can be created: its directory exists and is writable, the
// path is not a directory, and nothing exists at the path unless force (-f/--force), which still allows
// only a regular file to be replaced. Prints one line and returns -1 if not. Run cli_check_clobber first:
// force never allows writing over an input.
int cli_check_output(const char *cmd, const char *path, int force);
// s as a JSON string literal (quotes, backslashes and control bytes escaped).
void cli_json_string(FILE *f, const char *s);
// The whole command line as one string (for provenance), in a static buffer.
const char *cli_command_line(void);
void cli_set_command_line(int argc, char **argv);

#endif
