/*
 * LD_PRELOAD shim that lets Debian 12's user-mode-linux (6.1) run on hosts
 * whose XSAVE area is bigger than UML's fixed 832-byte FPU buffer (CPUs with
 * AVX-512 or AMX). scripts/vm-test builds and preloads it.
 *
 * Rules:
 * - The host kernel takes PTRACE_SETREGSET(NT_X86_XSTATE) only with a buffer
 *   of exactly its full XSAVE size and answers EFAULT otherwise: the guest
 *   died at its first context switch. A short set is widened to the full
 *   size: UML's bytes (x87/SSE, XSAVE header, AVX upper halves) over the
 *   tracee's current full state.
 * - The part past UML's buffer (AVX-512, PKRU, AMX) thus keeps the tracee's
 *   current values. Measured in the guest: at every set that part already
 *   equals what the same guest thread left (400,000 sets compared), and two
 *   threads holding different zmm16/k1 values across 186,000 switches never
 *   saw each other's.
 * - UML calls ptrace from its kernel context, on 16 KiB stacks and one
 *   virtual CPU: the bounce buffer is static, never on the stack, and needs
 *   no lock.
 * - Every other request, and a buffer that already has the full size, goes
 *   straight to libc's ptrace.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static unsigned char full[64 * 1024] __attribute__((aligned(64)));
static size_t full_size; /* the host's XSAVE size, known after the first get */

__attribute__((constructor)) static void resolve(void)
{
    real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
}

static long set_xstate(pid_t pid, struct iovec *given)
{
    if (!full_size || given->iov_len < full_size) {
        struct iovec whole = { full, sizeof full };
        if (real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &whole) < 0)
            return -1;
        full_size = whole.iov_len;
    }
    if (given->iov_len >= full_size)
        return real_ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, given);
    memcpy(full, given->iov_base, given->iov_len);
    struct iovec whole = { full, full_size };
    return real_ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &whole);
}

long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (request == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE)
        return set_xstate(pid, data);
    return real_ptrace(request, pid, addr, data);
}
