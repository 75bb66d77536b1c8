/* SPDX-License-Identifier: MIT */
/*
 * Dirty-tracking exactness, after the KVM selftests' dirty_log_test: each
 * round the guest stamps random pages with the round number and the VMM
 * writes a few pages of its own; the harvest must equal exactly the pages
 * stamped plus the pages the VMM wrote (mailboxes included), in both
 * tracking modes, over several segments, one of them mapped twice. The
 * only other pages that may be reported are the few the CPU itself writes
 * on hardware paging (the guest's page tables, descriptor tables and ring-0
 * stacks, listed by stamp_vm_cpu_pages()); on shadow paging they stay clean.
 */
#include <errno.h>
#include <stdlib.h>

#include "kernel/dirty.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/vcpu.h"
#include "tests/harness/stamp_vm.h"
#include "tests/kvm/kvm_tests.h"

#define GPA_A (1ULL << 30)		       /* segment A, 16 MiB */
#define GPA_B1 (2ULL << 30)		       /* segment B, 8 MiB ... */
#define GPA_B2 ((2ULL << 30) + (512ULL << 20)) /* ... mapped again here */
#define SIZE_A (16UL << 20)
#define SIZE_B (8UL << 20)
#define ROUNDS 12

struct expect {
	struct mem_seg *seg;
	uint64_t *want; /* pages expected dirty this round */
	uint64_t *got;
	uint64_t *value; /* what each page's first quadword must hold */
	uint64_t *cpu;	 /* pages the CPU may write itself, or NULL */
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void expect_init(struct expect *e, struct mem_seg *seg)
{
	size_t pages = mem_seg_pages(seg);

	e->seg = seg;
	e->want = bitmap_alloc(pages);
	e->got = bitmap_alloc(pages);
	e->value = calloc(pages, 8);
	e->cpu = NULL;
	TEST_ASSERT(e->want && e->got && e->value, "out of memory");
}

static void expect_fini(struct expect *e)
{
	bitmap_free(e->want);
	bitmap_free(e->got);
	bitmap_free(e->cpu);
	free(e->value);
}

/* Marks the pages of [off, off + len) of @e's segment as expected dirty. */
static void expect_range(struct expect *e, uint64_t off, size_t len)
{
	uint64_t p;

	for (p = off / 4096; p <= (off + len - 1) / 4096; p++)
		bitmap_set(e->want, p);
}

/* Harvests and compares each segment, page by page; then verifies data. */
static void check_round(struct stamp_vm *s, struct expect *ex, unsigned int n,
			unsigned int round)
{
	unsigned int i;
	int ret;

	ret = dirty_sync(s->vm);
	TEST_ASSERT(ret == 0, "dirty_sync: %s", strerror(-ret));
	for (i = 0; i < n; i++) {
		struct expect *e = &ex[i];
		size_t pages = mem_seg_pages(e->seg), p;
		size_t got = dirty_take(e->seg, e->got);
		size_t want = bitmap_weight(e->want, pages);
		const uint8_t *hva = mem_seg_hva(e->seg);

		for (p = 0; p < pages; p++) {
			bool w = bitmap_test(e->want, p);
			bool g = bitmap_test(e->got, p);
			bool c = e->cpu && bitmap_test(e->cpu, p);

			TEST_ASSERT(
				!(w && !g),
				"round %u: segment %s page %zu written but not reported dirty (%zu reported, %zu expected)",
				round, mem_seg_name(e->seg), p, got, want);
			TEST_ASSERT(
				!(g && !w && !c),
				"round %u: segment %s page %zu reported dirty but not written (%zu reported, %zu expected)",
				round, mem_seg_name(e->seg), p, got, want);
			if (e->value[p]) {
				uint64_t v;

				memcpy(&v, hva + p * 4096, 8);
				TEST_ASSERT(
					v == e->value[p],
					"round %u: %s page %zu holds %#llx, expected %#llx",
					round, mem_seg_name(e->seg), p,
					(unsigned long long)v,
					(unsigned long long)e->value[p]);
			}
		}
		TEST_ASSERT(dirty_count(e->seg) == 0,
			    "%s: %zu bits left after take",
			    mem_seg_name(e->seg), dirty_count(e->seg));
		bitmap_zero(e->want, pages);
	}
}

static void exactness(enum dirty_mode mode, unsigned int nr_vcpus,
		      uint32_t ring_size, unsigned int pages_per_cpu)
{
	struct vm_config cfg = { .nr_vcpus = nr_vcpus,
				 .dirty = mode,
				 .dirty_ring_size = ring_size };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a, *b;
	struct expect ex[3];
	uint64_t *gpas;
	unsigned int round, c, i;
	struct vcpu_stats st;
	uint64_t ring_full = 0;
	int ret;

	a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	b = stamp_vm_add_mem(s, "B", SIZE_B, GPA_B1);
	ret = mem_map(vm_mem(s->vm), b, 0, GPA_B2, SIZE_B, NULL);
	TEST_ASSERT(ret == 0, "second map of B: %s", strerror(-ret));
	TEST_ASSERT(mem_seg_refs(b) == 3,
		    "B refs %u, expected 3 (owner + 2 maps)", mem_seg_refs(b));
	stamp_vm_boot(s);

	ret = dirty_start(s->vm);
	TEST_ASSERT(ret == 0, "dirty_start: %s", strerror(-ret));
	TEST_ASSERT(dirty_start(s->vm) == -EALREADY, "second start accepted");
	/* At start every page counts as dirty. */
	TEST_ASSERT(dirty_count(a) == mem_seg_pages(a),
		    "A: %zu of %zu dirty at start", dirty_count(a),
		    mem_seg_pages(a));
	expect_init(&ex[0], s->sys);
	ex[0].cpu = bitmap_alloc(mem_seg_pages(s->sys));
	TEST_ASSERT(ex[0].cpu, "out of memory");
	stamp_vm_cpu_pages(s, ex[0].cpu);
	expect_init(&ex[1], a);
	expect_init(&ex[2], b);
	for (i = 0; i < 3; i++)
		bitmap_fill(ex[i].want, mem_seg_pages(ex[i].seg));
	check_round(s, ex, 3, 0);

	gpas = calloc(pages_per_cpu, 8);
	for (round = 1; round <= ROUNDS; round++) {
		for (c = 0; c < nr_vcpus; c++) {
			uint64_t value = ((uint64_t)round << 32) | (c + 1);

			for (i = 0; i < pages_per_cpu; i++) {
				uint64_t r = rnd();
				struct expect *e;
				uint64_t off;

				/* A third to A, the rest to B via either map. */
				if (r % 3 == 0) {
					e = &ex[1];
					off = (r >> 8) % (SIZE_A / 4096) * 4096;
					gpas[i] = GPA_A + off;
				} else {
					e = &ex[2];
					off = (r >> 8) % (SIZE_B / 4096) * 4096;
					gpas[i] = ((r >> 4) & 1 ? GPA_B2 :
								  GPA_B1) +
						  off;
				}
				expect_range(e, off, 4096);
				e->value[off / 4096] = value;
			}
			/* The VMM writes the list into the mailbox. */
			expect_range(&ex[0],
				     STAMP_MAILBOX_GPA + c * STAMP_MAILBOX_SIZE,
				     MB_LIST + pages_per_cpu * 8);
			stamp_list(s, c, value, gpas, pages_per_cpu);
		}
		/* Some VMM writes of its own, into A and into B's alias. */
		for (i = 0; i < 5; i++) {
			uint64_t off = rnd() % (SIZE_A / 4096) * 4096 + 8;
			uint64_t v = 0xfeed0000 + round;

			ret = mem_write(vm_mem(s->vm), GPA_A + off, &v, 8);
			TEST_ASSERT(ret == 0, "mem_write: %s", strerror(-ret));
			expect_range(&ex[1], off, 8);
		}
		{
			uint64_t off = rnd() % (SIZE_B / 4096) * 4096 + 4000;
			uint8_t buf[200];

			/* Straddles two pages of B. */
			memset(buf, round, sizeof(buf));
			ret = mem_write(vm_mem(s->vm), GPA_B2 + off, buf,
					sizeof(buf));
			TEST_ASSERT(ret == 0, "mem_write: %s", strerror(-ret));
			expect_range(&ex[2], off, sizeof(buf));
			if (ex[2].value[off / 4096 + 1])
				ex[2].value[off / 4096 + 1] =
					0; /* overwritten */
		}
		check_round(s, ex, 3, round);
	}
	for (c = 0; c < nr_vcpus; c++) {
		vcpu_get_stats(vm_vcpu(s->vm, c), &st);
		ring_full += st.ring_full_exits;
	}
	if (mode == DIRTY_MODE_RING && ring_size && pages_per_cpu > ring_size)
		TEST_ASSERT(
			ring_full > 0,
			"ring of %u entries, %u pages a round, yet no ring-full exit",
			ring_size, pages_per_cpu);
	ret = dirty_stop(s->vm);
	TEST_ASSERT(ret == 0, "dirty_stop: %s", strerror(-ret));
	TEST_ASSERT(!dirty_active(s->vm), "still active after stop");
	free(gpas);
	for (i = 0; i < 3; i++)
		expect_fini(&ex[i]);
	mem_seg_put(a);
	mem_seg_put(b);
	stamp_vm_destroy(s);
}

static void test_dirty_log_exact_1vcpu(void)
{
	exactness(DIRTY_MODE_LOG, 1, 0, 300);
}

static void test_dirty_log_exact_4vcpus(void)
{
	exactness(DIRTY_MODE_LOG, 4, 0, 200);
}

static void test_dirty_ring_exact_1vcpu(void)
{
	exactness(DIRTY_MODE_RING, 1, 0, 300);
}

static void test_dirty_ring_exact_4vcpus(void)
{
	exactness(DIRTY_MODE_RING, 4, 0, 200);
}

/* A ring far smaller than a round's writes: ring-full exits must harvest. */
static void test_dirty_ring_full_exits_lose_nothing(void)
{
	exactness(DIRTY_MODE_RING, 2, 512, 3000);
}

/*
 * Segment A's pages reported by a sync: each page in @want must be there,
 * and none outside @allowed. Returns how many were reported.
 */
static size_t hold_round(struct stamp_vm *s, struct mem_seg *a, uint64_t *got,
			 const uint64_t *want, const uint64_t *allowed,
			 const char *what)
{
	size_t pages = mem_seg_pages(a), p, n;
	uint64_t *sys = bitmap_alloc(mem_seg_pages(s->sys));
	int ret;

	TEST_ASSERT(sys, "out of memory");
	ret = dirty_sync(s->vm);
	TEST_ASSERT(ret == 0, "%s: dirty_sync: %s", what, strerror(-ret));
	dirty_take(s->sys, sys); /* the mailboxes, the guest's own pages */
	bitmap_free(sys);
	n = dirty_take(a, got);
	for (p = 0; p < pages; p++) {
		TEST_ASSERT(
			!bitmap_test(want, p) || bitmap_test(got, p),
			"%s: page %zu written but not reported (%zu reported)",
			what, p, n);
		TEST_ASSERT(!bitmap_test(got, p) || bitmap_test(allowed, p),
			    "%s: page %zu reported but never written", what, p);
	}
	return n;
}

/* Stamps @n fresh random pages of A (none in @used); marks them in @set. */
static void hold_stamp(struct stamp_vm *s, uint64_t *used, uint64_t *set,
		       unsigned int n, uint64_t value, uint64_t *gpas)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		uint64_t p;

		do
			p = rnd() % (SIZE_A / 4096);
		while (bitmap_test(used, p));
		bitmap_set(used, p);
		bitmap_set(set, p);
		gpas[i] = GPA_A + p * 4096;
	}
	stamp_list(s, 0, value, gpas, n);
}

/*
 * dirty_hold() in ring mode: a harvested page stays writable and is
 * reported at every later sync, written again or not, so no write is
 * ever missed; once the pages held have grown well past one round's
 * worth they are given back, and pages not written since are no longer
 * reported; turning it off gives everything back.
 */
static void test_dirty_ring_hold(void)
{
	struct vm_config cfg = { .nr_vcpus = 1, .dirty = DIRTY_MODE_RING };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	size_t pages = mem_seg_pages(a), n, total = 0;
	uint64_t *used = bitmap_alloc(pages), *first = bitmap_alloc(pages);
	uint64_t *round = bitmap_alloc(pages), *none = bitmap_alloc(pages);
	uint64_t *got = bitmap_alloc(pages), gpas[50];
	unsigned int r;
	int ret;

	TEST_ASSERT(used && first && round && none && got, "out of memory");
	stamp_vm_boot(s);
	ret = dirty_start(s->vm);
	TEST_ASSERT(ret == 0, "dirty_start: %s", strerror(-ret));
	bitmap_fill(first, pages); /* at start all of A counts as dirty */
	hold_round(s, a, got, first, first, "the first sync");
	bitmap_zero(first, pages);
	hold_round(s, a, got, none, none, "the second sync");
	dirty_hold(s->vm, true);

	hold_stamp(s, used, first, 50, 1, gpas);
	hold_round(s, a, got, first, used, "round 1");
	/* The same pages again: held, so no fault, yet reported. */
	stamp_list(s, 0, 2, gpas, 50);
	hold_round(s, a, got, first, used, "round 1's pages written again");
	/* Nothing written: the held pages are still reported. */
	hold_round(s, a, got, first, used, "a round without writes");
	/* Fresh pages every round: the pages held grow until given back. */
	for (r = 0; r < 6; r++) {
		bitmap_zero(round, pages);
		hold_stamp(s, used, round, 50, 10 + r, gpas);
		hold_round(s, a, got, round, used, "a round of fresh pages");
	}
	n = hold_round(s, a, got, none, used, "after the fresh rounds");
	total = bitmap_weight(used, pages);
	TEST_ASSERT(
		n < total,
		"all %zu pages ever written are still held: never given back",
		total);
	for (r = 0; r < pages; r++)
		TEST_ASSERT(!bitmap_test(first, r) || !bitmap_test(got, r),
			    "page %u of round 1 still held after the give-back",
			    r);
	/* Off: the next sync gives everything back. */
	dirty_hold(s->vm, false);
	hold_round(s, a, got, none, used, "turning the hold off");
	n = hold_round(s, a, got, none, used, "after the hold");
	TEST_ASSERT(n == 0, "%zu pages still reported with the hold off", n);
	/* And a write is seen again through the ring. */
	bitmap_zero(round, pages);
	hold_stamp(s, used, round, 10, 99, gpas);
	n = hold_round(s, a, got, round, used, "a write after the hold");
	TEST_ASSERT(n == 10, "%zu pages reported, expected the 10 written", n);
	TEST_ASSERT(dirty_stop(s->vm) == 0, "stop");
	bitmap_free(used);
	bitmap_free(first);
	bitmap_free(round);
	bitmap_free(none);
	bitmap_free(got);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

/* Only the VMM writes: those pages and nothing else. */
static void test_dirty_vmm_writes_are_tracked(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	uint64_t *got = bitmap_alloc(mem_seg_pages(a));
	uint64_t v = 1;
	int ret;

	ret = dirty_start(s->vm);
	TEST_ASSERT(ret == 0, "dirty_start: %s", strerror(-ret));
	TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
	dirty_take(a, got);
	TEST_ASSERT(mem_write(vm_mem(s->vm), GPA_A + 5 * 4096, &v, 8) == 0,
		    "write");
	TEST_ASSERT(mem_fill(vm_mem(s->vm), GPA_A + 9 * 4096 - 1, 0xaa, 2) == 0,
		    "fill");
	TEST_ASSERT(mem_seg_write(a, 100 * 4096, &v, 8) == 0, "seg write");
	TEST_ASSERT(dirty_sync(s->vm) == 0, "sync");
	TEST_ASSERT(dirty_take(a, got) == 4, "%zu pages dirty, expected 4",
		    bitmap_weight(got, mem_seg_pages(a)));
	TEST_ASSERT(bitmap_test(got, 5) && bitmap_test(got, 8) &&
			    bitmap_test(got, 9) && bitmap_test(got, 100),
		    "wrong pages");
	TEST_ASSERT(dirty_stop(s->vm) == 0, "stop");
	TEST_ASSERT(dirty_sync(s->vm) == -EINVAL, "sync after stop accepted");
	bitmap_free(got);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

const struct test_case dirty_tests[] = {
	{ "log_exact_1vcpu", test_dirty_log_exact_1vcpu },
	{ "log_exact_4vcpus", test_dirty_log_exact_4vcpus },
	{ "ring_exact_1vcpu", test_dirty_ring_exact_1vcpu },
	{ "ring_exact_4vcpus", test_dirty_ring_exact_4vcpus },
	{ "ring_full_exits_lose_nothing",
	  test_dirty_ring_full_exits_lose_nothing },
	{ "vmm_writes_are_tracked", test_dirty_vmm_writes_are_tracked },
	{ "ring_hold", test_dirty_ring_hold },
	{ NULL, NULL },
};
