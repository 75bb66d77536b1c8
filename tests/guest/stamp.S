/* SPDX-License-Identifier: MIT */
/*
 * The stamp test guest. The VMM enters it in 64-bit ring 0 with its own
 * page tables, GDT, TSS and IDT (kernel/x86/boot64.c). A few ring-0
 * instructions drop to ring 3 with IOPL 3, where all the work happens, so
 * it runs natively even where ring-0 code is emulated.
 *
 * Registers at entry: RDI vCPU id, RSP ring-0 stack, RDX ring-3 stack,
 * RCX this vCPU's mailbox (see stamp_guest.h for its layout and the
 * commands).
 *
 * Ring 3 loop: a read of STAMP_MMIO_CMD returns a command (0 = none yet,
 * ask again); the command's arguments are in the mailbox; completion is
 * reported by a write to STAMP_MMIO_DONE. Going back to ring 0 uses UD2
 * (INT n from ring 3 raises #UD on some hosts).
 */
#include "stamp_guest.h"

	.code64
	.section .head, "ax"
	.globl _start
_start:
header:
	.quad	STAMP_MAGIC
	.quad	entry
	.quad	isr_ud
	.quad	isr_table

	.text
entry:
	/* Ring 0 -> ring 3: SS, RSP, RFLAGS (IF 0), CS, RIP. */
	pushq	$0x1b
	pushq	%rdx
	pushq	$0x0002
	pushq	$0x23
	leaq	user_main(%rip), %rax
	pushq	%rax
	iretq

user_main:
	movq	%rcx, %r15		/* mailbox */
	movq	%rdi, %r14		/* vCPU id */
cmd_loop:
	movl	STAMP_MMIO_CMD, %eax
	testl	%eax, %eax
	jz	cmd_loop
	cmpl	$STAMP_CMD_LIST, %eax
	je	do_list
	cmpl	$STAMP_CMD_STRIDE, %eax
	je	do_stride
	cmpl	$STAMP_CMD_LOOP, %eax
	je	do_loop
	cmpl	$STAMP_CMD_HALT, %eax
	je	do_halt
	cmpl	$STAMP_CMD_SPIN, %eax
	je	do_spin
	jmp	cmd_loop

/* Stamp each listed page: first and last quadword get the value. */
do_list:
	movq	MB_VALUE(%r15), %rbx
	movq	MB_COUNT(%r15), %rcx
	leaq	MB_LIST(%r15), %rsi
1:	testq	%rcx, %rcx
	jz	done
	movq	(%rsi), %rdi
	movq	%rbx, (%rdi)
	movq	%rbx, 4088(%rdi)
	addq	$8, %rsi
	decq	%rcx
	jmp	1b

/* Stamp COUNT pages from BASE, STRIDE bytes apart. */
do_stride:
	movq	MB_VALUE(%r15), %rbx
	movq	MB_BASE(%r15), %rdi
	movq	MB_COUNT(%r15), %rcx
	movq	MB_STRIDE(%r15), %rsi
1:	testq	%rcx, %rcx
	jz	done
	movq	%rbx, (%rdi)
	addq	%rsi, %rdi
	decq	%rcx
	jmp	1b

done:
	movl	%ebx, %eax
	movl	%eax, STAMP_MMIO_DONE
	jmp	cmd_loop

/*
 * Write one quadword per page over COUNT pages from BASE, round after
 * round, until the VMM sets STOP; publish the running total of page
 * writes in PROGRESS every 64 pages. No exits while it runs.
 */
do_loop:
	xorq	%r8, %r8		/* pages written */
	movq	MB_VALUE(%r15), %rbx
2:	movq	MB_BASE(%r15), %rdi
	movq	MB_COUNT(%r15), %rcx
1:	movq	%r8, (%rdi)
	addq	$4096, %rdi
	incq	%r8
	testq	$63, %r8
	jnz	3f
	movq	%r8, MB_PROGRESS(%r15)
	cmpq	$0, MB_STOP(%r15)
	jne	4f
3:	decq	%rcx
	jnz	1b
	jmp	2b
4:	movq	%r8, MB_PROGRESS(%r15)
	movl	$STAMP_CMD_LOOP, %eax
	movl	%eax, STAMP_MMIO_DONE
	jmp	cmd_loop

/* Spin in ring 3 without exits until the VMM sets STOP. */
do_spin:
	cmpq	$0, MB_STOP(%r15)
	je	do_spin
	movl	$STAMP_CMD_SPIN, %eax
	movl	%eax, STAMP_MMIO_DONE
	jmp	cmd_loop

/* Halt for good: ask ring 0 (UD2 with RAX = 1). */
do_halt:
	movl	$STAMP_CMD_HALT, %eax
	movl	%eax, STAMP_MMIO_DONE
	movq	$1, %rax
	ud2

/* #UD: RAX = 1 halts with interrupts off; anything else is a fault. */
isr_ud:
	cmpq	$1, %rax
	jne	isr_bad_ud
1:	cli
	hlt
	jmp	1b
isr_bad_ud:
	pushq	$6
	jmp	isr_common

/* Every other exception reports its vector and stops. */
	.macro	isr n
isr_\n:
	pushq	$\n
	jmp	isr_common
	.endm
	.irp	n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	isr	\n
	.endr

isr_common:
	popq	%rax
	movw	$STAMP_PORT_FAULT, %dx
	outl	%eax, %dx
1:	cli
	hlt
	jmp	1b

	.section .rodata
	.balign	8
isr_table:
	.irp	n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	isr_\n
	.endr
