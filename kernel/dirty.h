/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_DIRTY_H
#define VMM_KERNEL_DIRTY_H

/*
 * Dirty-page tracking, per segment. The source is KVM (the dirty log with
 * manual protect, or the per-vCPU dirty ring, chosen at vm_create()) plus
 * every VMM write made through mem.h. Both feed each segment's bitmap.
 *
 *   dirty_start()  turns tracking on for every map (and maps added later);
 *                  every page of every segment counts as dirty at start.
 *   dirty_sync()   harvests what KVM recorded into the segment bitmaps and
 *                  re-arms write protection for those pages. Safe while
 *                  vCPUs run; a page the guest writes after the sync shows
 *                  in the next one. Every write made before the call is
 *                  harvested: in ring mode the running vCPUs are kicked
 *                  out of guest mode once first, since hardware KVM holds
 *                  their latest dirty pages in the CPU's PML buffer until
 *                  a VM exit (KVM_GET_DIRTY_LOG does that itself).
 *   dirty_take()   moves a segment's bitmap into the caller's buffer and
 *                  clears it.
 *   dirty_count()  counts a segment's dirty pages.
 *   dirty_stop()   final harvest, then tracking off.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct mem_seg;
struct vcpu;

int dirty_start(struct vm *vm) __must_check;
int dirty_sync(struct vm *vm) __must_check;
size_t dirty_take(struct mem_seg *seg, uint64_t *out);
size_t dirty_count(struct mem_seg *seg);
int dirty_stop(struct vm *vm) __must_check;
bool dirty_active(struct vm *vm);

/*
 * Ring mode only: with @on, a sync keeps the pages it harvests writable
 * in KVM (it does not give their ring entries back) and marks them dirty
 * again at every later sync, until the pages held have doubled since the
 * sync after the last give-back (or their ring entries fill half the
 * ring). A sync marks each held page once, from a set kept beside the
 * ring, and walks only the entries published since the last one.
 * For a fuzzer, whose executions write mostly the same pages: those then
 * cost a copy per reset but no write-protection fault per execution.
 * Every write is still seen: a held page counts as dirty at every sync.
 * Off (the default, and after dirty_stop()): everything harvested is
 * given back at once.
 */
void dirty_hold(struct vm *vm, bool on);

/* Harvests one vCPU's ring (ring mode only); used on ring-full exits. */
int dirty_ring_harvest(struct vcpu *vcpu) __must_check;

#endif /* VMM_KERNEL_DIRTY_H */
