/*
 * LD_PRELOAD shim that lets Debian 12's user-mode-linux (6.1) run on hosts
 * whose XSAVE area is bigger than UML's fixed 832-byte FPU buffer (CPUs with
 * AVX-512 or AMX). scripts/vm-test builds and preloads it.
 *
 * Rules:
 * - The host kernel takes PTRACE_SETREGSET(NT_X86_XSTATE) only with a buffer
 *   of exactly its full XSAVE size (EFAULT otherwise: the guest died at its
 *   first context switch). A short set is widened to the full size: UML's
 *   bytes (x87/SSE, XSAVE header, AVX upper halves) first, then the rest.
 * - "The rest" (AVX-512, PKRU, AMX) belongs to the guest thread, not to the
 *   host process several guest threads share: UML saves and restores each
 *   thread through its own buffer (thread.regs.fp), so a short get stores the
 *   tail beside that buffer's address and the next set with the same address
 *   puts it back. A buffer never seen (or whose slot another took) keeps the
 *   host process's current tail, which is what UML did before such CPUs.
 * - UML calls ptrace from its kernel context with 16 KiB stacks and one
 *   virtual CPU: buffers are static or mmap'ed, never on the stack, and no
 *   locking is needed.
 * - Any other ptrace request passes through untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SLOTS 4096
#define MAX_XSTATE (64 * 1024)

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void *, void *);

static ptrace_fn real_ptrace;
static unsigned char full[MAX_XSTATE] __attribute__((aligned(64)));
static size_t full_size;          /* the host's XSAVE size, from the first get */
static const void *owner[SLOTS];  /* which UML buffer each slot's tail is for */
static unsigned char *tails;      /* SLOTS x full_size, mapped at first use */

__attribute__((constructor)) static void resolve(void)
{
    real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
}

static size_t slot_of(const void *buffer)
{
    return ((uintptr_t)buffer >> 6) % SLOTS;
}

static long get_full(pid_t pid)
{
    struct iovec whole = { full, sizeof full };
    long rc = real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &whole);
    if (rc == 0 && !full_size) {
        full_size = whole.iov_len;
        tails = mmap(NULL, SLOTS * full_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (tails == MAP_FAILED)
            tails = NULL;
    }
    return rc;
}

static int passes(const struct iovec *given)
{
    return full_size && given->iov_len >= full_size;
}

static long get_short(pid_t pid, struct iovec *given)
{
    if (passes(given))
        return real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, given);
    if (get_full(pid) < 0)
        return -1;
    size_t head = given->iov_len < full_size ? given->iov_len : full_size;
    memcpy(given->iov_base, full, head);
    given->iov_len = head;
    if (tails && head < full_size) {
        size_t slot = slot_of(given->iov_base);
        owner[slot] = given->iov_base;
        memcpy(tails + slot * full_size + head, full + head, full_size - head);
    }
    return 0;
}

static long set_short(pid_t pid, struct iovec *given)
{
    if (passes(given))
        return real_ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, given);
    size_t slot = slot_of(given->iov_base);
    if (tails && owner[slot] == given->iov_base)
        memcpy(full + given->iov_len, tails + slot * full_size + given->iov_len,
               full_size - given->iov_len);
    else if (get_full(pid) < 0)
        return -1;
    if (passes(given))
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
    if ((long)addr == NT_X86_XSTATE && request == PTRACE_GETREGSET)
        return get_short(pid, data);
    if ((long)addr == NT_X86_XSTATE && request == PTRACE_SETREGSET)
        return set_short(pid, data);
    return real_ptrace(request, pid, addr, data);
}
