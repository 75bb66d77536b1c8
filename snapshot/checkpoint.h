/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_CHECKPOINT_H
#define VMM_SNAPSHOT_CHECKPOINT_H

/*
 * In-memory checkpoints and dirty-only reset, for fuzzing (and for
 * `vmrun ctl SOCKET checkpoint` / `reset`).
 *
 * A checkpoint holds the machine's RAM in a sealed memfd (zero pages are
 * holes) and its VM, vCPU and device state as the same state messages a
 * snapshot image holds. A reset copies back only the pages written since
 * the checkpoint or the last reset, by the guest (KVM's dirty log or
 * ring) or by the VMM (its marking writes), then loads the VM, device and
 * vCPU state again. Its cost follows the pages written, not the RAM size:
 * the segment's dirty summary skips clean 16 MiB groups, and in ring mode
 * KVM hands over only what was written. (In log mode KVM_GET_DIRTY_LOG
 * itself costs the size of each memslot's bitmap.)
 *
 * Every call needs the machine quiet: frozen (machine_freeze()), or made
 * from a vCPU thread of it inside an exit handler; the calls freeze the
 * machine themselves then, which costs no kick for the calling vCPU. That
 * exit's I/O is finished by whatever reads the vCPU's state; a reset
 * finishes it or, where that changes nothing, leaves it to KVM
 * (x86_vcpu_reload_settle()).
 *
 * A checkpoint takes over the RAM's dirty bitmap: a reset consumes it, so
 * an incremental save after a reset has no valid base (the caller ends
 * its chain). Taking a checkpoint consumes nothing if tracking was on.
 */

#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct machine;
struct checkpoint;

int checkpoint_take(struct machine *m, struct checkpoint **out, char *err,
		    size_t errlen) __must_check;

struct checkpoint_reset_stats {
	uint64_t pages; /* copied back */
	uint64_t ns;
};

/* Puts @m back to @c. On failure @m is in an undefined state (stop it). */
int checkpoint_reset(struct checkpoint *c, struct machine *m,
		     struct checkpoint_reset_stats *st, char *err,
		     size_t errlen) __must_check;

/*
 * Compares all of @m's memory and its VM, vCPU and device state with @c.
 * Returns 0 if they are the same, 1 with the first difference named in
 * @what, -errno if it could not compare. Fields that follow the host's
 * clock (the TSC and the MSRs that count with it, kvmclock, the LAPIC timer's current count, the PIT's
 * load time, and the PIT's interrupt line in the PIC and IOAPIC, which
 * it raises on the host's clock) are not compared.
 */
int checkpoint_verify(struct checkpoint *c, struct machine *m, char *what,
		      size_t len) __must_check;

/* The RAM copy: a sealed memfd of the RAM's size, for sharing. */
int checkpoint_memfd(const struct checkpoint *c);
uint64_t checkpoint_mem_pages(const struct checkpoint *c); /* non-zero */

/*
 * Makes a new machine, not yet run, the checkpoint's: @m is built with
 * the same configuration (restore mode) and its RAM from
 * checkpoint_memfd(), copy-on-write (machine_config.ram_cow); this loads
 * the VM, device and vCPU state and begins the dirty epoch, so that
 * checkpoint_reset() works on @m. A checkpoint serves one machine at a
 * time: in a forked process, each its own copy. For several fuzzing
 * processes sharing one checkpoint's memory.
 */
int checkpoint_attach(struct checkpoint *c, struct machine *m, char *err,
		      size_t errlen) __must_check;

/* Lets go of the machine it was taken of or attached to (which follows
 * the pages a save takes for it): before that machine is destroyed while
 * the checkpoint lives on. checkpoint_free() does it too. */
void checkpoint_detach(struct checkpoint *c);

/* With the machine it follows still there, or after checkpoint_detach(). */
void checkpoint_free(struct checkpoint *c);

#endif /* VMM_SNAPSHOT_CHECKPOINT_H */
