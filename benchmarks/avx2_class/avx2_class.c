/* Makes this x86-64 CPU look like an AVX2-only one (no AVX-512, AVX-VNNI, bfloat16 or AMX) to
 * every library in a process, so that the AVX2 class of machines can be measured on a newer
 * CPU: oneDNN (TensorFlow), MLAS (onnxruntime), XNNPACK (LiteRT), numpy and OpenCV all choose
 * their kernels from the CPUID instruction. ONEDNN_MAX_CPU_ISA=AVX2 caps TensorFlow alone.
 *
 * How: LD_PRELOAD this library. Its constructor turns on Linux's CPUID faulting for the
 * process (arch_prctl ARCH_SET_CPUID 0; the CPU must offer it: "cpuid_fault" in
 * /proc/cpuinfo), so that each CPUID instruction raises SIGSEGV; the handler runs the real
 * CPUID with faulting briefly off, clears the feature bits above and steps over the
 * instruction. The setting is inherited by threads and forks and reset by execve, where the
 * next process loads this library again. The C library's own choices (memcpy variants) are
 * made before any constructor runs and are not changed.
 *
 * Built and used by benchmarks/avx2_class/run.sh. A process that installs a SIGSEGV handler
 * of its own (Python's faulthandler, hence pytest) must not run under it.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Leaf 7, subleaf 0. */
#define EBX7_MASK ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | \
                   (1u << 28) | (1u << 30) | (1u << 31)) /* AVX512 F DQ IFMA PF ER CD BW VL */
#define ECX7_MASK ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
                   /* AVX512 VBMI VBMI2 VNNI BITALG VPOPCNTDQ */
#define EDX7_MASK ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | \
                   (1u << 24) | (1u << 25)) /* 4VNNIW 4FMAPS VP2INTERSECT AMX-BF16 FP16 AMX */
/* Leaf 7, subleaf 1. */
#define EAX71_MASK ((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23))
                   /* AVX-VNNI AVX512-BF16 AMX-FP16 AVX-IFMA */

static long set_cpuid(int enabled) {
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX];
    uint32_t a, b, c, d;
    set_cpuid(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    set_cpuid(0);
    if (leaf == 7 && sub == 0) {
        b &= ~EBX7_MASK;
        c &= ~ECX7_MASK;
        d &= ~EDX7_MASK;
    } else if (leaf == 7 && sub == 1) {
        a &= ~EAX71_MASK;
    }  /* Leaf 0xD (XSAVE sizes) is kept: XCR0, which CPUID cannot change, still sets them. */
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2;
    (void)info;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSEGV, &action, NULL) != 0 || set_cpuid(0) != 0) {
        fprintf(stderr, "avx2_class: this CPU or kernel offers no CPUID faulting "
                        "(no cpuid_fault in /proc/cpuinfo): cannot emulate the AVX2 class\n");
        exit(2);
    }
}
