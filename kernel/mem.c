/* SPDX-License-Identifier: MIT */
#include "kernel/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

/*
 * Locking legend:
 * [I] immutable after create   [a] atomic
 * [L] mem->lock (rwlock: lookups read, map/unmap and lists write)
 * [F] changes need all vCPUs frozen (or not started)
 */

struct mem_seg {
	struct vm_mem *mem;   /* [L] NULL once the VM is gone */
	struct mem_seg *next; /* [L] mem->segs list */
	unsigned int refs;    /* [a] */
	int fd;		      /* [I] */
	size_t size;	      /* [I] */
	uint8_t *hva;	      /* [I] MAP_SHARED over fd */
	uint64_t *dirty;      /* [a] one bit per page */
	/* [a] One bit per DIRTY_GROUP_PAGES pages: set after a page bit of
	 * the group is (and cleared before they are taken), so a take can
	 * skip clean groups and costs what is dirty, not the size. */
	uint64_t *dirty_sum;
	char name[32]; /* [I] */
};

struct mem_map {
	struct mem_seg *seg; /* [I] holds a reference */
	uint64_t gpa;	     /* [I] */
	uint64_t seg_off;    /* [I] */
	size_t len;	     /* [I] */
	uint32_t slot;	     /* [I] */
	uint32_t kvm_flags;  /* [F] */
};

#define MEM_MAX_MAPS 512

/* The dirty summary's grain: one bit per 64 bitmap words (16 MiB). */
#define DIRTY_GROUP_WORDS 64
#define DIRTY_GROUP_PAGES (DIRTY_GROUP_WORDS * 64)

struct vm_mem {
	struct vm *vm; /* [I] */
	pthread_rwlock_t lock;
	struct mem_seg *segs;		    /* [L] */
	unsigned int nr_maps;		    /* [L][F] */
	struct mem_map *maps[MEM_MAX_MAPS]; /* [L][F] sorted by gpa */
	uint64_t slot_used[BITMAP_WORDS(MEM_MAX_MAPS)]; /* [L][F] */
	struct mem_map *by_slot[MEM_MAX_MAPS];		/* [L][F] */
	bool logging; /* [L] new maps start with dirty logging */
};

int vm_mem_create(struct vm *vm, struct vm_mem **out)
{
	struct vm_mem *mem = calloc(1, sizeof(*mem));

	if (!mem)
		return -ENOMEM;
	mem->vm = vm;
	pthread_rwlock_init(&mem->lock, NULL);
	*out = mem;
	return 0;
}

static void seg_free(struct mem_seg *seg)
{
	munmap(seg->hva, seg->size);
	close(seg->fd);
	bitmap_free(seg->dirty);
	bitmap_free(seg->dirty_sum);
	free(seg);
}

static int kvm_set_slot(struct vm_mem *mem, struct mem_map *map, size_t len)
{
	struct kvm_userspace_memory_region r = {
		.slot = map->slot,
		.flags = map->kvm_flags,
		.guest_phys_addr = map->gpa,
		.memory_size = len,
		.userspace_addr =
			(uint64_t)(uintptr_t)(map->seg->hva + map->seg_off),
	};

	return kvm_ioctl(vm_fd(mem->vm), KVM_SET_USER_MEMORY_REGION, &r);
}

/*
 * Tears the VM's memory down: every map is removed (dropping its segment
 * reference) and segments still referenced elsewhere are detached so that
 * their last mem_seg_put() frees them. Called with no vCPU left.
 */
void vm_mem_destroy(struct vm_mem *mem)
{
	struct mem_seg *seg, *next;
	unsigned int i;

	if (!mem)
		return;
	pthread_rwlock_wrlock(&mem->lock);
	for (i = 0; i < mem->nr_maps; i++) {
		struct mem_map *map = mem->maps[i];

		/* The VM fd is about to close; deleting slots is moot. */
		seg = map->seg;
		free(map);
		if (__atomic_sub_fetch(&seg->refs, 1, __ATOMIC_ACQ_REL) == 0)
			seg->mem = NULL; /* freed below, off the list */
	}
	mem->nr_maps = 0;
	for (seg = mem->segs; seg; seg = next) {
		next = seg->next;
		seg->next = NULL;
		if (__atomic_load_n(&seg->refs, __ATOMIC_ACQUIRE) == 0)
			seg_free(seg);
		else
			seg->mem = NULL;
	}
	mem->segs = NULL;
	pthread_rwlock_unlock(&mem->lock);
	pthread_rwlock_destroy(&mem->lock);
	free(mem);
}

static int seg_new(struct vm_mem *mem, const char *name, int fd, size_t size,
		   bool cow, struct mem_seg **out)
{
	struct mem_seg *seg;
	int ret;

	seg = calloc(1, sizeof(*seg));
	if (!seg) {
		ret = -ENOMEM;
		goto err_close;
	}
	seg->dirty = bitmap_alloc(size / PAGE_SIZE);
	seg->dirty_sum = bitmap_alloc(
		BITMAP_WORDS(size / PAGE_SIZE) / DIRTY_GROUP_WORDS + 1);
	if (!seg->dirty || !seg->dirty_sum) {
		ret = -ENOMEM;
		goto err_free;
	}
	seg->hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
			cow ? MAP_PRIVATE : MAP_SHARED, fd, 0);
	if (seg->hva == MAP_FAILED) {
		ret = -errno;
		pr_err("mem: mmap of segment '%s' (%zu bytes): %s", name, size,
		       strerror(-ret));
		goto err_bitmap;
	}
	/* Guest memory should not be copied into a forked child. */
	madvise(seg->hva, size, MADV_DONTFORK);
	/*
	 * Huge pages where the host allows them for shared memory
	 * (/sys/kernel/mm/transparent_hugepage/shmem_enabled "advise" or
	 * "within_size"; the kernel aligns this mapping for them): KVM then
	 * maps guest RAM with 2 MiB nested pages, and the guest takes fewer
	 * TLB misses. A copy-on-write mapping's pages are not its own.
	 */
	if (!cow && size >= SZ_2M)
		madvise(seg->hva, size, MADV_HUGEPAGE);
	if (cow) {
		/* The file is not this segment's contents: no fd to share. */
		close(fd);
		fd = -1;
	}
	seg->fd = fd;
	seg->size = size;
	seg->refs = 1;
	snprintf(seg->name, sizeof(seg->name), "%s", name ? name : "seg");

	pthread_rwlock_wrlock(&mem->lock);
	seg->mem = mem;
	seg->next = mem->segs;
	mem->segs = seg;
	pthread_rwlock_unlock(&mem->lock);
	*out = seg;
	return 0;

err_bitmap:
	bitmap_free(seg->dirty);
	bitmap_free(seg->dirty_sum);
err_free:
	free(seg);
err_close:
	close(fd);
	return ret;
}

int mem_seg_create(struct vm_mem *mem, const char *name, size_t size,
		   struct mem_seg **out)
{
	int fd;

	if (!size || !IS_ALIGNED(size, PAGE_SIZE))
		return -EINVAL;
	fd = memfd_create(name ? name : "vmrun-mem", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return seg_new(mem, name, fd, size, false, out);
}

static int seg_import(struct vm_mem *mem, const char *name, int fd, size_t size,
		      bool cow, struct mem_seg **out)
{
	off_t end;
	int nfd;

	if (!size || !IS_ALIGNED(size, PAGE_SIZE))
		return -EINVAL;
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return -errno;
	if ((uint64_t)end < size) {
		pr_err("mem: imported fd holds %lld bytes, %zu needed",
		       (long long)end, size);
		return -EINVAL;
	}
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (nfd < 0)
		return -errno;
	return seg_new(mem, name, nfd, size, cow, out);
}

int mem_seg_import(struct vm_mem *mem, const char *name, int fd, size_t size,
		   struct mem_seg **out)
{
	return seg_import(mem, name, fd, size, false, out);
}

int mem_seg_import_cow(struct vm_mem *mem, const char *name, int fd,
		       size_t size, struct mem_seg **out)
{
	return seg_import(mem, name, fd, size, true, out);
}

void mem_seg_get(struct mem_seg *seg)
{
	__atomic_add_fetch(&seg->refs, 1, __ATOMIC_RELAXED);
}

void mem_seg_put(struct mem_seg *seg)
{
	struct vm_mem *mem;
	struct mem_seg **pp;

	if (!seg || __atomic_sub_fetch(&seg->refs, 1, __ATOMIC_ACQ_REL))
		return;
	mem = seg->mem;
	if (mem) {
		pthread_rwlock_wrlock(&mem->lock);
		for (pp = &mem->segs; *pp; pp = &(*pp)->next) {
			if (*pp == seg) {
				*pp = seg->next;
				break;
			}
		}
		pthread_rwlock_unlock(&mem->lock);
	}
	seg_free(seg);
}

int mem_seg_fd(const struct mem_seg *seg)
{
	return seg->fd;
}

size_t mem_seg_size(const struct mem_seg *seg)
{
	return seg->size;
}

size_t mem_seg_pages(const struct mem_seg *seg)
{
	return seg->size / PAGE_SIZE;
}

const char *mem_seg_name(const struct mem_seg *seg)
{
	return seg->name;
}

unsigned int mem_seg_refs(const struct mem_seg *seg)
{
	return __atomic_load_n(&seg->refs, __ATOMIC_RELAXED);
}

const void *mem_seg_hva(const struct mem_seg *seg)
{
	return seg->hva;
}

void *mem_seg_hva_load(struct mem_seg *seg)
{
	return seg->hva;
}

uint64_t *mem_seg_dirty_bitmap(struct mem_seg *seg)
{
	return seg->dirty;
}

/* Sets the summary bits of pages [first, first + n) of @seg. */
static void sum_mark(struct mem_seg *seg, size_t first, size_t n)
{
	size_t g = first / DIRTY_GROUP_PAGES;
	size_t last = (first + n - 1) / DIRTY_GROUP_PAGES;

	if (g == last)
		bitmap_set_atomic(seg->dirty_sum, g);
	else
		bitmap_set_range_atomic(seg->dirty_sum, g, last - g + 1);
}

/* Marks pages [first, first + n): the page bits, then the summary. */
static void seg_mark_pages(struct mem_seg *seg, size_t first, size_t n)
{
	if (!n)
		return;
	if (n == 1)
		bitmap_set_atomic(seg->dirty, first);
	else
		bitmap_set_range_atomic(seg->dirty, first, n);
	sum_mark(seg, first, n);
}

static inline void seg_mark(struct mem_seg *seg, uint64_t off, size_t len)
{
	size_t first = off / PAGE_SIZE;
	size_t last = (off + len - 1) / PAGE_SIZE;

	seg_mark_pages(seg, first, last - first + 1);
}

/* ORs @n page bits of @bits into @seg's bitmap from page @first. */
static void seg_or_bits(struct mem_seg *seg, size_t first, const uint64_t *bits,
			size_t n)
{
	size_t i, words = BITMAP_WORDS(n);

	bitmap_or_at_atomic(seg->dirty, first, bits, n);
	for (i = 0; i < words; i++)
		if (bits[i])
			sum_mark(seg, first + i * 64,
				 MIN((size_t)64, n - i * 64));
}

void mem_seg_dirty_or(struct mem_seg *seg, const uint64_t *bits)
{
	seg_or_bits(seg, 0, bits, seg->size / PAGE_SIZE);
}

size_t mem_seg_dirty_take(struct mem_seg *seg, uint64_t *out)
{
	size_t pages = seg->size / PAGE_SIZE;

	/* Summary first: a page marked from here on is seen next time. */
	bitmap_take_atomic(seg->dirty_sum, out,
			   BITMAP_WORDS(pages) / DIRTY_GROUP_WORDS + 1);
	return bitmap_take_atomic(seg->dirty, out, pages);
}

size_t mem_seg_dirty_take_each(struct mem_seg *seg,
			       void (*fn)(void *opaque, size_t page),
			       void *opaque)
{
	size_t words = BITMAP_WORDS(seg->size / PAGE_SIZE);
	size_t groups = words / DIRTY_GROUP_WORDS + 1;
	size_t sw, n = 0;

	for (sw = 0; sw < BITMAP_WORDS(groups); sw++) {
		uint64_t sum;

		if (!__atomic_load_n(&seg->dirty_sum[sw], __ATOMIC_RELAXED))
			continue;
		sum = __atomic_exchange_n(&seg->dirty_sum[sw], 0,
					  __ATOMIC_ACQ_REL);
		while (sum) {
			size_t g = sw * 64 + (size_t)__builtin_ctzll(sum);
			size_t w = g * DIRTY_GROUP_WORDS;
			size_t end = MIN(w + DIRTY_GROUP_WORDS, words);

			sum &= sum - 1;
			for (; w < end; w++) {
				uint64_t bits;

				if (!__atomic_load_n(&seg->dirty[w],
						     __ATOMIC_RELAXED))
					continue;
				bits = __atomic_exchange_n(&seg->dirty[w], 0,
							   __ATOMIC_ACQ_REL);
				while (bits) {
					fn(opaque,
					   w * 64 + (size_t)__builtin_ctzll(
							    bits));
					bits &= bits - 1;
					n++;
				}
			}
		}
	}
	return n;
}

int mem_seg_write(struct mem_seg *seg, uint64_t off, const void *src,
		  size_t len)
{
	if (off > seg->size || len > seg->size - off)
		return -EFAULT;
	if (!len)
		return 0;
	memcpy(seg->hva + off, src, len);
	seg_mark(seg, off, len);
	return 0;
}

static int slot_alloc(struct vm_mem *mem)
{
	unsigned int i;

	for (i = 0; i < MEM_MAX_MAPS; i++) {
		if (!bitmap_test(mem->slot_used, i)) {
			bitmap_set(mem->slot_used, i);
			return (int)i;
		}
	}
	return -ENOSPC;
}

int mem_map(struct vm_mem *mem, struct mem_seg *seg, uint64_t seg_off,
	    uint64_t gpa, size_t len, struct mem_map **out)
{
	struct mem_map *map;
	unsigned int i, pos;
	int slot, ret;

	if (!len || !IS_ALIGNED(gpa, PAGE_SIZE) ||
	    !IS_ALIGNED(seg_off, PAGE_SIZE) || !IS_ALIGNED(len, PAGE_SIZE))
		return -EINVAL;
	if (seg_off > seg->size || len > seg->size - seg_off || gpa + len < gpa)
		return -EINVAL;
	if (seg->mem != mem) {
		pr_err("mem: segment '%s' belongs to another VM", seg->name);
		return -EINVAL;
	}
	if (vm_vcpus_may_run(mem->vm))
		return -EBUSY;

	map = calloc(1, sizeof(*map));
	if (!map)
		return -ENOMEM;
	pthread_rwlock_wrlock(&mem->lock);
	if (mem->nr_maps == MEM_MAX_MAPS) {
		ret = -ENOSPC;
		goto err_unlock;
	}
	for (pos = 0; pos < mem->nr_maps; pos++) {
		struct mem_map *m = mem->maps[pos];

		if (gpa < m->gpa + m->len && m->gpa < gpa + len) {
			pr_err("mem: [%#llx, %#llx) overlaps a map at %#llx",
			       (unsigned long long)gpa,
			       (unsigned long long)(gpa + len),
			       (unsigned long long)m->gpa);
			ret = -EEXIST;
			goto err_unlock;
		}
		if (m->gpa > gpa)
			break;
	}
	slot = slot_alloc(mem);
	if (slot < 0) {
		ret = slot;
		goto err_unlock;
	}
	map->seg = seg;
	map->gpa = gpa;
	map->seg_off = seg_off;
	map->len = len;
	map->slot = (uint32_t)slot;
	map->kvm_flags = mem->logging ? KVM_MEM_LOG_DIRTY_PAGES : 0;
	ret = kvm_set_slot(mem, map, len);
	if (ret < 0) {
		pr_err("mem: KVM_SET_USER_MEMORY_REGION slot %d at %#llx: %s",
		       slot, (unsigned long long)gpa, strerror(-ret));
		goto err_slot;
	}
	if (mem->logging) /* New under tracking: all of it counts as dirty. */
		seg_mark_pages(seg, seg_off / PAGE_SIZE, len / PAGE_SIZE);
	for (i = mem->nr_maps; i > pos; i--)
		mem->maps[i] = mem->maps[i - 1];
	mem->maps[pos] = map;
	mem->by_slot[map->slot] = map;
	mem->nr_maps++;
	mem_seg_get(seg);
	pthread_rwlock_unlock(&mem->lock);
	if (out)
		*out = map;
	return 0;

err_slot:
	mem->slot_used[slot / 64] &= ~(1ULL << (slot % 64));
err_unlock:
	pthread_rwlock_unlock(&mem->lock);
	free(map);
	return ret;
}

int mem_unmap(struct vm_mem *mem, struct mem_map *map)
{
	unsigned int i;
	int ret;

	if (vm_vcpus_may_run(mem->vm))
		return -EBUSY;
	pthread_rwlock_wrlock(&mem->lock);
	for (i = 0; i < mem->nr_maps && mem->maps[i] != map; i++)
		;
	if (i == mem->nr_maps) {
		pthread_rwlock_unlock(&mem->lock);
		return -ENOENT;
	}
	ret = kvm_set_slot(mem, map, 0);
	if (ret < 0) {
		pthread_rwlock_unlock(&mem->lock);
		pr_err("mem: deleting slot %u: %s", map->slot, strerror(-ret));
		return ret;
	}
	for (; i + 1 < mem->nr_maps; i++)
		mem->maps[i] = mem->maps[i + 1];
	mem->nr_maps--;
	mem->slot_used[map->slot / 64] &= ~(1ULL << (map->slot % 64));
	mem->by_slot[map->slot] = NULL;
	pthread_rwlock_unlock(&mem->lock);
	mem_seg_put(map->seg);
	free(map);
	return 0;
}

uint64_t mem_map_gpa(const struct mem_map *map)
{
	return map->gpa;
}

size_t mem_map_len(const struct mem_map *map)
{
	return map->len;
}

struct mem_seg *mem_map_seg(const struct mem_map *map)
{
	return map->seg;
}

uint32_t mem_map_slot(const struct mem_map *map)
{
	return map->slot;
}

uint64_t mem_map_seg_off(const struct mem_map *map)
{
	return map->seg_off;
}

/* Binary search for the map holding @gpa. Called with mem->lock held. */
static struct mem_map *map_find(struct vm_mem *mem, uint64_t gpa)
{
	unsigned int lo = 0, hi = mem->nr_maps;

	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		struct mem_map *m = mem->maps[mid];

		if (gpa < m->gpa)
			hi = mid;
		else if (gpa - m->gpa >= m->len)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

/*
 * Resolves [gpa, gpa + len) to a host address inside one map, or NULL.
 * Sets *segp and *offp when found. Called with mem->lock held.
 */
static uint8_t *resolve(struct vm_mem *mem, uint64_t gpa, size_t len,
			struct mem_seg **segp, uint64_t *offp)
{
	struct mem_map *m = map_find(mem, gpa);
	uint64_t off;

	if (!m || len > m->len - (gpa - m->gpa))
		return NULL;
	off = m->seg_off + (gpa - m->gpa);
	if (segp)
		*segp = m->seg;
	if (offp)
		*offp = off;
	return m->seg->hva + off;
}

int mem_read(struct vm_mem *mem, uint64_t gpa, void *dst, size_t len)
{
	uint8_t *p;
	int ret = 0;

	pthread_rwlock_rdlock(&mem->lock);
	p = resolve(mem, gpa, len, NULL, NULL);
	if (p)
		memcpy(dst, p, len);
	else
		ret = -EFAULT;
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

int mem_write(struct vm_mem *mem, uint64_t gpa, const void *src, size_t len)
{
	struct mem_seg *seg;
	uint64_t off;
	uint8_t *p;
	int ret = 0;

	pthread_rwlock_rdlock(&mem->lock);
	p = resolve(mem, gpa, len, &seg, &off);
	if (p && len) {
		memcpy(p, src, len);
		seg_mark(seg, off, len);
	} else if (!p) {
		ret = -EFAULT;
	}
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

int mem_fill(struct vm_mem *mem, uint64_t gpa, int byte, size_t len)
{
	struct mem_seg *seg;
	uint64_t off;
	uint8_t *p;
	int ret = 0;

	pthread_rwlock_rdlock(&mem->lock);
	p = resolve(mem, gpa, len, &seg, &off);
	if (p && len) {
		memset(p, byte, len);
		seg_mark(seg, off, len);
	} else if (!p) {
		ret = -EFAULT;
	}
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

/* resolve() under the read lock, for the translation entry points. */
static uint8_t *translate(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	uint8_t *p;

	pthread_rwlock_rdlock(&mem->lock);
	p = resolve(mem, gpa, len, NULL, NULL);
	pthread_rwlock_unlock(&mem->lock);
	return p;
}

const void *mem_gpa_to_hva_ro(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	return translate(mem, gpa, len);
}

void *mem_dma_begin(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	return translate(mem, gpa, len);
}

void mem_dma_done(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	mem_mark_dirty(mem, gpa, len);
}

void mem_mark_dirty(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	struct mem_seg *seg;
	uint64_t off;

	if (!len)
		return;
	pthread_rwlock_rdlock(&mem->lock);
	if (resolve(mem, gpa, len, &seg, &off))
		seg_mark(seg, off, len);
	pthread_rwlock_unlock(&mem->lock);
}

bool mem_range_ok(struct vm_mem *mem, uint64_t gpa, size_t len)
{
	return mem_gpa_to_hva_ro(mem, gpa, len) != NULL;
}

uint64_t mem_top(struct vm_mem *mem)
{
	uint64_t top = 0;

	pthread_rwlock_rdlock(&mem->lock);
	if (mem->nr_maps) {
		struct mem_map *m = mem->maps[mem->nr_maps - 1];

		top = m->gpa + m->len;
	}
	pthread_rwlock_unlock(&mem->lock);
	return top;
}

int mem_for_each_map (struct vm_mem *mem,
		      int (*fn)(struct mem_map *map, void *arg), void *arg)
{
	unsigned int i;
	int ret = 0;

	pthread_rwlock_rdlock(&mem->lock);
	for (i = 0; i < mem->nr_maps && !ret; i++)
		ret = fn(mem->maps[i], arg);
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

int mem_for_each_seg (struct vm_mem *mem,
		      int (*fn)(struct mem_seg *seg, void *arg), void *arg)
{
	struct mem_seg *seg;
	int ret = 0;

	pthread_rwlock_rdlock(&mem->lock);
	for (seg = mem->segs; seg && !ret; seg = seg->next)
		ret = fn(seg, arg);
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

struct mem_map *mem_map_by_slot(struct vm_mem *mem, uint32_t slot)
{
	struct mem_map *found = NULL;
	unsigned int i;

	pthread_rwlock_rdlock(&mem->lock);
	for (i = 0; i < mem->nr_maps; i++) {
		if (mem->maps[i]->slot == slot) {
			found = mem->maps[i];
			break;
		}
	}
	pthread_rwlock_unlock(&mem->lock);
	return found;
}

int mem_set_logging(struct vm_mem *mem, bool on)
{
	unsigned int i;
	int ret = 0;

	pthread_rwlock_wrlock(&mem->lock);
	mem->logging = on;
	for (i = 0; i < mem->nr_maps; i++) {
		struct mem_map *m = mem->maps[i];
		uint32_t old = m->kvm_flags;

		m->kvm_flags = on ? (old | KVM_MEM_LOG_DIRTY_PAGES) :
				    (old & ~KVM_MEM_LOG_DIRTY_PAGES);
		if (m->kvm_flags == old)
			continue;
		ret = kvm_set_slot(mem, m, m->len);
		if (ret < 0) {
			pr_err("mem: %s dirty logging on slot %u: %s",
			       on ? "enabling" : "disabling", m->slot,
			       strerror(-ret));
			m->kvm_flags = old;
			break;
		}
	}
	pthread_rwlock_unlock(&mem->lock);
	return ret;
}

void mem_rdlock(struct vm_mem *mem)
{
	pthread_rwlock_rdlock(&mem->lock);
}

void mem_unlock(struct vm_mem *mem)
{
	pthread_rwlock_unlock(&mem->lock);
}

struct mem_map *mem_slot_map_locked(struct vm_mem *mem, uint32_t slot)
{
	return slot < MEM_MAX_MAPS ? mem->by_slot[slot] : NULL;
}

unsigned int mem_nr_maps_locked(struct vm_mem *mem)
{
	return mem->nr_maps;
}

struct mem_map *mem_map_at_locked(struct vm_mem *mem, unsigned int i)
{
	return mem->maps[i];
}

bool mem_map_logging(const struct mem_map *map)
{
	return map->kvm_flags & KVM_MEM_LOG_DIRTY_PAGES;
}

void mem_map_mark_page(struct mem_map *map, uint64_t page)
{
	if (page < map->len / PAGE_SIZE)
		seg_mark_pages(map->seg, map->seg_off / PAGE_SIZE + page, 1);
}

void mem_map_or_bitmap(struct mem_map *map, const uint64_t *bits)
{
	seg_or_bits(map->seg, map->seg_off / PAGE_SIZE, bits,
		    map->len / PAGE_SIZE);
}

void mem_mark_all_dirty(struct vm_mem *mem)
{
	struct mem_seg *seg;

	pthread_rwlock_rdlock(&mem->lock);
	for (seg = mem->segs; seg; seg = seg->next)
		seg_mark_pages(seg, 0, seg->size / PAGE_SIZE);
	pthread_rwlock_unlock(&mem->lock);
}

void mem_copy_page(void *dst, const void *src)
{
	memcpy(__builtin_assume_aligned(dst, PAGE_SIZE),
	       __builtin_assume_aligned(src, PAGE_SIZE), PAGE_SIZE);
}
