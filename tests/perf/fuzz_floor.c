/* SPDX-License-Identifier: MIT */
/*
 * The floor a snapshot fuzzer's reset is measured against (docs/
 * benchmarks.md): one guest exit to user space and entry, and copying N
 * pages back. The exit is a port write in a loop, as the harness's DONE
 * is; the copy is N pages from a checkpoint-sized buffer into a RAM-sized
 * one, timed twice: N pages taken at random over the size (a TLB and cache
 * miss each, as scattered writes would cost), and N consecutive pages.
 * The floor takes the cheaper of the two, so that it is never easier to
 * reach than either, and each is timed with both the C library's memcpy()
 * and the reset's own page copy, the cheaper again.
 *
 *   fuzz_floor MEM_MIB PAGES...
 * prints, per PAGES, "floor pages=N exit_ns=E copy_ns=C random_ns=A
 * consecutive_ns=B resets_per_s=R", C being the smaller of A and B.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "kernel/mem.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "kernel/x86/boot64.h"

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/*
 * A guest that is nothing but "out %al, $0x80; jmp back" in 64-bit ring 0,
 * run by KVM_RUN in this thread: each call is one exit and one entry.
 */
static double exit_ns(void)
{
	static const uint8_t loop[] = { 0xe6, 0x80, 0xeb, 0xfc };
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct boot64 b = {
		.gdt_gpa = 0x1000,
		.pt_gpa = 0x10000,
		.pt_size = 0x40000,
		.entry = 0x100000,
		.stack_top = 0x80000,
		.rsp0_top = 0x90000,
		.user_stack_top = 0x70000,
	};
	struct mem_seg *seg;
	struct vm *vm;
	double t0;
	int i, fd, n = 200000;

	if (vm_create(&cfg, &vm) < 0 ||
	    mem_seg_create(vm_mem(vm), "floor", 4 << 20, &seg) < 0 ||
	    mem_map(vm_mem(vm), seg, 0, 0, 4 << 20, NULL) < 0 ||
	    mem_write(vm_mem(vm), 0x100000, loop, sizeof(loop)) < 0 ||
	    boot64_setup(vm, &b) < 0) {
		fprintf(stderr, "fuzz_floor: cannot build the exit-loop VM\n");
		exit(1);
	}
	mem_seg_put(seg);
	fd = vcpu_fd(vm_vcpu(vm, 0));
	for (i = 0; i < 1000; i++)
		ioctl(fd, KVM_RUN, 0);
	t0 = now_ns();
	for (i = 0; i < n; i++)
		ioctl(fd, KVM_RUN, 0);
	t0 = (now_ns() - t0) / n;
	vm_destroy(vm);
	return t0;
}

/* The C library's copy, called as a library call whatever the compiler
 * would inline. */
static void libc_copy(void *dst, const void *src)
{
	void *(*volatile fn)(void *, const void *, size_t) = memcpy;

	fn(dst, src, 4096);
}

/*
 * Nanoseconds to copy @pages pages @reps times, at offsets @idx (or
 * consecutive ones), by the cheaper of the C library's memcpy() and the
 * copy a reset makes (mem_copy_page()): under an emulated CPU the two
 * differ several times over, and the floor must not be the slower one.
 */
static double copy_ns(uint8_t *dst, const uint8_t *src, const size_t *idx,
		      size_t pages, size_t reps)
{
	void (*fns[])(void *, const void *) = { libc_copy, mem_copy_page };
	double best = 0, t0, t;
	size_t f, k, i, off;

	for (f = 0; f < sizeof(fns) / sizeof(fns[0]); f++) {
		t0 = now_ns();
		for (k = 0; k < reps; k++)
			for (i = 0; i < pages; i++) {
				off = idx ? idx[i] : i * 4096;
				fns[f](dst + off, src + off);
			}
		t = (now_ns() - t0) / (double)reps;
		if (!f || t < best)
			best = t;
	}
	return best;
}

int main(int argc, char **argv)
{
	size_t mem, pages, i;
	uint8_t *src, *dst;
	double e, per, rnd, seq;
	int a;

	if (argc < 3) {
		fprintf(stderr, "usage: fuzz_floor MEM_MIB PAGES...\n");
		return 2;
	}
	mem = strtoull(argv[1], NULL, 10) << 20;
	src = mmap(NULL, mem, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	dst = mmap(NULL, mem, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED)
		return 1;
	e = exit_ns();
	for (a = 2; a < argc; a++) {
		size_t *idx, reps;

		pages = strtoull(argv[a], NULL, 10);
		idx = calloc(pages, sizeof(*idx));
		for (i = 0; i < pages; i++) {
			idx[i] = ((size_t)rand() * 4096) % mem;
			memset(src + idx[i], (int)i, 4096); /* resident */
			memset(dst + idx[i], 0, 4096);
		}
		reps = pages >= 1024 ? 200 : 20000;
		rnd = copy_ns(dst, src, idx, pages, reps);
		if (pages * 4096 > mem)
			pages = mem / 4096;
		memset(src, 1, pages * 4096); /* resident */
		memset(dst, 0, pages * 4096);
		seq = copy_ns(dst, src, NULL, pages, reps);
		per = rnd < seq ? rnd : seq;
		printf("floor pages=%zu exit_ns=%.0f copy_ns=%.0f "
		       "random_ns=%.0f consecutive_ns=%.0f "
		       "resets_per_s=%.0f\n",
		       pages, e, per, rnd, seq, 1e9 / (e + per));
		free(idx);
	}
	return 0;
}
