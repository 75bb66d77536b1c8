/* SPDX-License-Identifier: MIT */
/*
 * Entry points, descriptor tables, page tables and interrupt stubs of the
 * reference guest. Everything here runs in ring 0, which is emulated
 * instruction by instruction on some hosts, so each path is as short as
 * it can be: a CPU's whole set-up is about 45 instructions, the timer
 * interrupt 8, an idle wake-up IPI 5.
 *
 * Two entries:
 *   vmrun_entry  64-bit, every vCPU, RDI = vCPU index, RSI = boot info
 *                (kernel/x86/vmrun_boot.h);
 *   pvh_entry    32-bit protected mode, no paging, EBX = hvm_start_info
 *                (the Xen PVH boot ABI that QEMU, Firecracker and Cloud
 *                Hypervisor use), one CPU.
 * Both meet in common64 with RDI = CPU, RSI = info, RDX = BOOT_*.
 */
#include "ref.h"

#define GDT_KCODE 0x08
#define GDT_KDATA 0x10
#define GDT_UDATA 0x18
#define GDT_UCODE 0x20
#define GDT_TSS0 0x28
#define TSS_SIZE 128

#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

/* 2 MiB page: present, writable, user, accessed, dirty, large. */
#define PDE_FLAGS 0xe7
/* Table: present, writable, user, accessed. */
#define PT_FLAGS 0x27

/*
 * ELF notes, 4-byte aligned (header, name and descriptor each padded to
 * 4 bytes): the loaders that read them all step through notes that way.
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4			/* "Xen\0" */
	.long	8
	.long	18			/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.balign 4
	.quad	pvh_entry
	.balign 4

	.section .note.vmrun, "a", @note
	.balign 4
	.long	6			/* "vmrun\0" */
	.long	8
	.long	1			/* VMRUN_NOTE_ENTRY64 */
	.asciz	"vmrun"
	.balign 4
	.quad	vmrun_entry
	.balign 4

	.section .text.entry, "ax"

/* PVH: 32-bit flat protected mode, paging off, interrupts off. */
	.code32
	.globl	pvh_entry
pvh_entry:
	cli
	movl	%ebx, %esi
	lgdt	gdt_ptr
	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(CR0_PG | CR0_PE), %eax
	movl	%eax, %cr0
	ljmp	$GDT_KCODE, $pvh_entry64

	.code64
pvh_entry64:
	movl	$GDT_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	/* The upper halves are undefined after the switch: zero them. */
	movl	%esi, %esi
	xorl	%edi, %edi
	movl	$BOOT_PVH, %edx
	jmp	common64

/*
 * vmrun: already in long mode on vmrun's GDT, whose selectors are ours,
 * so CS and SS need no reload after our LGDT.
 */
	.globl	vmrun_entry
vmrun_entry:
	movl	$BOOT_VMRUN, %edx

common64:
	cmpq	$REF_MAX_CPUS, %rdi
	jae	park
	lgdt	gdt_ptr(%rip)
	/* Ring-0 stack: kstacks + (cpu + 1) << KSTACK_SHIFT. */
	leaq	1(%rdi), %rax
	shlq	$REF_KSTACK_SHIFT, %rax
	leaq	kstacks(%rip), %rsp
	addq	%rax, %rsp
	/* This CPU's TSS: RSP0, and an I/O map base past the limit. */
	movq	%rdi, %rbx
	shlq	$7, %rbx
	leaq	tss(%rip), %rcx
	addq	%rcx, %rbx
	movq	%rsp, 4(%rbx)
	movw	$104, 102(%rbx)
	/* Its descriptor: limit 103, base, type 9 (available 64-bit TSS). */
	movl	%ebx, %eax
	andl	$0xffffff, %eax
	shlq	$16, %rax
	orq	$103, %rax
	movq	%rbx, %rcx
	shrq	$24, %rcx
	shlq	$56, %rcx
	orq	%rcx, %rax
	movabsq	$0x0000890000000000, %rcx
	orq	%rcx, %rax
	movq	%rdi, %r8
	shlq	$4, %r8
	leaq	gdt(%rip), %rcx
	movq	%rax, GDT_TSS0(%rcx, %r8)
	leal	GDT_TSS0(%r8), %eax
	ltr	%ax
	lidt	idt_ptr(%rip)
	leaq	pml4(%rip), %rax
	movq	%rax, %cr3
	testq	%rdi, %rdi
	jnz	1f
	movq	%rsi, boot_info_addr(%rip)
	movl	%edx, boot_kind(%rip)
	jmp	2f
	/* An AP: enable its LAPIC so that the tick IPI wakes it. */
1:	movl	$(LAPIC_BASE + LAPIC_SVR), %eax
	movl	$(0x100 | VEC_SPURIOUS), (%rax)
	/* Ring 3, interrupts off, at ring3_start on this CPU's user stack. */
2:	leaq	1(%rdi), %rax
	shlq	$REF_USTACK_SHIFT, %rax
	leaq	ustacks(%rip), %rcx
	addq	%rcx, %rax
	pushq	$(GDT_UDATA | 3)
	pushq	%rax
	pushq	$2
	pushq	$(GDT_UCODE | 3)
	leaq	ring3_start(%rip), %rax
	pushq	%rax
	iretq

park:
	cli
	hlt
	jmp	park

ring3_start:
	call	user_main
	ud2

	.text

/*
 * #UD. From ring 3 on a UD2, it is a system call: RAX = number, RDI and
 * RSI arguments; the caller expects the C-call clobbers, so nothing is
 * saved. Anything else is a fault.
 */
	.balign 16
isr_ud:
	testb	$3, 8(%rsp)
	jz	1f
	movq	(%rsp), %rcx
	cmpw	$0x0b0f, (%rcx)
	jne	1f
	addq	$2, (%rsp)
	cld
	movq	%rax, %rcx
	movq	%rsp, %r8
	subq	$8, %rsp
	call	kern_syscall
	addq	$8, %rsp
	iretq
1:	pushq	$0
	pushq	$VEC_UD
	jmp	fault_common

/* Timer (PIC IRQ 0) on the BSP: count, EOI, wake the APs. */
	.balign 16
	.globl	isr_timer
isr_timer:
	pushq	%rax
	incq	jiffies(%rip)
	movb	$0x20, %al
	outb	%al, $0x20
	cmpb	$0, tick_ipi(%rip)
	je	1f
	movl	$(LAPIC_BASE + LAPIC_ICR_LO), %eax
	movl	$LAPIC_ICR_TICK, (%rax)
1:	popq	%rax
	iretq

/* The tick IPI on an AP: it only ends a SYS_IDLE halt. */
	.balign 16
	.globl	isr_ipi
isr_ipi:
	pushq	%rax
	movl	$(LAPIC_BASE + LAPIC_EOI), %eax
	movl	$0, (%rax)
	popq	%rax
	iretq

/* Other PIC lines are masked; acknowledge any that slips through. */
	.balign 16
	.globl	isr_irq_slave
isr_irq_slave:
	pushq	%rax
	movb	$0x20, %al
	outb	%al, $0xa0
	jmp	1f
	.globl	isr_irq_master
isr_irq_master:
	pushq	%rax
	movb	$0x20, %al
1:	outb	%al, $0x20
	popq	%rax
	iretq

/* PIC IRQ 7 / 15 spurious and LAPIC spurious: no EOI. */
	.balign 16
	.globl	isr_spurious
isr_spurious:
	iretq

	.macro	exc n, err
	.balign 16
exc_\n:
	.if	\err == 0
	pushq	$0
	.endif
	pushq	$\n
	jmp	fault_common
	.endm

	.irp	n, 0,1,2,3,4,5,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	exc	\n, 0
	.endr
	.irp	n, 8,10,11,12,13,14,17,21,29,30
	exc	\n, 1
	.endr

fault_common:
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	kern_fault
1:	cli
	hlt
	jmp	1b

	.section .rodata
	.balign	8
	.globl	exc_stubs
exc_stubs:
	.quad	exc_0, exc_1, exc_2, exc_3, exc_4, exc_5, isr_ud, exc_7
	.quad	exc_8, exc_9, exc_10, exc_11, exc_12, exc_13, exc_14, exc_15
	.quad	exc_16, exc_17, exc_18, exc_19, exc_20, exc_21, exc_22, exc_23
	.quad	exc_24, exc_25, exc_26, exc_27, exc_28, exc_29, exc_30, exc_31

	.data
	.balign	16
/* Flat segments as in vmrun_boot.h, then one TSS descriptor per CPU. */
gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08 kernel code, 64-bit */
	.quad	0x00cf93000000ffff	/* 0x10 kernel data */
	.quad	0x00cff3000000ffff	/* 0x18 user data */
	.quad	0x00affb000000ffff	/* 0x20 user code, 64-bit */
	.fill	2 * REF_MAX_CPUS, 8, 0
gdt_end:

	.balign	8
	.word	0, 0, 0
gdt_ptr:
	.word	gdt_end - gdt - 1
	.quad	gdt

	.word	0, 0, 0
idt_ptr:
	.word	4095
	.quad	idt

/*
 * Identity map of the low 4 GiB (RAM and the MMIO window) in 2 MiB pages,
 * built by the assembler so that no instruction builds it at run time.
 * A and D are preset: the CPU never writes to these tables.
 */
	.balign	4096
pml4:
	.quad	pdpt + PT_FLAGS
	.fill	511, 8, 0
pdpt:
	.quad	pd + PT_FLAGS
	.quad	pd + 0x1000 + PT_FLAGS
	.quad	pd + 0x2000 + PT_FLAGS
	.quad	pd + 0x3000 + PT_FLAGS
	.fill	508, 8, 0
pd:
	.set	pde, 0
	.rept	2048
	.quad	(pde << 21) | PDE_FLAGS
	.set	pde, pde + 1
	.endr

	.bss
	.balign	4096
	.globl	idt
idt:
	.skip	4096
tss:
	.skip	REF_MAX_CPUS * TSS_SIZE
	.balign	4096
	.globl	kstacks
kstacks:
	.skip	REF_MAX_CPUS << REF_KSTACK_SHIFT
ustacks:
	.skip	REF_MAX_CPUS << REF_USTACK_SHIFT

	.section .note.GNU-stack, "", @progbits
