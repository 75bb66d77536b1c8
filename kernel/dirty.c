/* SPDX-License-Identifier: MIT */
#include "kernel/dirty.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/compiler.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

bool dirty_active(struct vm *vm)
{
	bool on;

	pthread_mutex_lock(&vm->dirty_lock);
	on = vm->dirty_on;
	pthread_mutex_unlock(&vm->dirty_lock);
	return on;
}

int dirty_start(struct vm *vm)
{
	int ret;

	pthread_mutex_lock(&vm->dirty_lock);
	if (vm->dirty_on) {
		pthread_mutex_unlock(&vm->dirty_lock);
		return -EALREADY;
	}
	/*
	 * Nothing has been harvested yet, so every page counts as dirty: in
	 * both modes the first take returns the whole of each segment. (In
	 * log mode KVM's initially-set bitmap says the same.)
	 */
	mem_mark_all_dirty(vm->mem);
	ret = mem_set_logging(vm->mem, true);
	if (ret < 0)
		mem_set_logging(vm->mem, false);
	else
		vm->dirty_on = true;
	pthread_mutex_unlock(&vm->dirty_lock);
	return ret;
}

static int scratch_reserve(struct vm *vm, size_t words)
{
	uint64_t *p;

	if (words <= vm->dirty_scratch_words)
		return 0;
	p = realloc(vm->dirty_scratch, words * sizeof(uint64_t));
	if (!p)
		return -ENOMEM;
	vm->dirty_scratch = p;
	vm->dirty_scratch_words = words;
	return 0;
}

/*
 * Log mode: fetch one slot's bitmap, fold it into the segment, then clear
 * (re-protect) exactly the pages fetched. Only the span between the first
 * and the last non-zero word goes back to KVM, so a mostly clean slot
 * costs one copy and one scan. Called with vm->dirty_lock and the mem read
 * lock held.
 */
static int sync_slot(struct vm *vm, struct mem_map *map)
{
	size_t pages = mem_map_len(map) / PAGE_SIZE;
	size_t words = BITMAP_WORDS(pages), lo, hi;
	struct kvm_clear_dirty_log clear;
	struct kvm_dirty_log log;
	uint64_t *buf;
	int ret;

	ret = scratch_reserve(vm, words);
	if (ret < 0)
		return ret;
	buf = vm->dirty_scratch;
	memset(&log, 0, sizeof(log));
	log.slot = mem_map_slot(map);
	log.dirty_bitmap = buf;
	ret = kvm_ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log);
	if (ret < 0) {
		pr_err("KVM_GET_DIRTY_LOG slot %u: %s", log.slot,
		       strerror(-ret));
		return ret;
	}
	for (lo = 0; lo < words && !buf[lo]; lo++)
		;
	if (lo == words)
		return 0;
	for (hi = words - 1; !buf[hi]; hi--)
		;
	mem_map_or_bitmap(map, buf);

	memset(&clear, 0, sizeof(clear));
	clear.slot = log.slot;
	clear.first_page = lo * 64;
	clear.num_pages = (uint32_t)MIN((hi + 1) * 64, pages) - lo * 64;
	clear.dirty_bitmap = buf + lo;
	ret = kvm_ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear);
	if (ret < 0)
		pr_err("KVM_CLEAR_DIRTY_LOG slot %u: %s", clear.slot,
		       strerror(-ret));
	return ret;
}

/*
 * Ring mode. Entries [ring_held, ring_fetch) of a vCPU's ring were
 * harvested but not yet given back to KVM (dirty_hold()): KVM leaves
 * their pages writable, so a write to them again makes no fault and no
 * entry, and every sync marks them dirty again.
 *
 * The held entries repeat pages (KVM adds an entry each time it writes
 * guest memory itself: kvmclock, steal time, a few per execution), so
 * a sync does not walk them: it marks the set of their pages, kept once
 * each in a hash set, and walks only the entries published since.
 */
struct ring_held_set {
	uint32_t n, cap; /* pages in keys[] */
	uint32_t mask;	 /* tab[] has mask + 1 slots */
	uint64_t *keys;	 /* (slot << 48) | page offset */
	uint32_t tab[];	 /* index into keys[] + 1; 0 is empty */
};

#define HELD_OFF_MASK ((1ULL << 48) - 1)

static struct ring_held_set *held_set_new(uint32_t ring_entries)
{
	uint32_t cap = MAX(ring_entries / 2, 1u), slots = 2;
	struct ring_held_set *h;

	while (slots < 2 * cap)
		slots *= 2;
	h = calloc(1, sizeof(*h) + (size_t)slots * sizeof(h->tab[0]));
	if (!h)
		return NULL;
	h->keys = malloc((size_t)cap * sizeof(h->keys[0]));
	if (!h->keys) {
		free(h);
		return NULL;
	}
	h->cap = cap;
	h->mask = slots - 1;
	return h;
}

static uint32_t held_slot(const struct ring_held_set *h, uint64_t key)
{
	return (uint32_t)((key * 0x9e3779b97f4a7c15ULL) >> 32) & h->mask;
}

/* Adds @key unless there; false if the set is full. */
static bool held_add(struct ring_held_set *h, uint64_t key)
{
	uint32_t i = held_slot(h, key);

	for (; h->tab[i]; i = (i + 1) & h->mask)
		if (h->keys[h->tab[i] - 1] == key)
			return true;
	if (h->n == h->cap)
		return false;
	h->keys[h->n++] = key;
	h->tab[i] = h->n;
	return true;
}

static void held_clear(struct ring_held_set *h)
{
	uint32_t k, i;

	if (h->n > (h->mask + 1) / 16) {
		memset(h->tab, 0, (size_t)(h->mask + 1) * sizeof(h->tab[0]));
	} else {
		for (k = 0; k < h->n; k++) {
			i = held_slot(h, h->keys[k]);
			while (h->tab[i] != k + 1)
				i = (i + 1) & h->mask;
			h->tab[i] = 0;
		}
	}
	h->n = 0;
}

void dirty_vcpu_free(struct vcpu *vcpu)
{
	if (vcpu->held)
		free(vcpu->held->keys);
	free(vcpu->held);
	vcpu->held = NULL;
}

/*
 * Whether a sync gives @vcpu's held entries back now (see dirty_hold()):
 * when they fill half the ring, or when the pages held have doubled
 * since one execution's worth (many are likely stale, and each costs a
 * copy per reset). Then the set is learned again.
 */
static bool ring_give_back(struct vcpu *vcpu)
{
	uint32_t held = vcpu->ring_fetch - vcpu->ring_held;
	uint32_t pages = vcpu->held->n;

	if (held > vcpu->ring_entries / 2)
		return true;
	if (!vcpu->ring_hold_base) {
		vcpu->ring_hold_base = pages ? pages : 1;
		return false;
	}
	return pages > 2 * vcpu->ring_hold_base + 64;
}

/* Marks one page a ring entry names; the map of its slot, or NULL. */
static struct mem_map *ring_mark(struct vm *vm, uint32_t slot, uint64_t off,
				 uint32_t *last_slot, struct mem_map **map)
{
	if (slot != *last_slot) {
		/* Address space 0 only: high 16 bits of slot. */
		*map = (slot >> 16) ? NULL : mem_slot_map_locked(vm->mem, slot);
		*last_slot = slot;
	}
	if (*map)
		mem_map_mark_page(*map, off);
	else
		pr_warn("dirty ring entry for unknown slot %#x", slot);
	return *map;
}

/*
 * Moves every newly published entry of @vcpu's ring, and the pages of
 * every held one, into the segment bitmaps; with @give_back (or when
 * ring_give_back() says so), marks them all for reset. Called with
 * vcpu->ring_lock and the mem read lock held. Returns the number of
 * entries marked for reset.
 */
static uint32_t ring_collect(struct vm *vm, struct vcpu *vcpu, bool give_back)
{
	uint32_t mask = vcpu->ring_entries - 1, i, n, first = vcpu->ring_fetch;
	uint32_t last_slot = UINT32_MAX;
	struct ring_held_set *h = vcpu->held;
	struct mem_map *map = NULL;
	bool hold = vm->dirty_hold && !give_back;

	if (hold && !h && !(h = vcpu->held = held_set_new(vcpu->ring_entries)))
		hold = false; /* no memory for it: give back, as without */
	while (__atomic_load_n(&vcpu->ring[vcpu->ring_fetch & mask].flags,
			       __ATOMIC_ACQUIRE) &
	       KVM_DIRTY_GFN_F_DIRTY)
		vcpu->ring_fetch++;
	for (i = 0; h && i < h->n; i++)
		ring_mark(vm, (uint32_t)(h->keys[i] >> 48),
			  h->keys[i] & HELD_OFF_MASK, &last_slot, &map);
	for (i = first; i != vcpu->ring_fetch; i++) {
		struct kvm_dirty_gfn *e = &vcpu->ring[i & mask];

		/* A full set gives everything back. */
		if (ring_mark(vm, e->slot, e->offset, &last_slot, &map) &&
		    hold &&
		    !held_add(h, ((uint64_t)e->slot << 48) |
					 (e->offset & HELD_OFF_MASK)))
			hold = false;
	}
	if (hold && !ring_give_back(vcpu))
		return 0;
	for (i = vcpu->ring_held; i != vcpu->ring_fetch; i++)
		__atomic_store_n(&vcpu->ring[i & mask].flags,
				 KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	n = vcpu->ring_fetch - vcpu->ring_held;
	vcpu->ring_held = vcpu->ring_fetch;
	vcpu->ring_hold_base = 0;
	if (h)
		held_clear(h);
	return n;
}

/*
 * KVM_RESET_DIRTY_RINGS with every signal blocked. Newer KVMs end a
 * reset early when the calling thread has a signal pending (a vCPU
 * thread's kick or time-out timer, when a fuzzer resets on it). On a
 * 6.18 host that left pages writable without a ring entry after a
 * reset interrupted so, and later writes to them were missed
 * (fuzz/verified_resets_signals); with signals blocked it never did.
 */
static int ring_reset(struct vm *vm)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	do
		ret = kvm_ioctl_val(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	while (ret == -EINTR);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (ret < 0) {
		pr_err("KVM_RESET_DIRTY_RINGS: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

int dirty_ring_harvest(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	uint32_t n;

	if (!vcpu->ring)
		return -EINVAL;
	/* A full ring gives everything back, held entries too. */
	pthread_mutex_lock(&vcpu->ring_lock);
	mem_rdlock(vm->mem);
	n = ring_collect(vm, vcpu, true);
	mem_unlock(vm->mem);
	pthread_mutex_unlock(&vcpu->ring_lock);
	return n ? ring_reset(vm) : 0;
}

void dirty_hold(struct vm *vm, bool on)
{
	pthread_mutex_lock(&vm->dirty_lock);
	vm->dirty_hold = on && vm->cfg.dirty == DIRTY_MODE_RING;
	pthread_mutex_unlock(&vm->dirty_lock);
}

/*
 * Ring mode on hardware KVM: a running vCPU's latest dirty pages may sit
 * in the CPU's PML buffer, which reaches the ring only on a VM exit. Kick
 * every vCPU that is inside KVM_RUN and wait (bounded) until each has
 * come out once, so the harvest covers every write made before the call.
 * (In log mode KVM_GET_DIRTY_LOG flushes PML itself.)
 */
static void ring_flush_running(struct vm *vm)
{
	uint64_t seq[VM_MAX_VCPUS];
	bool kicked[VM_MAX_VCPUS];
	unsigned int i, tries;
	bool waiting;

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = vm->vcpus[i];

		seq[i] = __atomic_load_n(&vcpu->run_seq, __ATOMIC_SEQ_CST);
		kicked[i] = __atomic_load_n(&vcpu->running, __ATOMIC_SEQ_CST);
		if (kicked[i])
			vcpu_kick(vcpu);
	}
	for (tries = 0; tries < 10000; tries++) {
		waiting = false;
		for (i = 0; i < vm->nr_vcpus; i++) {
			struct vcpu *vcpu = vm->vcpus[i];

			if (kicked[i] &&
			    __atomic_load_n(&vcpu->run_seq, __ATOMIC_SEQ_CST) ==
				    seq[i] &&
			    __atomic_load_n(&vcpu->running, __ATOMIC_SEQ_CST))
				waiting = true;
		}
		if (!waiting)
			return;
		sched_yield();
	}
	pr_warn("dirty ring: a vCPU did not leave guest mode when kicked");
}

int dirty_sync(struct vm *vm)
{
	unsigned int i, nr;
	uint32_t n = 0;
	int ret = 0;

	pthread_mutex_lock(&vm->dirty_lock);
	if (!vm->dirty_on) {
		pthread_mutex_unlock(&vm->dirty_lock);
		return -EINVAL;
	}
	if (vm->cfg.dirty == DIRTY_MODE_RING) {
		ring_flush_running(vm);
		for (i = 0; i < vm->nr_vcpus; i++) {
			struct vcpu *vcpu = vm->vcpus[i];

			pthread_mutex_lock(&vcpu->ring_lock);
			mem_rdlock(vm->mem);
			n += ring_collect(vm, vcpu, false);
			mem_unlock(vm->mem);
			pthread_mutex_unlock(&vcpu->ring_lock);
		}
		if (n)
			ret = ring_reset(vm);
	} else {
		mem_rdlock(vm->mem);
		nr = mem_nr_maps_locked(vm->mem);
		for (i = 0; i < nr && !ret; i++) {
			struct mem_map *map = mem_map_at_locked(vm->mem, i);

			if (mem_map_logging(map))
				ret = sync_slot(vm, map);
		}
		mem_unlock(vm->mem);
	}
	pthread_mutex_unlock(&vm->dirty_lock);
	return ret;
}

size_t dirty_take(struct mem_seg *seg, uint64_t *out)
{
	return mem_seg_dirty_take(seg, out);
}

size_t dirty_count(struct mem_seg *seg)
{
	return bitmap_weight(mem_seg_dirty_bitmap(seg), mem_seg_pages(seg));
}

int dirty_stop(struct vm *vm)
{
	int ret;

	if (!dirty_active(vm))
		return -EINVAL;
	/* Keep what KVM recorded so far: the bitmaps stay valid. */
	dirty_hold(vm, false);
	ret = dirty_sync(vm);
	pthread_mutex_lock(&vm->dirty_lock);
	if (mem_set_logging(vm->mem, false) < 0 && !ret)
		ret = -EIO;
	vm->dirty_on = false;
	free(vm->dirty_scratch);
	vm->dirty_scratch = NULL;
	vm->dirty_scratch_words = 0;
	pthread_mutex_unlock(&vm->dirty_lock);
	return ret;
}
