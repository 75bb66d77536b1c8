/* SPDX-License-Identifier: MIT */
#include "kernel/iotrap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/util/log.h"
#include "kernel/vcpu.h"

/*
 * Locking legend:
 * [I] immutable after register   [a] atomic   [L] io->lock
 */

struct iotrap_range {
	uint64_t base;	   /* [I] */
	uint64_t len;	   /* [I] */
	iotrap_fn_t fn;	   /* [I] */
	void *opaque;	   /* [I] */
	unsigned int refs; /* [a] 1 for the registry + 1 per active call */
	bool dead;	   /* [L] unregistered; freed at the last put */
};

#define IOTRAP_MAX_RANGES 256
#define IOTRAP_MAX_REPORTED 64

struct iotrap {
	enum iotrap_space space; /* [I] */
	pthread_mutex_t lock;
	pthread_cond_t idle; /* a range's refs dropped */
	unsigned int nr;     /* [L] */
	struct iotrap_range *ranges[IOTRAP_MAX_RANGES]; /* [L] sorted */
	uint64_t unclaimed;				/* [a] */
	unsigned int nr_reported;			/* [L] */
	uint64_t reported[IOTRAP_MAX_REPORTED]; /* [L] logged addresses */
	unsigned int nr_quiet;			/* [L] */
	struct {
		uint64_t base, len;
	} quiet[IOTRAP_MAX_QUIET]; /* [L] probed, known absent */
};

int iotrap_create(enum iotrap_space space, struct iotrap **out)
{
	struct iotrap *io = calloc(1, sizeof(*io));

	if (!io)
		return -ENOMEM;
	io->space = space;
	pthread_mutex_init(&io->lock, NULL);
	pthread_cond_init(&io->idle, NULL);
	*out = io;
	return 0;
}

void iotrap_destroy(struct iotrap *io)
{
	unsigned int i;

	if (!io)
		return;
	for (i = 0; i < io->nr; i++)
		free(io->ranges[i]);
	pthread_cond_destroy(&io->idle);
	pthread_mutex_destroy(&io->lock);
	free(io);
}

int iotrap_register(struct iotrap *io, uint64_t base, uint64_t len,
		    iotrap_fn_t fn, void *opaque)
{
	struct iotrap_range *r;
	unsigned int i, pos;

	if (!len || !fn || base + len < base)
		return -EINVAL;
	if (io->space == IOTRAP_PIO && base + len > 0x10000)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->base = base;
	r->len = len;
	r->fn = fn;
	r->opaque = opaque;
	r->refs = 1;

	pthread_mutex_lock(&io->lock);
	if (io->nr == IOTRAP_MAX_RANGES) {
		pthread_mutex_unlock(&io->lock);
		free(r);
		return -ENOSPC;
	}
	for (pos = 0; pos < io->nr; pos++) {
		struct iotrap_range *o = io->ranges[pos];

		if (base < o->base + o->len && o->base < base + len) {
			pthread_mutex_unlock(&io->lock);
			free(r);
			return -EEXIST;
		}
		if (o->base > base)
			break;
	}
	for (i = io->nr; i > pos; i--)
		io->ranges[i] = io->ranges[i - 1];
	io->ranges[pos] = r;
	io->nr++;
	pthread_mutex_unlock(&io->lock);
	return 0;
}

int iotrap_unregister(struct iotrap *io, uint64_t base)
{
	struct iotrap_range *r = NULL;
	unsigned int i;

	pthread_mutex_lock(&io->lock);
	for (i = 0; i < io->nr; i++) {
		if (io->ranges[i]->base == base) {
			r = io->ranges[i];
			break;
		}
	}
	if (!r) {
		pthread_mutex_unlock(&io->lock);
		return -ENOENT;
	}
	for (; i + 1 < io->nr; i++)
		io->ranges[i] = io->ranges[i + 1];
	io->nr--;
	r->dead = true;
	/* Handlers in flight keep their reference; wait for them. */
	while (__atomic_load_n(&r->refs, __ATOMIC_ACQUIRE) > 1)
		pthread_cond_wait(&io->idle, &io->lock);
	pthread_mutex_unlock(&io->lock);
	free(r);
	return 0;
}

/* Finds the range holding @addr and takes a reference on it. */
static struct iotrap_range *range_get(struct iotrap *io, uint64_t addr,
				      uint32_t len)
{
	struct iotrap_range *r = NULL;
	unsigned int lo, hi;

	pthread_mutex_lock(&io->lock);
	lo = 0;
	hi = io->nr;
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		struct iotrap_range *m = io->ranges[mid];

		if (addr < m->base) {
			hi = mid;
		} else if (addr - m->base >= m->len) {
			lo = mid + 1;
		} else {
			/* The access must fit the range entirely. */
			if (len <= m->len - (addr - m->base)) {
				r = m;
				__atomic_add_fetch(&r->refs, 1,
						   __ATOMIC_ACQUIRE);
			}
			break;
		}
	}
	pthread_mutex_unlock(&io->lock);
	return r;
}

static void range_put(struct iotrap *io, struct iotrap_range *r)
{
	pthread_mutex_lock(&io->lock);
	__atomic_sub_fetch(&r->refs, 1, __ATOMIC_RELEASE);
	if (r->dead)
		pthread_cond_broadcast(&io->idle);
	pthread_mutex_unlock(&io->lock);
}

int iotrap_quiet(struct iotrap *io, uint64_t base, uint64_t len)
{
	int ret = -ENOSPC;

	if (!len || base + len < base)
		return -EINVAL;
	pthread_mutex_lock(&io->lock);
	if (io->nr_quiet < IOTRAP_MAX_QUIET) {
		io->quiet[io->nr_quiet].base = base;
		io->quiet[io->nr_quiet++].len = len;
		ret = 0;
	}
	pthread_mutex_unlock(&io->lock);
	return ret;
}

static void report_unclaimed(struct iotrap *io, uint64_t addr, uint32_t len,
			     bool is_write)
{
	unsigned int i;
	bool first = true, quiet = false;

	__atomic_add_fetch(&io->unclaimed, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&io->lock);
	for (i = 0; i < io->nr_quiet; i++)
		quiet |= addr - io->quiet[i].base < io->quiet[i].len;
	for (i = 0; i < io->nr_reported; i++) {
		if (io->reported[i] == addr) {
			first = false;
			break;
		}
	}
	if (first && io->nr_reported < IOTRAP_MAX_REPORTED)
		io->reported[io->nr_reported++] = addr;
	else if (first && io->nr_reported == IOTRAP_MAX_REPORTED)
		first = false;
	pthread_mutex_unlock(&io->lock);
	if (first && quiet)
		pr_debug("%s %s of %u bytes at %#llx: absent hardware probed",
			 io->space == IOTRAP_PIO ? "port" : "MMIO",
			 is_write ? "write" : "read", len,
			 (unsigned long long)addr);
	else if (first)
		pr_warn("unclaimed %s %s of %u bytes at %#llx (ignored; logged once)",
			io->space == IOTRAP_PIO ? "port" : "MMIO",
			is_write ? "write" : "read", len,
			(unsigned long long)addr);
}

int iotrap_dispatch(struct iotrap *io, struct vcpu *vcpu, uint64_t addr,
		    void *data, uint32_t len, bool is_write)
{
	struct iotrap_range *r = range_get(io, addr, len);
	int ret;

	if (!r) {
		if (!is_write)
			memset(data, 0xff, len);
		report_unclaimed(io, addr, len, is_write);
		return VCPU_CONTINUE;
	}
	ret = r->fn(vcpu, addr, data, len, is_write, r->opaque);
	range_put(io, r);
	return ret;
}

uint64_t iotrap_unclaimed(const struct iotrap *io)
{
	return __atomic_load_n(&io->unclaimed, __ATOMIC_RELAXED);
}
