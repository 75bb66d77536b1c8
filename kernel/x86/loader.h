/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_LOADER_H
#define VMM_X86_LOADER_H

/*
 * Guest kernel images. Parsing is separate from loading so that a
 * malformed image is refused, with a message naming what is wrong, before
 * anything is written to guest memory; the parser treats the file as
 * hostile (every offset and size is checked against the file and against
 * guest RAM).
 *
 * Supported: ELF64 with the vmrun note (direct 64-bit entry, see
 * vmrun_boot.h), ELF32/ELF64 with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY,
 * 32-bit entry with EBX = hvm_start_info), and Multiboot v1 images (ELF32
 * or the header's address fields; 32-bit entry with EAX = 0x2badb002, EBX
 * = multiboot_info), and Linux bzImages (boot protocol 2.12 or later:
 * the 64-bit entry, RSI = boot_params; see Documentation/x86/boot.rst).
 */

#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm_mem;

enum kernel_entry {
	KERNEL_ENTRY_VMRUN64,	/* direct 64-bit entry (vmrun note) */
	KERNEL_ENTRY_PVH,	/* 32-bit protected mode, hvm_start_info */
	KERNEL_ENTRY_MULTIBOOT, /* 32-bit protected mode, multiboot_info */
	KERNEL_ENTRY_LINUX64,	/* bzImage: 64-bit entry, RSI = boot_params */
};

/* What a bzImage's setup header says (KERNEL_ENTRY_LINUX64 only). */
struct linux_setup {
	uint64_t hdr_off, hdr_len; /* the setup header in the file */
	uint16_t version;	   /* boot protocol, 0x020c = 2.12 */
	uint32_t cmdline_max;	   /* bytes, without the NUL */
	uint32_t initrd_max;	   /* highest address an initrd may end at */
	uint64_t load;		   /* where the protected-mode kernel goes */
	uint64_t init_size;	   /* memory from @load it needs to boot */
	/* The compressed vmlinux inside (see kernel_unpack()). */
	uint64_t payload_off, payload_len; /* in the file */
	uint32_t payload_size;		   /* decompressed, as it says */
	const char *payload_fmt;	   /* "xz", "zstd", "gzip", ... */
};

#define KERNEL_MAX_SEGS 16

struct kernel_seg {
	uint64_t paddr;	 /* where it goes in guest memory */
	uint64_t filesz; /* bytes from the file ... */
	uint64_t memsz;	 /* ... then zeroes up to this size */
	uint64_t offset; /* file offset */
};

struct kernel_image {
	const uint8_t *data; /* the file (borrowed) */
	size_t size;
	enum kernel_entry kind;
	uint64_t entry; /* entry address for @kind */
	unsigned int nr_segs;
	struct kernel_seg segs[KERNEL_MAX_SEGS];
	uint64_t lo, hi; /* lowest and highest+1 guest address used */
	struct linux_setup bz;
};

/*
 * Parses @data (@size bytes). On failure returns -EINVAL (or -ENOTSUP for
 * a well-formed image of an unsupported kind) and writes a one-line
 * reason into @err.
 */
int kernel_parse(const void *data, size_t size, struct kernel_image *img,
		 char *err, size_t errlen) __must_check;

/*
 * Copies the parsed image into guest memory (through mem_write, so the
 * pages are marked). Every segment must lie in RAM between @ram_lo and
 * @ram_hi; returns -ERANGE otherwise, with nothing written.
 */
int kernel_load(struct vm_mem *mem, const struct kernel_image *img,
		uint64_t ram_lo, uint64_t ram_hi, char *err,
		size_t errlen) __must_check;

const char *kernel_entry_name(enum kernel_entry kind);

/*
 * Checks that @data looks like a Linux initramfs: cpio "newc" archives
 * (walked to their TRAILER!!!, so a truncated one is caught) or a
 * compressed one (by its magic; its contents are the kernel's to check),
 * possibly concatenated, as Debian's are. -EINVAL with a reason if not.
 */
int initrd_check(const void *data, size_t size, char *err,
		 size_t errlen) __must_check;

/*
 * The vmlinux ELF compressed inside a parsed bzImage, decompressed on the
 * host into a fresh anonymous mapping (*@out, *@outlen bytes; the caller
 * munmap()s it). Booting that ELF through its PVH entry skips the
 * kernel's own decompressor, a single-threaded xz pass that is the
 * longest step of a stock kernel's early boot. xz (liblzma), zstd and
 * lz4 payloads are unpacked; -ENOTSUP for the other formats Linux knows,
 * -EINVAL (with the decoder's reason) for a corrupt or truncated one, or
 * one that decompresses to another size than its trailer says.
 */
int kernel_unpack(const struct kernel_image *img, void **out, size_t *outlen,
		  char *err, size_t errlen) __must_check;

#endif /* VMM_X86_LOADER_H */
