/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_BOOT64_H
#define VMM_X86_BOOT64_H

/*
 * Direct 64-bit entry: the VMM builds identity page tables over every
 * mapped range (2 MiB pages, user-accessible), a GDT with ring-0 and
 * ring-3 flat segments, one 64-bit TSS per vCPU and optionally an IDT,
 * then puts each vCPU in long mode at @entry. All writes go through
 * mem_write(), so the pages are marked dirty.
 *
 * GDT selectors: 0x08 kernel code, 0x10 kernel data, 0x18 user data,
 * 0x20 user code (use 0x1b / 0x23 with RPL 3), 0x28 + 16 * n the TSS of
 * vCPU n.
 */

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;

#define BOOT64_SEL_KCODE 0x08
#define BOOT64_SEL_KDATA 0x10
#define BOOT64_SEL_UDATA 0x18
#define BOOT64_SEL_UCODE 0x20
#define BOOT64_SEL_TSS0 0x28

struct boot64_gate {
	uint8_t vector;
	uint8_t dpl;
	uint64_t handler;
};

struct boot64 {
	uint64_t gdt_gpa; /* 4 KiB: GDT, then the TSSs from +0x800 */
	uint64_t idt_gpa; /* 4 KiB, or 0 for no IDT */
	uint64_t pt_gpa;  /* page-table pool */
	uint64_t pt_size; /* bytes in the pool */
	const struct boot64_gate *gates;
	unsigned int nr_gates;
	uint64_t entry;
	/* vCPU n: RSP = stack_top - n * stack_stride; TSS.RSP0 likewise. */
	uint64_t stack_top, stack_stride;
	uint64_t rsp0_top, rsp0_stride;
	/* Initial general registers: RDI = vCPU id, RSI = vCPU count,
	 * RDX = user_stack_top - n * stack_stride, RCX = arg_base + n *
	 * arg_stride. */
	uint64_t user_stack_top;
	uint64_t arg_base, arg_stride;
	/* If non-zero: RSI = boot_info_gpa and RDX = RCX = 0 instead (the
	 * vmrun entry of vmrun_boot.h). */
	uint64_t boot_info_gpa;
	/* An extra range to identity-map, such as an MMIO window (0 = none). */
	uint64_t extra_gpa, extra_len;
	/* Only vCPU 0 enters; the others stay in KVM's reset state, waiting
	 * for the guest's INIT/SIPI (a Linux kernel starts its APs itself). */
	bool bsp_only;
};

int boot64_setup(struct vm *vm, const struct boot64 *b) __must_check;

/*
 * 32-bit protected-mode entry for PVH and Multiboot kernels, on vCPU 0
 * only (the others wait for INIT/SIPI from the guest): flat 4 GiB code
 * and data segments, paging off, interrupts off, EAX = @eax, EBX = @ebx,
 * EIP = @entry. The GDT (4 KiB) is written at @gdt_gpa.
 */
int boot32_setup(struct vm *vm, uint64_t gdt_gpa, uint32_t entry, uint32_t eax,
		 uint32_t ebx) __must_check;

#endif /* VMM_X86_BOOT64_H */
