/* SPDX-License-Identifier: MIT */
/*
 * A tiny 32-bit kernel for the loader tests, built twice: as a Multiboot
 * v1 image (flat binary, address fields in the header) and as an ELF32
 * with a PVH entry note. It prints one line on COM1, with the boot magic
 * it found in EAX, and powers off (port 0x604).
 */
	.code32
	.section .text
	.globl	_start
_start:
#ifdef MULTIBOOT
	jmp	entry
	.balign	4
mb_header:
	.long	0x1badb002
	.long	0x00010003		/* page align, mem info, addresses */
	.long	-(0x1badb002 + 0x00010003)
	.long	mb_header		/* header_addr */
	.long	_start			/* load_addr */
	.long	_edata			/* load_end_addr */
	.long	_end			/* bss_end_addr */
	.long	entry			/* entry_addr */
#endif
entry:
	movl	$stack_top, %esp	/* neither protocol gives a stack */
#ifdef CRASH
	ud2				/* no IDT: #UD, #DF, triple fault */
#endif
	movl	%eax, %ebp		/* boot magic */
	movl	$msg, %esi
	call	puts
#ifdef MULTIBOOT
	cmpl	$0x2badb002, %ebp
	jne	bad
	/* The command line, from multiboot_info (flag bit 2). */
	testl	$4, (%ebx)
	jz	bad
	movl	16(%ebx), %esi
#else
	cmpl	$0x336ec578, (%ebx)	/* hvm_start_info magic */
	jne	bad
	movl	24(%ebx), %esi		/* cmdline_paddr (low half) */
#endif
	call	puts
	movl	$nl, %esi
	call	puts
#ifdef RESET
	movb	$0xfe, %al		/* i8042 reset instead of power off */
	outb	%al, $0x64
#endif
	movw	$0x604, %dx
	movw	$0x2000, %ax
	outw	%ax, %dx
1:	cli
	hlt
	jmp	1b
bad:
	movl	$badmsg, %esi
	call	puts
	movb	$0xfe, %al		/* reset: the test sees exit code 3 */
	outb	%al, $0x64
	jmp	1b

/* Writes the NUL-terminated string at ESI to COM1. */
puts:
	movw	$0x3f8, %dx
2:	lodsb
	testb	%al, %al
	jz	3f
	outb	%al, %dx
	jmp	2b
3:	ret

	.section .data
#ifdef MULTIBOOT
msg:	.asciz	"hello from multiboot: "
#else
msg:	.asciz	"hello from pvh: "
#endif
nl:	.asciz	"\n"
badmsg:	.asciz	"bad boot magic\n"

	.section .bss
	.balign	16
	.skip	1024
stack_top:

#ifndef MULTIBOOT
	.section .note.Xen, "a"
	.balign	4
	.long	4			/* name size */
	.long	4			/* desc size */
	.long	18			/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	entry
#endif
