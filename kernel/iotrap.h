/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_IOTRAP_H
#define VMM_KERNEL_IOTRAP_H

/*
 * Port-I/O and MMIO dispatch. Devices claim [base, base + len) ranges of a
 * space with a handler. A lookup takes a reference on the range, so a
 * range unregistered while a vCPU is inside its handler stays valid until
 * the handler returns, and unregister waits for that.
 *
 * Accesses no device claims are logged once per address and ignored;
 * reads return all-ones.
 */

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vcpu;
struct iotrap;

enum iotrap_space {
	IOTRAP_PIO,
	IOTRAP_MMIO,
};

/*
 * @addr is the absolute port or guest-physical address, @data holds @len
 * bytes (filled by the handler on reads). Returns VCPU_CONTINUE,
 * VCPU_STOP or -errno.
 */
typedef int (*iotrap_fn_t)(struct vcpu *vcpu, uint64_t addr, void *data,
			   uint32_t len, bool is_write, void *opaque);

int iotrap_create(enum iotrap_space space, struct iotrap **out) __must_check;
void iotrap_destroy(struct iotrap *io);

int iotrap_register(struct iotrap *io, uint64_t base, uint64_t len,
		    iotrap_fn_t fn, void *opaque) __must_check;

/* Returns -ENOENT if no range starts at @base. Waits for active handlers. */
int iotrap_unregister(struct iotrap *io, uint64_t base) __must_check;

/* Dispatches one access; used by the exit handlers and by tests. */
int iotrap_dispatch(struct iotrap *io, struct vcpu *vcpu, uint64_t addr,
		    void *data, uint32_t len, bool is_write);

/*
 * Marks [@base, @base + @len) as hardware the machine does not have but an
 * operating system probes for (other COM ports, a Super I/O chip, PCI
 * configuration ports): accesses there that hit no range still read as all
 * ones and are counted, but are logged only at debug level, not warned
 * about. At most IOTRAP_MAX_QUIET ranges; -ENOSPC beyond.
 */
#define IOTRAP_MAX_QUIET 16
int iotrap_quiet(struct iotrap *io, uint64_t base, uint64_t len) __must_check;

/* Number of accesses that hit no range (for tests and stats). */
uint64_t iotrap_unclaimed(const struct iotrap *io);

#endif /* VMM_KERNEL_IOTRAP_H */
