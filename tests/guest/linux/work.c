/* SPDX-License-Identifier: MIT */
/*
 * The self-checking memory workload, the same as the reference guest's
 * (tests/guest/ref/work.c, docs/guest.md "The workload"), run by one
 * pinned thread per online CPU, each on its own slice of the pages, so no
 * page is shared and nothing needs a lock.
 *
 * Each page holds a stamp in its first 8 bytes, (page index << 32 |
 * generation), and fills the other 511 quadwords with mix64(stamp). The
 * page index is the page's place in the workload's own mapping: it stands
 * in for the reference guest's guest frame number, which a process cannot
 * know. The generation each page must hold is kept in an array of 32-bit
 * entries at the start of the same mapping. Writing a page bumps its
 * generation; a verification pass, started every second and interleaved
 * with the writes in chunks of 64 pages, re-reads every page of the slice
 * and compares it with what its generation says. A page that a
 * save/restore or migration lost or sent stale is a mismatch, and so is a
 * lost page of the generation array (a zero generation after the fill).
 *
 * Memory layout, one anonymous mapping:
 *   [gen array, page-rounded][npages pages]
 */
#include "init.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK 64	/* pages per step */
#define CREDIT_ONE 1024 /* rate credit per page */
#define VERIFY_EVERY HZ /* start a verification pass every second */
#define RESERVE_MIB 32	/* left to the kernel when shrinking mib= */
#define CORRUPT_OFF 100 /* byte the LINUX_INIT_CORRUPT hook flips */

/*
 * One per worker thread. [o] owner thread only; [a] written by the owner
 * with atomic stores, read by the main thread; [p] the fail post, handed
 * over with fail_posted (release/acquire).
 */
struct cpu_work {
	uint64_t first, count;				   /* [o] the slice */
	uint64_t next_fill, next_seq, next_verify;	   /* [o] */
	uint64_t rng, credit, last_j, verify_due;	   /* [o] */
	bool filled, verifying, corrupt;		   /* [o] */
	uint64_t written, verified, mismatches;		   /* [a] */
	uint32_t fail_posted;				   /* [a] */
	uint64_t fail_page, fail_off, fail_want, fail_got; /* [p] */
} __attribute__((aligned(64)));

/* Set up before the workers start, then read-only. */
static struct {
	uint8_t *pages;
	uint32_t *gen;
	uint64_t npages;
	unsigned int ncpus;
	bool dirty;
	unsigned int pattern;
	bool unlimited;
	uint64_t credit_per_jiffy, credit_cap;
	struct cpu_work *cw;
} w;

/* MemAvailable in MiB, or ~0 if /proc/meminfo does not say. */
static uint64_t mem_available_mib(void)
{
	unsigned long long kib = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return ~0ULL;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib ? kib / 1024 : ~0ULL;
}

/*
 * Maps the workload's memory (shrunk by whole MiB to what the system can
 * give: PID 1 must not meet the OOM killer) and divides it into @ncpus
 * slices. Stores the MiB owned in @mib. Returns 0 or -1.
 */
int work_setup(const struct cfg *cfg, unsigned int ncpus, uint64_t *mib)
{
	uint64_t want = cfg->mib, avail = mem_available_mib(), genbytes;
	uint64_t per, i;
	void *p = MAP_FAILED;
	const char *corrupt = getenv("LINUX_INIT_CORRUPT");

	if (avail != ~0ULL)
		want = MIN(want, avail > RESERVE_MIB ? avail - RESERVE_MIB : 0);
	for (; want; want--) {
		genbytes = (want * 256 * 4 + PAGE_SIZE_4K - 1) &
			   ~(uint64_t)(PAGE_SIZE_4K - 1);
		p = mmap(NULL, genbytes + want * 256 * PAGE_SIZE_4K,
			 PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (p != MAP_FAILED)
			break;
	}
	w.cw = aligned_alloc(64, sizeof(*w.cw) * ncpus);
	if (!w.cw)
		return -1;
	memset(w.cw, 0, sizeof(*w.cw) * ncpus);
	if (want) {
		w.gen = p;
		w.pages = (uint8_t *)p + genbytes;
	}
	w.npages = want * 256;
	w.ncpus = ncpus;
	w.dirty = cfg->dirty;
	w.pattern = cfg->pattern;
	w.unlimited = !cfg->rate;
	w.credit_per_jiffy = cfg->rate * 256 * CREDIT_ONE / HZ / ncpus;
	/* At most a quarter second of catch-up after a stall. */
	w.credit_cap =
		MAX(w.credit_per_jiffy * HZ / 4, (uint64_t)CHUNK * CREDIT_ONE);
	per = w.npages / ncpus;
	for (i = 0; i < ncpus; i++) {
		w.cw[i].first = i * per;
		w.cw[i].count = i == ncpus - 1 ? w.npages - i * per : per;
		w.cw[i].rng = mix64(i + 1) | 1;
	}
	/* The test hook: see step_verify(). */
	w.cw[0].corrupt = corrupt && *corrupt == '1';
	*mib = want;
	return 0;
}

static uint64_t rnd(struct cpu_work *c)
{
	uint64_t x = c->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	c->rng = x;
	return x;
}

/* The next page to write, by pattern, as an index into the slice. */
static uint64_t pick(struct cpu_work *c)
{
	uint64_t r, p;

	switch (w.pattern) {
	case PAT_RANDOM:
		return rnd(c) % c->count;
	case PAT_HOT:
		/* 90% of the writes go to the first sixteenth of the slice. */
		r = rnd(c);
		if ((r & 0xff) < 230)
			return (r >> 8) % MAX(c->count / 16, 1ULL);
		return (r >> 8) % c->count;
	default:
		p = c->next_seq;
		if (++c->next_seq == c->count)
			c->next_seq = 0;
		return p;
	}
}

static uint64_t *page_addr(uint64_t page)
{
	return (uint64_t *)(w.pages + page * PAGE_SIZE_4K);
}

static uint64_t page_stamp(uint64_t page, uint32_t gen)
{
	return page << 32 | gen;
}

static void page_write(uint64_t page)
{
	uint64_t *q = page_addr(page), stamp, fill;
	uint32_t gen = w.gen[page] + 1;
	unsigned int i;

	if (!gen)
		gen = 1;
	stamp = page_stamp(page, gen);
	fill = mix64(stamp);
	q[0] = stamp;
	for (i = 1; i < PAGE_SIZE_4K / 8; i++)
		q[i] = fill;
	w.gen[page] = gen;
}

/* Hands one failure to the main thread, unless one is still pending. */
static void post_fail(struct cpu_work *c, uint64_t page, uint64_t off,
		      uint64_t want, uint64_t got)
{
	if (__atomic_load_n(&c->fail_posted, __ATOMIC_ACQUIRE))
		return;
	c->fail_page = page;
	c->fail_off = off;
	c->fail_want = want;
	c->fail_got = got;
	__atomic_store_n(&c->fail_posted, 1, __ATOMIC_RELEASE);
}

/* Returns true if the page holds what its generation says. */
static bool page_check(struct cpu_work *c, uint64_t page)
{
	const uint64_t *q = page_addr(page);
	uint32_t gen = w.gen[page];
	uint64_t stamp, fill, diff;
	unsigned int i;

	if (!gen) {
		/* Every page was written once: the array itself was lost. */
		post_fail(c, page, 0, 0, q[0]);
		return false;
	}
	stamp = page_stamp(page, gen);
	fill = mix64(stamp);
	diff = q[0] ^ stamp;
	for (i = 1; i < PAGE_SIZE_4K / 8; i++)
		diff |= q[i] ^ fill;
	if (!diff)
		return true;
	/* Report the first quadword that differs. */
	if (q[0] != stamp) {
		post_fail(c, page, 0, stamp, q[0]);
		return false;
	}
	for (i = 1; i < PAGE_SIZE_4K / 8 - 1 && q[i] == fill; i++)
		;
	post_fail(c, page, i * 8, fill, q[i]);
	return false;
}

static void count(uint64_t *ctr, uint64_t n)
{
	__atomic_store_n(ctr, *ctr + n, __ATOMIC_RELAXED);
}

static bool step_write(struct cpu_work *c, uint64_t j)
{
	uint64_t n = CHUNK, i;

	if (!w.unlimited) {
		if (j != c->last_j) {
			c->credit += (j - c->last_j) * w.credit_per_jiffy;
			c->credit = MIN(c->credit, w.credit_cap);
			c->last_j = j;
		}
		n = MIN(n, c->credit / CREDIT_ONE);
		c->credit -= n * CREDIT_ONE;
	}
	for (i = 0; i < n; i++)
		page_write(c->first + pick(c));
	count(&c->written, n);
	return n > 0;
}

static void step_verify(struct cpu_work *c, uint64_t j)
{
	uint64_t n = MIN((uint64_t)CHUNK, c->count - c->next_verify), i;
	uint64_t bad = 0;

	/*
	 * The test hook (env LINUX_INIT_CORRUPT=1): slot 0 flips one byte
	 * of the first page of its slice right before its first
	 * verification pass reads it, as a lost or garbled page would
	 * look, so a test can see that the check does fail.
	 */
	if (c->corrupt && c->next_verify == 0) {
		((volatile uint8_t *)page_addr(c->first))[CORRUPT_OFF] ^= 0x40;
		c->corrupt = false;
	}
	for (i = 0; i < n; i++)
		bad += !page_check(c, c->first + c->next_verify++);
	count(&c->verified, n);
	if (bad)
		count(&c->mismatches, bad);
	if (c->next_verify == c->count) {
		c->verifying = false;
		c->verify_due = j + VERIFY_EVERY;
	}
}

/*
 * One step of slot @slot's work at jiffy @j: part of the first fill, or a
 * chunk of writes and a chunk of the verification pass. Returns false if
 * there was nothing to do (the caller then sleeps until the next jiffy).
 * Called only from the slot's own thread.
 */
bool work_step(unsigned int slot, uint64_t j)
{
	struct cpu_work *c = &w.cw[slot];
	uint64_t n, i;
	bool did = false;

	if (!c->count)
		return false;
	if (!c->filled) {
		/* The first pass writes every page of the slice once. */
		n = MIN((uint64_t)CHUNK * 4, c->count - c->next_fill);
		for (i = 0; i < n; i++)
			page_write(c->first + c->next_fill++);
		count(&c->written, n);
		if (c->next_fill == c->count) {
			c->filled = true;
			c->last_j = j;
			c->verify_due = j + VERIFY_EVERY;
		}
		return true;
	}
	if (w.dirty)
		did = step_write(c, j);
	if (!c->verifying && (int64_t)(j - c->verify_due) >= 0) {
		c->verifying = true;
		c->next_verify = 0;
	}
	if (c->verifying) {
		step_verify(c, j);
		did = true;
	}
	return did;
}

void work_totals(struct work_totals *t)
{
	unsigned int i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < w.ncpus; i++) {
		struct cpu_work *c = &w.cw[i];

		t->written += __atomic_load_n(&c->written, __ATOMIC_RELAXED);
		t->verified += __atomic_load_n(&c->verified, __ATOMIC_RELAXED);
		t->mismatches +=
			__atomic_load_n(&c->mismatches, __ATOMIC_RELAXED);
	}
}

/* Prints the failures the workers posted. Main thread only. */
void work_report_fails(void)
{
	unsigned int i;

	for (i = 0; i < w.ncpus; i++) {
		struct cpu_work *c = &w.cw[i];

		if (!__atomic_load_n(&c->fail_posted, __ATOMIC_ACQUIRE))
			continue;
		guest_fail("mem slot=%u page=%llu off=%llu want=0x%llx "
			   "got=0x%llx",
			   i, (unsigned long long)c->fail_page,
			   (unsigned long long)c->fail_off,
			   (unsigned long long)c->fail_want,
			   (unsigned long long)c->fail_got);
		__atomic_store_n(&c->fail_posted, 0, __ATOMIC_RELEASE);
	}
}
