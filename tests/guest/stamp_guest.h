/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_STAMP_GUEST_H
#define VMM_TESTS_STAMP_GUEST_H

/* Shared by stamp.S and the tests: ports, commands, mailbox layout. */

#define STAMP_MAGIC 0x5041545354524d56 /* "VMRTSTAP" */
#define STAMP_LOAD_GPA 0x100000

/*
 * Ring 3 cannot use IN/OUT on every host (PVM gives ring 3 no IOPL), so the
 * ring-3 doorbells are MMIO: an access to an address with no memslot
 * exits to the VMM as KVM_EXIT_MMIO from any ring, without ring-0 code.
 */
#define STAMP_MMIO_BASE 0xfe000000
#define STAMP_MMIO_CMD \
	(STAMP_MMIO_BASE + 0x0) /* read: next command, 0 = none */
#define STAMP_MMIO_DONE (STAMP_MMIO_BASE + 0x8) /* write: command done */
#define STAMP_MMIO_SIZE 0x1000
#define STAMP_PORT_FAULT 0x518 /* ring-0 OUT: exception vector */

#define STAMP_CMD_LIST 1   /* stamp VALUE into the COUNT pages in LIST */
#define STAMP_CMD_STRIDE 2 /* stamp COUNT pages from BASE, STRIDE apart */
#define STAMP_CMD_LOOP 3   /* write COUNT pages from BASE until STOP */
#define STAMP_CMD_HALT 4   /* HLT with interrupts off, for good */
#define STAMP_CMD_SPIN 5   /* spin in ring 3 until STOP */

/* Mailbox byte offsets. */
#define MB_VALUE 0
#define MB_COUNT 8
#define MB_BASE 16
#define MB_STRIDE 24
#define MB_STOP 32
#define MB_PROGRESS 40
#define MB_LIST 64

#ifndef __ASSEMBLER__
#include <stdint.h>

struct stamp_header {
	uint64_t magic;
	uint64_t entry;
	uint64_t isr_ud;
	uint64_t isr_table; /* 32 quadwords: handlers of vectors 0..31 */
};
#endif

#endif /* VMM_TESTS_STAMP_GUEST_H */
