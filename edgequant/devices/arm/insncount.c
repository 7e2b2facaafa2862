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
 * Each instruction is also classified once, when its block is translated, from
 * qemu's disassembly (or its encoding, where qemu 7.2's ARMv8.0 disassembler prints
 * ".byte": dot product, LSE atomics): dot product (sdot/udot), floating-point and
 * integer SIMD multiply(-accumulate), other SIMD/FP, loads, stores, and scalar code; loads and stores also add the
 * bytes they move. A block's execution count times its per-class totals gives
 * the mix of a window at no extra cost per executed instruction.
 *
 * At exit it writes, to the file named by the `out=PATH` argument:
 *   total N          instructions executed by the whole process
 *   windows K        how many windows were closed
 *   measured M       instructions executed inside windows
 *   mix CLASS N      instructions of each class inside windows (CLASS_NAMES)
 *   tb VADDR NINSNS EXECS   one line per translation block run inside windows
 *   seg I KIND SITE N CLASS_COUNTS...   segment I of the windows (see below), started by the
 *                           block at SITE, N instructions
 *   stb I VADDR INSNS       instructions segment I ran in the block at VADDR
 *
 * Segments split each window where the model's operators start, for per-layer
 * figures. `marks=PATH` names a file of addresses relative to one guest
 * library ("call LO HI": a block in [LO, HI) that ends in `blr` calls a TFLite
 * node's kernel, and the block at its return address is the interpreter again;
 * "entry ADDR": a block starting at ADDR starts an XNNPACK operator). The guest
 * says where that library is loaded with lseek(MARK_BASE, base); blocks are
 * checked when they are translated, so it must say so before the first invoke.
 * Each marked block starts a new segment of kind N (node), X (XNNPACK operator)
 * or R (back in the interpreter); a window starts with kind S. Segment I of every
 * window adds up, so the segments of a window sum to its count exactly.
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
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);
/* ---- end of the qemu API ---- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

/* Must match MARK_BEGIN / MARK_END in edgequant/devices/arm/guest_runner.py. */
#define MARK_BEGIN 0x7E5A0001ULL
#define MARK_END 0x7E5A0002ULL
#define MARK_BASE 0x7E5A0003ULL
#define SYS_CLOSE_AARCH64 57
#define SYS_LSEEK_AARCH64 62

/* Must match INSTRUCTION_CLASSES in edgequant/devices/arm/runner.py. */
enum insn_class { DOT, FP_MAC, INT_MAC, SIMD_OTHER, LOAD, STORE, SCALAR, LOAD_BYTES, STORE_BYTES, N_CLASSES };
static const char *const CLASS_NAMES[N_CLASSES] = {
    "dot", "fp_mac", "int_mac", "simd_other", "load", "store", "scalar", "load_bytes", "store_bytes",
};

struct tb_count {
    uint64_t vaddr;
    uint64_t n_insns;
    uint32_t mix[N_CLASSES]; /* per execution of the block */
    uint64_t execs;     /* bumped inline by the translated code */
    uint64_t at_begin;  /* execs when the current window opened */
    uint64_t in_window; /* execs inside closed windows */
    uint64_t at_segment; /* execs when the current segment started */
    char mark;           /* the kind of segment this block starts, or 0 */
    struct tb_count *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tb_count *all_tbs;
static uint64_t windows_closed;
static bool window_open;
static char *out_path;

/* Operator marks (see the header), relative to the marked library until its base is known. */
#define MAX_MARKS 64
static uint64_t call_lo[MAX_MARKS], call_hi[MAX_MARKS], entries[MAX_MARKS];
static int n_calls, n_entries;
static bool marks_placed;
static uint64_t returns[MAX_MARKS]; /* absolute return addresses of the marked calls */
static int n_returns;

struct seg_tb {
    uint64_t vaddr, insns;
};
struct segment {
    char kind;
    uint64_t site; /* the block that started it */
    uint64_t insns;
    uint64_t mix[N_CLASSES];
    struct seg_tb *tbs;
    size_t n_tbs, cap_tbs;
};
static struct segment *segments;
static size_t n_segments, cap_segments;
static size_t current_segment; /* index within the open window */
static char current_kind;
static uint64_t current_site;

static bool starts_with_any(const char *s, const char *const *prefixes)
{
    for (; *prefixes; prefixes++) {
        if (strncmp(s, *prefixes, strlen(*prefixes)) == 0) {
            return true;
        }
    }
    return false;
}

/* Is the operand text a SIMD/FP register (v0.4s, q1, d2, s3, h4, b5)? */
static bool simd_operand(const char *ops)
{
    for (const char *p = ops; *p; p++) {
        bool start = p == ops || *(p - 1) == ' ' || *(p - 1) == '{' || *(p - 1) == ',';
        if (start && strchr("vqdshb", *p) && p[1] >= '0' && p[1] <= '9') {
            return true;
        }
    }
    return false;
}

/* Bytes one load/store moves, from its first register operand and register list. */
static unsigned access_bytes(const char *mnemonic, const char *ops)
{
    unsigned regs = 1, size = 8;
    const char *r = ops;
    while (*r == ' ' || *r == '{') {
        r++;
    }
    if (*r == 'v') { /* v0.16b, {v0.4s, v1.4s}, v2.s[1], v3.4s ... */
        const char *dot = strchr(r, '.');
        const char *close = strchr(ops, '}');
        if (close) {
            regs = 0;
            for (const char *p = ops; p < close; p++) {
                regs += *p == 'v' && p[1] >= '0' && p[1] <= '9';
            }
            const char *dash = strchr(ops, '-');
            if (dash && dash < close) { /* {v0.16b-v3.16b} */
                regs = (unsigned)(atoi(dash + 2) - atoi(r + 1) + 1);
            }
        }
        if (dot) {
            int lanes = atoi(dot + 1);
            char t = lanes ? dot[1 + (lanes >= 10)] : dot[1];
            unsigned elem = t == 'b' ? 1 : t == 'h' ? 2 : t == 's' ? 4 : 8;
            bool lane_access = strchr(ops, '[') != NULL || strstr(mnemonic, "r") == mnemonic + 3;
            size = lane_access || !lanes ? elem : elem * (unsigned)lanes;
        }
    } else {
        size = *r == 'q' ? 16 : *r == 'x' || *r == 'd' ? 8 : *r == 'w' || *r == 's' ? 4 : *r == 'h' ? 2 : 1;
        if (*r == 'w' && (strncmp(mnemonic, "ldrb", 4) == 0 || strncmp(mnemonic, "strb", 4) == 0 ||
                          strncmp(mnemonic, "ldrsb", 5) == 0 || strncmp(mnemonic, "ldurb", 5) == 0)) {
            size = 1;
        } else if (*r == 'w' && (strncmp(mnemonic, "ldrh", 4) == 0 || strncmp(mnemonic, "strh", 4) == 0 ||
                                 strncmp(mnemonic, "ldrsh", 5) == 0)) {
            size = 2;
        }
        if (mnemonic[2] == 'p' || mnemonic[3] == 'p') { /* ldp, stp, ldnp, stnp */
            regs = 2;
        }
    }
    return regs * size;
}

static const char *const DOT_OPS[] = {"sdot", "udot", "usdot", "sudot", "smmla", "ummla", "usmmla", "bfdot", NULL};
static const char *const MAC_OPS[] = {"fmla", "fmls", "fmul", "mla", "mls", "mul", "smlal", "umlal", "smlsl",
                                      "umlsl", "smull", "umull", "sadalp", "uadalp", "sqdmulh", "sqrdmulh",
                                      "sqrdmlah", "sqdmlal", "fmadd", "fmsub", "fnmadd", "fnmsub", NULL};

/* What qemu 7.2's disassembler cannot name: decoded from the A64 encoding. */
static void classify_encoding(uint32_t insn, uint32_t *mix)
{
    bool dot_vector = (insn & 0x9FE0FC00u) == 0x0E809400u;  /* SDOT/UDOT (vector) */
    bool dot_element = (insn & 0x9FC0F400u) == 0x0F80E000u; /* SDOT/UDOT (by element) */
    if (dot_vector || dot_element) {
        mix[DOT]++;
    } else if ((insn & 0x0A000000u) == 0x08000000u) {     /* loads and stores, LSE atomics */
        bool load = (insn >> 22) & 1;
        mix[load ? LOAD : STORE]++;
        mix[load ? LOAD_BYTES : STORE_BYTES] += 1u << (insn >> 30);
    } else if ((insn & 0x0E000000u) == 0x0E000000u) {     /* SIMD and floating point */
        mix[SIMD_OTHER]++;
    } else {
        mix[SCALAR]++;
    }
}

static void classify(const char *text, uint32_t *mix)
{
    char mnemonic[16] = {0};
    size_t n = strcspn(text, " \t");
    if (n >= sizeof(mnemonic)) {
        n = sizeof(mnemonic) - 1;
    }
    memcpy(mnemonic, text, n);
    const char *ops = text + n;
    while (*ops == ' ' || *ops == '\t') {
        ops++;
    }
    if (strncmp(mnemonic, "ld", 2) == 0 && strncmp(mnemonic, "ldadd", 5) != 0) {
        mix[LOAD]++;
        mix[LOAD_BYTES] += access_bytes(mnemonic, ops);
    } else if (strncmp(mnemonic, "st", 2) == 0) {
        mix[STORE]++;
        mix[STORE_BYTES] += access_bytes(mnemonic, ops);
    } else if (starts_with_any(mnemonic, DOT_OPS)) {
        mix[DOT]++;
    } else if (simd_operand(ops)) {
        bool mac = starts_with_any(mnemonic, MAC_OPS);
        mix[!mac ? SIMD_OTHER : mnemonic[0] == 'f' ? FP_MAC : INT_MAC]++;
    } else {
        mix[SCALAR]++;
    }
}

static void add_segment_tb(struct segment *seg, uint64_t vaddr, uint64_t insns)
{
    for (size_t i = 0; i < seg->n_tbs; i++) { /* the same index in a later window: same blocks, mostly */
        if (seg->tbs[i].vaddr == vaddr) {
            seg->tbs[i].insns += insns;
            return;
        }
    }
    if (seg->n_tbs == seg->cap_tbs) {
        size_t cap = seg->cap_tbs ? 2 * seg->cap_tbs : 16;
        struct seg_tb *grown = realloc(seg->tbs, cap * sizeof(*grown));
        if (!grown) {
            return;
        }
        seg->tbs = grown;
        seg->cap_tbs = cap;
    }
    seg->tbs[seg->n_tbs++] = (struct seg_tb){vaddr, insns};
}

/* Credit what ran since the current segment started to it (lock held). */
static void close_segment(void)
{
    if (current_segment >= cap_segments) {
        size_t cap = cap_segments ? 2 * cap_segments : 256;
        struct segment *grown = realloc(segments, cap * sizeof(*grown));
        if (!grown) {
            return;
        }
        memset(grown + cap_segments, 0, (cap - cap_segments) * sizeof(*grown));
        segments = grown;
        cap_segments = cap;
    }
    struct segment *seg = &segments[current_segment];
    seg->kind = current_kind;
    seg->site = current_site;
    for (struct tb_count *c = all_tbs; c; c = c->next) {
        uint64_t d = c->execs - c->at_segment;
        if (d) {
            seg->insns += c->n_insns * d;
            for (int k = 0; k < N_CLASSES; k++) {
                seg->mix[k] += c->mix[k] * d;
            }
            add_segment_tb(seg, c->vaddr, c->n_insns * d);
            c->at_segment = c->execs;
        }
    }
    if (current_segment + 1 > n_segments) {
        n_segments = current_segment + 1;
    }
}

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    const struct tb_count *marked = userdata;
    pthread_mutex_lock(&lock);
    if (window_open) {
        close_segment();
        current_segment++;
        current_kind = marked->mark;
        current_site = marked->vaddr;
    }
    pthread_mutex_unlock(&lock);
}

/* The kind of segment a block starts ('N', 'X', 'R'), or 0. */
static char mark_kind(struct qemu_plugin_tb *tb, uint64_t vaddr, size_t n_insns)
{
    if (!marks_placed) {
        return 0;
    }
    for (int i = 0; i < n_entries; i++) {
        if (vaddr == entries[i]) {
            return 'X';
        }
    }
    for (int i = 0; i < n_returns; i++) {
        if (vaddr == returns[i]) {
            return 'R';
        }
    }
    for (int i = 0; i < n_calls; i++) {
        if (vaddr >= call_lo[i] && vaddr < call_hi[i] && n_insns) {
            struct qemu_plugin_insn *last = qemu_plugin_tb_get_insn(tb, n_insns - 1);
            char *text = qemu_plugin_insn_disas(last);
            bool call = text && strncmp(text, "blr", 3) == 0;
            free(text);
            if (call) {
                uint64_t ret = qemu_plugin_insn_vaddr(last) + 4;
                bool known = false;
                for (int r = 0; r < n_returns; r++) {
                    known |= returns[r] == ret;
                }
                if (!known && n_returns < MAX_MARKS) {
                    returns[n_returns++] = ret;
                }
                return 'N';
            }
        }
    }
    return 0;
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct tb_count *c = calloc(1, sizeof(*c));
    if (!c) {
        return;
    }
    c->vaddr = qemu_plugin_tb_vaddr(tb);
    c->n_insns = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < c->n_insns; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        char *text = qemu_plugin_insn_disas(insn);
        if (text && strncmp(text, ".byte", 5) != 0) {
            classify(text, c->mix);
        } else if (qemu_plugin_insn_size(insn) == 4) {
            uint32_t word;
            memcpy(&word, qemu_plugin_insn_data(insn), 4);
            classify_encoding(word, c->mix);
        } else {
            c->mix[SCALAR]++;
        }
        free(text);
    }
    pthread_mutex_lock(&lock);
    c->next = all_tbs;
    all_tbs = c;
    c->mark = mark_kind(tb, c->vaddr, c->n_insns);
    pthread_mutex_unlock(&lock);
    if (c->mark) { /* registered first, so the marked block itself counts in the segment it starts */
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_mark, QEMU_PLUGIN_CB_NO_REGS, c);
    }
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &c->execs, 1);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == SYS_LSEEK_AARCH64 && a1 == MARK_BASE) {
        pthread_mutex_lock(&lock);
        if (!marks_placed) {
            for (int i = 0; i < n_calls; i++) {
                call_lo[i] += a2;
                call_hi[i] += a2;
            }
            for (int i = 0; i < n_entries; i++) {
                entries[i] += a2;
            }
            marks_placed = true;
        }
        pthread_mutex_unlock(&lock);
        return;
    }
    if (num != SYS_CLOSE_AARCH64 || (a1 != MARK_BEGIN && a1 != MARK_END)) {
        return;
    }
    pthread_mutex_lock(&lock);
    if (a1 == MARK_BEGIN) {
        for (struct tb_count *c = all_tbs; c; c = c->next) {
            c->at_begin = c->execs;
            c->at_segment = c->execs;
        }
        window_open = true;
        current_segment = 0;
        current_kind = 'S';
        current_site = 0;
    } else if (window_open) {
        for (struct tb_count *c = all_tbs; c; c = c->next) {
            c->in_window += c->execs - c->at_begin;
        }
        close_segment();
        window_open = false;
        windows_closed++;
    }
    pthread_mutex_unlock(&lock);
}

static void write_counts(qemu_plugin_id_t id, void *userdata)
{
    uint64_t total = 0, measured = 0, mix[N_CLASSES] = {0};
    pthread_mutex_lock(&lock);
    for (struct tb_count *c = all_tbs; c; c = c->next) {
        total += c->n_insns * c->execs;
        measured += c->n_insns * c->in_window;
        for (int k = 0; k < N_CLASSES; k++) {
            mix[k] += c->mix[k] * c->in_window;
        }
    }
    FILE *f = fopen(out_path, "w");
    if (!f) {
        qemu_plugin_outs("insncount: cannot open the output file\n");
        pthread_mutex_unlock(&lock);
        return;
    }
    fprintf(f, "total %" PRIu64 "\nwindows %" PRIu64 "\nmeasured %" PRIu64 "\n", total, windows_closed, measured);
    for (int k = 0; k < N_CLASSES; k++) {
        fprintf(f, "mix %s %" PRIu64 "\n", CLASS_NAMES[k], mix[k]);
    }
    for (struct tb_count *c = all_tbs; c; c = c->next) {
        if (c->in_window) {
            fprintf(f, "tb %" PRIx64 " %" PRIu64 " %" PRIu64 "\n", c->vaddr, c->n_insns, c->in_window);
        }
    }
    for (size_t i = 0; i < n_segments; i++) {
        struct segment *seg = &segments[i];
        fprintf(f, "seg %zu %c %" PRIx64 " %" PRIu64, i, seg->kind, seg->site, seg->insns);
        for (int k = 0; k < N_CLASSES; k++) {
            fprintf(f, " %" PRIu64, seg->mix[k]);
        }
        fputc('\n', f);
        for (size_t t = 0; t < seg->n_tbs; t++) {
            fprintf(f, "stb %zu %" PRIx64 " %" PRIu64 "\n", i, seg->tbs[t].vaddr, seg->tbs[t].insns);
        }
    }
    fclose(f);
    pthread_mutex_unlock(&lock);
}

/* The `marks=PATH` file: "call LO HI" and "entry ADDR" lines, hexadecimal. */
static void read_marks(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        qemu_plugin_outs("insncount: cannot read the marks file\n");
        return;
    }
    char line[128];
    while (fgets(line, sizeof(line), f)) {
        uint64_t a, b;
        if (sscanf(line, "call %" SCNx64 " %" SCNx64, &a, &b) == 2 && n_calls < MAX_MARKS) {
            call_lo[n_calls] = a;
            call_hi[n_calls++] = b;
        } else if (sscanf(line, "entry %" SCNx64, &a) == 1 && n_entries < MAX_MARKS) {
            entries[n_entries++] = a;
        }
    }
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = strdup(argv[i] + 4);
        } else if (strncmp(argv[i], "marks=", 6) == 0) {
            read_marks(argv[i] + 6);
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
