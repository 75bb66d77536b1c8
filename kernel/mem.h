/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_MEM_H
#define VMM_KERNEL_MEM_H

/*
 * Guest memory objects, after FreeBSD's struct vm_mem and OpenBSD's
 * per-range memory objects.
 *
 * A segment (struct mem_seg) is a sized, refcounted memfd. A map (struct
 * mem_map) places a page-aligned range of a segment at a guest-physical
 * address, and is exactly one KVM memslot. A segment may be mapped several
 * times, in this VM or in another one, and any process holding its fd sees
 * the same bytes.
 *
 * Each segment carries its own dirty bitmap, one bit per 4 KiB page of the
 * segment. KVM's dirty tracking (dirty.c) and every VMM write to guest
 * memory set bits in it. The VMM writes guest memory through mem_write()
 * and friends only; there is no writable pointer that does not mark.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct vm_mem;
struct mem_seg;
struct mem_map;

/* Creates an anonymous segment of @size bytes (a multiple of 4 KiB). */
int mem_seg_create(struct vm_mem *mem, const char *name, size_t size,
		   struct mem_seg **out) __must_check;

/*
 * Creates a segment over an existing memfd (or any shareable file), such
 * as one received from another process or taken from another VM's
 * mem_seg_fd(). The fd is duplicated; the caller keeps its own.
 */
int mem_seg_import(struct vm_mem *mem, const char *name, int fd, size_t size,
		   struct mem_seg **out) __must_check;

/*
 * Creates a segment that starts as the contents of @fd (a sealed
 * checkpoint's memfd) and is private to this process: pages are shared
 * with every other such segment until written, then copied. Such a
 * segment has no fd of its own (mem_seg_fd() gives -1).
 */
int mem_seg_import_cow(struct vm_mem *mem, const char *name, int fd,
		       size_t size, struct mem_seg **out) __must_check;

/* Takes and drops references. The last put unmaps and closes. */
void mem_seg_get(struct mem_seg *seg);
void mem_seg_put(struct mem_seg *seg);

/* -1 for a copy-on-write segment. */
int mem_seg_fd(const struct mem_seg *seg);
size_t mem_seg_size(const struct mem_seg *seg);
size_t mem_seg_pages(const struct mem_seg *seg);
const char *mem_seg_name(const struct mem_seg *seg);
unsigned int mem_seg_refs(const struct mem_seg *seg);

/*
 * Read-only view of the whole segment in the VMM's address space, for
 * savers and senders. Writing through it is a bug: use mem_seg_write().
 */
const void *mem_seg_hva(const struct mem_seg *seg);

/*
 * Writable view of the whole segment for a loader filling it before any
 * vCPU runs (a restore): writes through it are not marked dirty.
 */
void *mem_seg_hva_load(struct mem_seg *seg);

/*
 * The segment's dirty bitmap, for reading (see dirty.h for the
 * operations on it). Set bits only through the functions below and the
 * marking writes: each segment also keeps a summary (one bit per 16 MiB)
 * that lets a take skip what is clean.
 */
uint64_t *mem_seg_dirty_bitmap(struct mem_seg *seg);

/* ORs a segment-sized bitmap into the dirty bitmap (giving pages back). */
void mem_seg_dirty_or(struct mem_seg *seg, const uint64_t *bits);

/* Moves the dirty bitmap into @out (segment-sized) and clears it; returns
 * the pages moved. Costs the segment's size. */
size_t mem_seg_dirty_take(struct mem_seg *seg, uint64_t *out);

/*
 * Takes the dirty pages one by one, calling @fn with each page index
 * (from the segment's start), clearing them as it goes; returns how many.
 * It visits only the 16 MiB groups that hold dirty pages, so it costs
 * what is dirty, not the segment's size. A page marked while it runs is
 * either passed to @fn or left for the next take.
 */
size_t mem_seg_dirty_take_each(struct mem_seg *seg,
			       void (*fn)(void *opaque, size_t page),
			       void *opaque);

/* Writes into a segment at @off and marks the pages dirty. */
int mem_seg_write(struct mem_seg *seg, uint64_t off, const void *src,
		  size_t len) __must_check;

/*
 * Places [seg_off, seg_off + len) of @seg at guest-physical @gpa as a new
 * KVM memslot. All of @gpa, @seg_off and @len are page aligned and the
 * range must not overlap an existing map. The map takes a reference on the
 * segment. Must be called with no vCPU running (before start or with the
 * VM paused); returns -EBUSY otherwise.
 */
int mem_map(struct vm_mem *mem, struct mem_seg *seg, uint64_t seg_off,
	    uint64_t gpa, size_t len, struct mem_map **out) __must_check;

/* Removes a map (deletes its memslot); same precondition as mem_map(). */
int mem_unmap(struct vm_mem *mem, struct mem_map *map) __must_check;

uint64_t mem_map_gpa(const struct mem_map *map);
size_t mem_map_len(const struct mem_map *map);
uint64_t mem_map_seg_off(const struct mem_map *map);
struct mem_seg *mem_map_seg(const struct mem_map *map);
uint32_t mem_map_slot(const struct mem_map *map);

/*
 * Guest-physical accessors with bounds checks. The range must lie within
 * one map; otherwise they return -EFAULT and touch nothing.
 * mem_write() and mem_fill() mark every page they touch dirty, after the
 * bytes are in place (so a concurrent harvest never loses the write).
 */
int mem_read(struct vm_mem *mem, uint64_t gpa, void *dst,
	     size_t len) __must_check;
int mem_write(struct vm_mem *mem, uint64_t gpa, const void *src,
	      size_t len) __must_check;
int mem_fill(struct vm_mem *mem, uint64_t gpa, int byte,
	     size_t len) __must_check;

/*
 * Copies one page (both addresses page-aligned). One compiled copy for
 * every user: a checkpoint's reset and the floor it is measured against
 * (tests/perf/fuzz_floor.c) copy the same way.
 */
void mem_copy_page(void *dst, const void *src);

/*
 * Translation for device emulation that reads guest buffers in place.
 * Returns NULL if [gpa, gpa + len) is not inside one map.
 */
const void *mem_gpa_to_hva_ro(struct vm_mem *mem, uint64_t gpa, size_t len);

/*
 * For device emulation that writes guest buffers in place (DMA): returns a
 * writable pointer; the caller must call mem_dma_done() over the same
 * range once the bytes are written, which marks the pages. Prefer
 * mem_write() where a copy is cheap.
 */
void *mem_dma_begin(struct vm_mem *mem, uint64_t gpa, size_t len);
void mem_dma_done(struct vm_mem *mem, uint64_t gpa, size_t len);

/* True if [gpa, gpa + len) lies inside one map. */
bool mem_range_ok(struct vm_mem *mem, uint64_t gpa, size_t len);

/* Highest guest-physical address + 1 covered by any map. */
uint64_t mem_top(struct vm_mem *mem);

/*
 * Iteration helpers. The callback returns 0 to go on or non-zero to stop
 * (which is returned). Called with the map list read-locked: callbacks
 * must not map or unmap.
 */
int mem_for_each_map (struct vm_mem *mem,
		      int (*fn)(struct mem_map *map, void *arg), void *arg);
int mem_for_each_seg (struct vm_mem *mem,
		      int (*fn)(struct mem_seg *seg, void *arg), void *arg);

/* Looks a map up by its KVM slot id; NULL if none. */
struct mem_map *mem_map_by_slot(struct vm_mem *mem, uint32_t slot);

#endif /* VMM_KERNEL_MEM_H */
