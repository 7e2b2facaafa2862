/*
 * edgequant's instruction-counting plugin for qemu-user's TCG plugin API.
 *
 * It counts guest instructions per translation block and keeps the counts of
 * "measurement windows" apart from the rest of the process: the guest opens a
 * window by calling close(MARK_BEGIN) and ends it with close(MARK_END). Those
 * fds never exist, so the calls fail harmlessly in the guest, but the plugin
 * sees the syscall and snapshots its counters. Python start-up, imports and
 * model loading are then never counted, without running the process twice.
 *
 * At exit it writes, to the file named by the `out=PATH` argument:
 *   total N          instructions executed by the whole process
 *   windows K        how many windows were closed
 *   measured M       instructions executed inside windows
 *   tb VADDR NINSNS EXECS   one line per translation block run inside windows
 *
 * Counters are plain inline adds: exact with one guest thread, approximate
 * when several guest threads race on them (edgequant counts with 1 thread).
 *
 * Debian's qemu packages do not ship qemu-plugin.h, so the few declarations
 * used here are copied from qemu 7.2's include/qemu/qemu-plugin.h
 * (QEMU_PLUGIN_VERSION 1). Build:
 *   gcc -shared -fPIC -O2 -o libinsncount.so insncount.c -lpthread
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- qemu 7.2 plugin API (include/qemu/qemu-plugin.h) ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_outs(const char *string);
/* ---- end of the qemu API ---- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* Must match MARK_BEGIN / MARK_END in edgequant/devices/arm/guest_runner.py. */
#define MARK_BEGIN 0x7E5A0001ULL
#define MARK_END 0x7E5A0002ULL
#define SYS_CLOSE_AARCH64 57

struct tb_count {
    uint64_t vaddr;
    uint64_t n_insns;
    uint64_t execs;     /* bumped inline by the translated code */
    uint64_t at_begin;  /* execs when the current window opened */
    uint64_t in_window; /* execs inside closed windows */
    struct tb_count *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tb_count *all_tbs;
static uint64_t windows_closed;
static bool window_open;
static char *out_path;

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct tb_count *c = calloc(1, sizeof(*c));
    if (!c) {
        return;
    }
    c->vaddr = qemu_plugin_tb_vaddr(tb);
    c->n_insns = qemu_plugin_tb_n_insns(tb);
    pthread_mutex_lock(&lock);
    c->next = all_tbs;
    all_tbs = c;
    pthread_mutex_unlock(&lock);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &c->execs, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num != SYS_CLOSE_AARCH64 || (a1 != MARK_BEGIN && a1 != MARK_END)) {
        return;
    }
    pthread_mutex_lock(&lock);
    if (a1 == MARK_BEGIN) {
        for (struct tb_count *c = all_tbs; c; c = c->next) {
            c->at_begin = c->execs;
        }
        window_open = true;
    } else if (window_open) {
        for (struct tb_count *c = all_tbs; c; c = c->next) {
            c->in_window += c->execs - c->at_begin;
        }
        window_open = false;
        windows_closed++;
    }
    pthread_mutex_unlock(&lock);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    uint64_t total = 0, measured = 0;
    pthread_mutex_lock(&lock);
    for (struct tb_count *c = all_tbs; c; c = c->next) {
        total += c->n_insns * c->execs;
        measured += c->n_insns * c->in_window;
    }
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("insncount: cannot open the output file\n");
        pthread_mutex_unlock(&lock);
        return;
    }
    fprintf(f, "total %" PRIu64 "\nwindows %" PRIu64 "\nmeasured %" PRIu64 "\n", total, windows_closed, measured);
    for (struct tb_count *c = all_tbs; c; c = c->next) {
        if (c->in_window) {
            fprintf(f, "tb %" PRIx64 " %" PRIu64 " %" PRIu64 "\n", c->vaddr, c->n_insns, c->in_window);
        }
    }
    fclose(f);
    pthread_mutex_unlock(&lock);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        }
    }
    if (!out_path) {
        qemu_plugin_outs("insncount: give the output file as -plugin libinsncount.so,out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
