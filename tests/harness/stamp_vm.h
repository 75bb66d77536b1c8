/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_STAMP_VM_H
#define VMM_TESTS_STAMP_VM_H

/*
 * A VM running the stamp test guest (tests/guest/stamp.S), and the
 * handshake with it: post a command to a vCPU, wait until it is done.
 *
 * Guest-physical layout: a 4 MiB "system" segment at 0 holds the GDT and
 * TSSs (0x1000), the IDT (0x2000), page tables (0x10000..0xf0000), the
 * guest code (0x100000), stacks (0x200000) and one 64 KiB mailbox per
 * vCPU (0x300000). Tests add data segments above 1 GiB.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/vm.h"
#include "stamp_guest.h"

struct mem_seg;

#define STAMP_MAX_VCPUS 16
#define STAMP_SYS_SIZE (4UL << 20)
#define STAMP_MAILBOX_GPA 0x300000UL
#define STAMP_MAILBOX_SIZE 0x10000UL
#define STAMP_LIST_MAX ((STAMP_MAILBOX_SIZE - MB_LIST) / 8)

struct stamp_cpu {
	uint32_t pending;   /* command waiting for the guest to take */
	uint64_t done;	    /* DONE reports so far */
	uint32_t last_done; /* value of the last DONE */
};

struct stamp_vm {
	struct vm *vm;
	struct mem_seg *sys;
	unsigned int nr_vcpus;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct stamp_cpu cpu[STAMP_MAX_VCPUS];
	int fault_vector; /* -1, or the vector the guest reported */
	int fault_cpu;
};

/* Creates the VM and its system segment; returns -errno. */
int __stamp_vm_create(const struct vm_config *cfg, struct stamp_vm **out);
/* Same, asserting success. */
struct stamp_vm *stamp_vm_create(const struct vm_config *cfg);

/* Loads the guest, builds boot state over all maps, starts the vCPUs. */
void stamp_vm_boot(struct stamp_vm *s);

void stamp_vm_destroy(struct stamp_vm *s);

/* Creates a segment and maps it at @gpa (before boot). */
struct mem_seg *stamp_vm_add_mem(struct stamp_vm *s, const char *name,
				 size_t size, uint64_t gpa);

/*
 * Sets in @bits (one bit per page of the system segment) the pages that the
 * CPU itself may write while the guest runs, without the guest storing to
 * them: on hardware paging (EPT, NPT) the page walker's accesses to the
 * guest's page tables count as writes, and exceptions and interrupts push
 * frames on the ring-0 stacks. These are exactly the page-table pages
 * reachable from CR3, the GDT/TSS and IDT pages and each vCPU's ring-0 stack
 * page; returns how many bits it set.
 */
size_t stamp_vm_cpu_pages(struct stamp_vm *s, uint64_t *bits);

/* Writes a mailbox quadword of @cpu (a VMM write: marks the page). */
void stamp_mb_write(struct stamp_vm *s, unsigned int cpu, unsigned int off,
		    uint64_t val);
uint64_t stamp_mb_read(struct stamp_vm *s, unsigned int cpu, unsigned int off);

/* Posts @cmd to @cpu; the guest takes it at its next IN. */
void stamp_post(struct stamp_vm *s, unsigned int cpu, uint32_t cmd);

/* Waits until @cpu has reported @count DONEs in all; asserts on timeout. */
void stamp_wait_done(struct stamp_vm *s, unsigned int cpu, uint64_t count,
		     int timeout_ms);

/* Stamps @value into the listed pages on @cpu and waits. */
void stamp_list(struct stamp_vm *s, unsigned int cpu, uint64_t value,
		const uint64_t *gpas, size_t n);

/* Stamps @n pages from @base, @stride bytes apart, and waits. */
void stamp_stride(struct stamp_vm *s, unsigned int cpu, uint64_t value,
		  uint64_t base, uint64_t n, uint64_t stride);

#endif /* VMM_TESTS_STAMP_VM_H */
