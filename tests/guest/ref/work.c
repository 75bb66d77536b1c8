/* SPDX-License-Identifier: MIT */
/*
 * The self-checking memory workload, run in ring 3 by every CPU on its
 * own slice of the workload's pages, so no page is shared.
 *
 * Each page holds a stamp in its first 8 bytes, (guest frame number << 32
 * | generation), and fills the other 511 quadwords with a value derived
 * from the stamp. The generation each page must hold is kept in an array
 * in guest memory, one 32-bit entry per page, ahead of the pages. A page
 * is written by bumping its generation; a verification pass re-reads
 * every page of the slice and compares it with what its generation says.
 * A page that a save/restore or a migration lost or sent stale shows up as
 * a mismatch, and so does a lost page of the generation array (a zero
 * generation after the first fill).
 *
 * Memory layout, from the first 2 MiB boundary after the kernel:
 *   [gen array, page-rounded][npages pages]
 */
#include "ref.h"

#define CHUNK 64	/* pages per step, so the BSP stays responsive */
#define CREDIT_ONE 1024 /* rate credit per page */

struct cpu_work {
	uint64_t first, count; /* the slice, in page indices */
	uint64_t next_fill, next_seq, next_verify, rng;
	uint64_t credit, last_j, verify_due;
	bool filled, verifying;
	/* Written by the owner, read by the BSP. */
	uint64_t written, verified, mismatches;
	/* One posted failure, printed by the BSP. */
	uint32_t fail_posted;
	uint64_t fail_page, fail_off, fail_want, fail_got;
} __attribute__((aligned(64)));

static struct {
	uint64_t base; /* guest-physical address of page 0 */
	uint64_t npages;
	uint32_t *gen;
	bool dirty;
	unsigned int pattern;
	bool unlimited;
	uint64_t credit_per_jiffy, credit_cap;
	uint64_t spin;
	uint64_t verify_every; /* jiffies between verification passes */
} w;

static struct cpu_work cw[REF_MAX_CPUS];

static inline void fill_quads(uint64_t *d, uint64_t v, uint64_t n)
{
	__asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(v) : "memory");
}

uint64_t work_setup(const struct ref_cfg *cfg, uint64_t base, uint64_t end,
		    unsigned int ncpus)
{
	uint64_t avail = end > base ? end - base : 0;
	uint64_t npages = cfg->mib * 256, genbytes, per, i;

	/* Shrink by whole MiB until the pages and their array fit. */
	for (;;) {
		genbytes = ALIGN_UP(npages * 4, REF_PAGE);
		if (genbytes + npages * REF_PAGE <= avail)
			break;
		npages -= 256;
	}
	w.gen = (uint32_t *)base;
	w.base = base + genbytes;
	w.npages = npages;
	w.dirty = cfg->dirty;
	w.pattern = cfg->pattern;
	w.unlimited = !cfg->rate;
	w.spin = cfg->spin;
	w.verify_every = MAX(cfg->verify_ms * REF_HZ / 1000, 1);
	w.credit_per_jiffy = cfg->rate * 256 * CREDIT_ONE / REF_HZ / ncpus;
	/* At most a quarter second of catch-up after a stall. */
	w.credit_cap = MAX(w.credit_per_jiffy * REF_HZ / 4,
			   (uint64_t)CHUNK * CREDIT_ONE);
	fill_quads((uint64_t *)w.gen, 0, genbytes / 8);

	per = npages / ncpus;
	for (i = 0; i < ncpus; i++) {
		cw[i].first = i * per;
		cw[i].count = i == ncpus - 1 ? npages - i * per : per;
		cw[i].rng = mix64(i + 1) | 1;
	}
	return npages / 256;
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

static uint64_t page_stamp(uint64_t page, uint32_t gen)
{
	return (((w.base >> 12) + page) << 32) | gen;
}

static void page_write(uint64_t page)
{
	uint64_t *q = (uint64_t *)(w.base + page * REF_PAGE);
	uint32_t gen = w.gen[page] + 1;
	uint64_t stamp;

	if (!gen)
		gen = 1;
	stamp = page_stamp(page, gen);
	q[0] = stamp;
	fill_quads(q + 1, mix64(stamp), REF_PAGE / 8 - 1);
	w.gen[page] = gen;
}

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
	const uint64_t *q = (const uint64_t *)(w.base + page * REF_PAGE);
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
	for (i = 1; i < REF_PAGE / 8; i++)
		diff |= q[i] ^ fill;
	if (!diff)
		return true;
	/* Report the first quadword that differs. */
	if (q[0] != stamp) {
		post_fail(c, page, 0, stamp, q[0]);
		return false;
	}
	for (i = 1; i < REF_PAGE / 8 - 1 && q[i] == fill; i++)
		;
	post_fail(c, page, i * 8, fill, q[i]);
	return false;
}

/* CPU work between writes (spin=N): a guest whose dirtying is bound by
 * its CPU time, as throttling a migration's source assumes. */
static void spin(uint64_t n)
{
	while (n--)
		__asm__ volatile("" ::: "memory");
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
	for (i = 0; i < n; i++) {
		page_write(c->first + pick(c));
		spin(w.spin);
	}
	count(&c->written, n);
	return n > 0;
}

static void step_verify(struct cpu_work *c, uint64_t j)
{
	uint64_t n = MIN((uint64_t)CHUNK, c->count - c->next_verify), i;
	uint64_t bad = 0;

	for (i = 0; i < n; i++)
		bad += !page_check(c, c->first + c->next_verify++);
	count(&c->verified, n);
	if (bad)
		count(&c->mismatches, bad);
	if (c->next_verify == c->count) {
		c->verifying = false;
		c->verify_due = j + w.verify_every;
	}
}

bool work_step(unsigned int slot)
{
	struct cpu_work *c = &cw[slot];
	uint64_t j = jiffies, n, i;
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
			c->verify_due = j + w.verify_every;
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
	for (i = 0; i < REF_MAX_CPUS; i++) {
		t->written += __atomic_load_n(&cw[i].written, __ATOMIC_RELAXED);
		t->verified +=
			__atomic_load_n(&cw[i].verified, __ATOMIC_RELAXED);
		t->mismatches +=
			__atomic_load_n(&cw[i].mismatches, __ATOMIC_RELAXED);
	}
}

void work_report_fails(void)
{
	unsigned int i;
	struct line l;

	for (i = 0; i < REF_MAX_CPUS; i++) {
		struct cpu_work *c = &cw[i];

		if (!__atomic_load_n(&c->fail_posted, __ATOMIC_ACQUIRE))
			continue;
		line_init(&l, "mem");
		line_kv(&l, "slot", i);
		line_kx(&l, "gpa", w.base + c->fail_page * REF_PAGE);
		line_kv(&l, "off", c->fail_off);
		line_kx(&l, "want", c->fail_want);
		line_kx(&l, "got", c->fail_got);
		guest_fail(&l);
		__atomic_store_n(&c->fail_posted, 0, __ATOMIC_RELEASE);
	}
}
