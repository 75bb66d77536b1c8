/* SPDX-License-Identifier: MIT */
#include "kernel/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "kernel/x86/vmrun_boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MB1_MAGIC 0x1badb002u
#define MB1_SEARCH 8192
#define MB1_FLAG_AOUT_KLUDGE (1u << 16)

const char *kernel_entry_name(enum kernel_entry kind)
{
	switch (kind) {
	case KERNEL_ENTRY_VMRUN64:
		return "vmrun 64-bit entry";
	case KERNEL_ENTRY_PVH:
		return "PVH";
	case KERNEL_ENTRY_MULTIBOOT:
		return "Multiboot v1";
	case KERNEL_ENTRY_LINUX64:
		return "Linux bzImage 64-bit entry";
	}
	return "?";
}

/* True if [off, off + len) lies inside a file of @size bytes. */
static bool in_file(size_t size, uint64_t off, uint64_t len)
{
	return off <= size && len <= size - off;
}

static int add_seg(struct kernel_image *img, uint64_t paddr, uint64_t off,
		   uint64_t filesz, uint64_t memsz, char *err, size_t errlen)
{
	struct kernel_seg *s;

	if (!memsz)
		return 0;
	if (img->nr_segs == KERNEL_MAX_SEGS)
		return err_printf(err, errlen, -EINVAL,
				  "more than %d loadable segments",
				  KERNEL_MAX_SEGS);
	if (filesz > memsz)
		return err_printf(
			err, errlen, -EINVAL,
			"segment at %#llx: file size %#llx exceeds memory size %#llx",
			(unsigned long long)paddr, (unsigned long long)filesz,
			(unsigned long long)memsz);
	if (!in_file(img->size, off, filesz))
		return err_printf(
			err, errlen, -EINVAL,
			"segment at %#llx: bytes %#llx+%#llx lie outside the %zu-byte file",
			(unsigned long long)paddr, (unsigned long long)off,
			(unsigned long long)filesz, img->size);
	if (paddr + memsz < paddr || paddr + memsz > (1ULL << 46))
		return err_printf(
			err, errlen, -EINVAL,
			"segment at %#llx of %#llx bytes is outside the physical address space",
			(unsigned long long)paddr, (unsigned long long)memsz);
	s = &img->segs[img->nr_segs++];
	s->paddr = paddr;
	s->offset = off;
	s->filesz = filesz;
	s->memsz = memsz;
	if (img->nr_segs == 1 || paddr < img->lo)
		img->lo = paddr;
	if (paddr + memsz > img->hi)
		img->hi = paddr + memsz;
	return 0;
}

/* Reads a note's descriptor as a little-endian number of 4 or 8 bytes. */
static uint64_t note_value(const uint8_t *desc, uint32_t len)
{
	uint64_t v = 0;

	memcpy(&v, desc, len >= 8 ? 8 : 4);
	return v;
}

/*
 * Walks the notes in [off, off + len) of the file and records a vmrun or
 * PVH entry. Returns 0 or a negative error for malformed notes.
 */
static int scan_notes(struct kernel_image *img, uint64_t off, uint64_t len,
		      uint64_t *vmrun, uint64_t *pvh, char *err, size_t errlen)
{
	const uint8_t *p, *end;

	if (!in_file(img->size, off, len))
		return err_printf(err, errlen, -EINVAL,
				  "note segment lies outside the file");
	p = img->data + off;
	end = p + len;
	while ((size_t)(end - p) >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		uint64_t nsz, dsz;
		const uint8_t *name, *desc;

		memcpy(&nh, p, sizeof(nh));
		nsz = ALIGN_UP((uint64_t)nh.n_namesz, 4);
		dsz = ALIGN_UP((uint64_t)nh.n_descsz, 4);
		if (nsz + dsz > (uint64_t)(end - p) - sizeof(nh))
			return err_printf(err, errlen, -EINVAL,
					  "truncated ELF note");
		name = p + sizeof(nh);
		desc = name + nsz;
		if (nh.n_namesz == 6 && !memcmp(name, VMRUN_NOTE_NAME, 6) &&
		    nh.n_type == VMRUN_NOTE_ENTRY64) {
			if (nh.n_descsz != 8)
				return err_printf(
					err, errlen, -EINVAL,
					"vmrun note has a %u-byte descriptor, expected 8",
					nh.n_descsz);
			*vmrun = note_value(desc, 8);
		} else if (nh.n_namesz == 4 && !memcmp(name, "Xen", 4) &&
			   nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
			if (nh.n_descsz != 4 && nh.n_descsz != 8)
				return err_printf(
					err, errlen, -EINVAL,
					"PVH note has a %u-byte descriptor",
					nh.n_descsz);
			*pvh = note_value(desc, nh.n_descsz);
		}
		p = desc + dsz;
	}
	return 0;
}

/* The parts of an ELF32 or ELF64 header the loader needs. */
struct elf_info {
	bool is64;
	uint64_t entry, phoff;
	unsigned int phnum;
};

/* Validates the ELF header of @img as class @is64; fills @ei. */
static int elf_header(const struct kernel_image *img, bool is64,
		      struct elf_info *ei, char *err, size_t errlen)
{
	size_t ehsize = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsize = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	unsigned int machine, phentsize;

	if (img->size < ehsize)
		return err_printf(err, errlen, -EINVAL, "truncated ELF header");
	if (is64) {
		Elf64_Ehdr eh;

		memcpy(&eh, img->data, sizeof(eh));
		machine = eh.e_machine;
		phentsize = eh.e_phentsize;
		ei->entry = eh.e_entry;
		ei->phoff = eh.e_phoff;
		ei->phnum = eh.e_phnum;
	} else {
		Elf32_Ehdr eh;

		memcpy(&eh, img->data, sizeof(eh));
		machine = eh.e_machine;
		phentsize = eh.e_phentsize;
		ei->entry = eh.e_entry;
		ei->phoff = eh.e_phoff;
		ei->phnum = eh.e_phnum;
	}
	ei->is64 = is64;
	if (img->data[EI_DATA] != ELFDATA2LSB ||
	    machine != (is64 ? EM_X86_64 : EM_386))
		return err_printf(err, errlen, -ENOTSUP,
				  "ELF%s image is not little-endian %s",
				  is64 ? "64" : "32", is64 ? "x86-64" : "i386");
	if (phentsize != phsize || !ei->phnum)
		return err_printf(
			err, errlen, -EINVAL,
			"ELF program header table missing or malformed");
	if (!in_file(img->size, ei->phoff, (uint64_t)ei->phnum * phsize))
		return err_printf(err, errlen, -EINVAL,
				  "ELF program headers lie outside the file");
	return 0;
}

/*
 * Records every PT_LOAD segment and scans every PT_NOTE for the vmrun and
 * PVH entries. Called after elf_header() checked the table's bounds.
 */
static int elf_walk(struct kernel_image *img, const struct elf_info *ei,
		    uint64_t *vmrun, uint64_t *pvh, char *err, size_t errlen)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < ei->phnum && !ret; i++) {
		uint64_t type, off, paddr, filesz, memsz;

		if (ei->is64) {
			Elf64_Phdr ph;

			memcpy(&ph, img->data + ei->phoff + i * sizeof(ph),
			       sizeof(ph));
			type = ph.p_type;
			off = ph.p_offset;
			paddr = ph.p_paddr;
			filesz = ph.p_filesz;
			memsz = ph.p_memsz;
		} else {
			Elf32_Phdr ph;

			memcpy(&ph, img->data + ei->phoff + i * sizeof(ph),
			       sizeof(ph));
			type = ph.p_type;
			off = ph.p_offset;
			paddr = ph.p_paddr;
			filesz = ph.p_filesz;
			memsz = ph.p_memsz;
		}
		if (type == PT_LOAD)
			ret = add_seg(img, paddr, off, filesz, memsz, err,
				      errlen);
		else if (type == PT_NOTE)
			ret = scan_notes(img, off, filesz, vmrun, pvh, err,
					 errlen);
	}
	if (!ret && !img->nr_segs)
		return err_printf(err, errlen, -EINVAL,
				  "ELF image has nothing to load");
	return ret;
}

static int parse_elf64(struct kernel_image *img, char *err, size_t errlen)
{
	uint64_t vmrun = 0, pvh = 0;
	struct elf_info ei;
	int ret;

	ret = elf_header(img, true, &ei, err, errlen);
	if (!ret)
		ret = elf_walk(img, &ei, &vmrun, &pvh, err, errlen);
	if (ret < 0)
		return ret;
	if (vmrun) {
		img->kind = KERNEL_ENTRY_VMRUN64;
		img->entry = vmrun;
	} else if (pvh) {
		img->kind = KERNEL_ENTRY_PVH;
		img->entry = pvh;
	} else {
		return err_printf(
			err, errlen, -ENOTSUP,
			"ELF64 image has neither a vmrun nor a PVH entry note (a plain ELF64 kernel cannot be entered)");
	}
	return 0;
}

static int parse_elf32(struct kernel_image *img, uint64_t *pvh, char *err,
		       size_t errlen)
{
	uint64_t vmrun = 0;
	struct elf_info ei;
	int ret;

	ret = elf_header(img, false, &ei, err, errlen);
	if (!ret)
		ret = elf_walk(img, &ei, &vmrun, pvh, err, errlen);
	if (ret < 0)
		return ret;
	img->entry = ei.entry;
	return 0;
}

/* Finds a Multiboot v1 header in the first 8 KiB; returns its offset. */
static long find_mb1(const struct kernel_image *img, uint32_t hdr[8])
{
	size_t off, lim = MIN(img->size, (size_t)MB1_SEARCH);

	for (off = 0; off + 12 <= lim; off += 4) {
		memcpy(hdr, img->data + off, 12);
		if (hdr[0] == MB1_MAGIC && hdr[0] + hdr[1] + hdr[2] == 0) {
			memset(hdr + 3, 0, 5 * 4);
			memcpy(hdr + 3, img->data + off + 12,
			       MIN((size_t)20, img->size - off - 12));
			return (long)off;
		}
	}
	return -1;
}

static int parse_mb1_kludge(struct kernel_image *img, long off,
			    const uint32_t h[8], char *err, size_t errlen)
{
	/* header_addr load_addr load_end_addr bss_end_addr entry_addr */
	uint32_t header_addr = h[3], load_addr = h[4], load_end = h[5];
	uint32_t bss_end = h[6], entry = h[7];
	uint64_t file_off, filesz, memsz;

	if ((size_t)off + 32 > img->size)
		return err_printf(
			err, errlen, -EINVAL,
			"Multiboot header address fields are truncated");
	if (header_addr < load_addr || header_addr - load_addr > (uint32_t)off)
		return err_printf(
			err, errlen, -EINVAL,
			"Multiboot header_addr %#x / load_addr %#x are inconsistent",
			header_addr, load_addr);
	file_off = (uint64_t)off - (header_addr - load_addr);
	filesz = load_end ? (uint64_t)load_end - load_addr :
			    img->size - file_off;
	if (load_end && load_end < load_addr)
		return err_printf(err, errlen, -EINVAL,
				  "Multiboot load_end_addr below load_addr");
	memsz = bss_end ? (uint64_t)bss_end - load_addr : filesz;
	if (bss_end && bss_end < load_addr + filesz)
		return err_printf(
			err, errlen, -EINVAL,
			"Multiboot bss_end_addr below the loaded image");
	img->entry = entry;
	return add_seg(img, load_addr, file_off, filesz, memsz, err, errlen);
}

/* The Linux x86 boot protocol's setup header (Documentation/x86/boot.rst). */
#define BZ_SETUP_SECTS 0x1f1
#define BZ_SYSSIZE 0x1f4
#define BZ_BOOT_FLAG 0x1fe
#define BZ_JUMP 0x200
#define BZ_HEADER 0x202
#define BZ_VERSION 0x206
#define BZ_LOADFLAGS 0x211
#define BZ_INITRD_MAX 0x22c
#define BZ_ALIGN 0x230
#define BZ_XLOADFLAGS 0x236
#define BZ_CMDLINE_SIZE 0x238
#define BZ_PAYLOAD_OFF 0x248
#define BZ_PAYLOAD_LEN 0x24c
#define BZ_PREF_ADDR 0x258
#define BZ_INIT_SIZE 0x260
#define BZ_HDR_END 0x290     /* boot_params: edd_mbr_sig_buffer follows */
#define BZ_MAGIC 0x53726448u /* "HdrS" */
#define BZ_LOADED_HIGH 0x01
#define BZ_XLF_KERNEL_64 0x01
#define BZ_ENTRY64_OFF 0x200

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static bool is_bzimage(const struct kernel_image *img)
{
	return img->size >= BZ_HDR_END && img->data[BZ_BOOT_FLAG] == 0x55 &&
	       img->data[BZ_BOOT_FLAG + 1] == 0xaa &&
	       rd32(img->data + BZ_HEADER) == BZ_MAGIC;
}

/* The compression formats Linux unpacks a kernel or initramfs from, by magic. */
static const char *compressed_name(const uint8_t *p, size_t left)
{
	static const struct {
		const char *name;
		uint8_t magic[6];
		unsigned int len;
	} fmts[] = {
		{ "gzip", { 0x1f, 0x8b }, 2 },
		{ "xz", { 0xfd, '7', 'z', 'X', 'Z', 0 }, 6 },
		{ "zstd", { 0x28, 0xb5, 0x2f, 0xfd }, 4 },
		{ "lz4", { 0x02, 0x21, 0x4c, 0x18 }, 4 },
		{ "lzma", { 0x5d, 0, 0 }, 3 },
		{ "bzip2", { 'B', 'Z', 'h' }, 3 },
		{ "lzo", { 0x89, 'L', 'Z', 'O' }, 4 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(fmts); i++)
		if (left >= fmts[i].len &&
		    !memcmp(p, fmts[i].magic, fmts[i].len))
			return fmts[i].name;
	return NULL;
}

/*
 * The compressed kernel inside: its format must be one the kernel's
 * decompressor knows, and it ends with the decompressed size (the build
 * appends it). A truncated or garbled image fails here, not in the guest,
 * where the decompressor would halt the CPU with interrupts off. (What
 * these checks cannot see is damage in the middle of the stream; the
 * decompressor's own check finds that, in the guest.)
 */
static int bz_payload(struct kernel_image *img, uint64_t pm_off,
		      uint64_t pm_len, uint64_t init_size, char *err,
		      size_t errlen)
{
	uint64_t off = rd32(img->data + BZ_PAYLOAD_OFF);
	uint64_t len = rd32(img->data + BZ_PAYLOAD_LEN);
	const uint8_t *p;
	const char *fmt;
	uint32_t out;

	if (len < 16 || off > pm_len || len > pm_len - off)
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage payload %#llx+%#llx lies outside its %#llx-byte kernel",
			(unsigned long long)off, (unsigned long long)len,
			(unsigned long long)pm_len);
	p = img->data + pm_off + off;
	fmt = compressed_name(p, len);
	if (!fmt)
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage payload is in no compression format Linux uses (starts %02x %02x %02x %02x): the file is corrupt",
			p[0], p[1], p[2], p[3]);
	out = rd32(p + len - 4);
	if (!out || out > init_size)
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage payload (%s) claims %u bytes decompressed, but the kernel needs only %#llx to boot: the file is corrupt or truncated",
			fmt, out, (unsigned long long)init_size);
	/* xz: the stream footer ends with "YZ". */
	if (!strcmp(fmt, "xz") && memcmp(p + len - 6, "YZ", 2))
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage payload (xz) has no stream footer: the file is corrupt or truncated");
	img->bz.payload_off = pm_off + off;
	img->bz.payload_len = len;
	img->bz.payload_size = out;
	img->bz.payload_fmt = fmt;
	return 0;
}

static int parse_bzimage(struct kernel_image *img, char *err, size_t errlen)
{
	const uint8_t *d = img->data;
	struct linux_setup *ls = &img->bz;
	uint16_t version, xlf;
	uint64_t setup, pm_len, align;
	unsigned int sects = d[BZ_SETUP_SECTS] ? d[BZ_SETUP_SECTS] : 4;
	int ret;

	memcpy(&version, d + BZ_VERSION, 2);
	memcpy(&xlf, d + BZ_XLOADFLAGS, 2);
	if (version < 0x020c)
		return err_printf(
			err, errlen, -ENOTSUP,
			"Linux boot protocol %u.%02u: vmrun needs 2.12 or later (the 64-bit entry)",
			version >> 8, version & 0xff);
	if (!(d[BZ_LOADFLAGS] & BZ_LOADED_HIGH))
		return err_printf(err, errlen, -ENOTSUP,
				  "a zImage (loaded low): only bzImages boot");
	if (!(xlf & BZ_XLF_KERNEL_64))
		return err_printf(
			err, errlen, -ENOTSUP,
			"bzImage has no 64-bit entry (a 32-bit kernel): vmrun boots x86-64 kernels");
	ls->hdr_off = BZ_SETUP_SECTS;
	ls->hdr_len = BZ_HEADER + d[BZ_JUMP + 1] - BZ_SETUP_SECTS;
	setup = (sects + 1) * 512ULL;
	if (ls->hdr_off + ls->hdr_len > BZ_HDR_END || setup >= img->size)
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage setup header (%llu bytes) or setup code (%u sectors) is malformed for a %zu-byte file",
			(unsigned long long)ls->hdr_len, sects, img->size);
	pm_len = rd32(d + BZ_SYSSIZE) * 16ULL;
	if (!pm_len || pm_len > img->size - setup)
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage is truncated: its header promises %llu bytes of kernel after the setup code, the file holds %llu",
			(unsigned long long)pm_len,
			(unsigned long long)(img->size - setup));
	ls->version = version;
	ls->cmdline_max = rd32(d + BZ_CMDLINE_SIZE);
	ls->initrd_max = rd32(d + BZ_INITRD_MAX);
	memcpy(&ls->load, d + BZ_PREF_ADDR, 8);
	ls->init_size = rd32(d + BZ_INIT_SIZE);
	align = rd32(d + BZ_ALIGN);
	if (!ls->load)
		ls->load = 0x1000000;
	if (ls->init_size < pm_len || ls->load < 0x100000 ||
	    ls->load + ls->init_size > (1ULL << 32) ||
	    (align && (align & (align - 1))) || (align && ls->load % align))
		return err_printf(
			err, errlen, -EINVAL,
			"bzImage asks for %#llx bytes at %#llx (alignment %#llx): not a layout vmrun can give it",
			(unsigned long long)ls->init_size,
			(unsigned long long)ls->load,
			(unsigned long long)align);
	ret = bz_payload(img, setup, pm_len, ls->init_size, err, errlen);
	if (ret < 0)
		return ret;
	/* The decompressor works in place up to init_size: no zero fill,
	 * guest RAM starts zero and it clears its own BSS. */
	ret = add_seg(img, ls->load, setup, pm_len, pm_len, err, errlen);
	if (ret < 0)
		return ret;
	img->hi = ls->load + ls->init_size;
	img->kind = KERNEL_ENTRY_LINUX64;
	img->entry = ls->load + BZ_ENTRY64_OFF;
	return 0;
}

int kernel_parse(const void *data, size_t size, struct kernel_image *img,
		 char *err, size_t errlen)
{
	static const uint8_t elfmag[4] = { 0x7f, 'E', 'L', 'F' };
	uint32_t mbh[8];
	uint64_t pvh = 0;
	long mboff;
	int ret;

	memset(img, 0, sizeof(*img));
	img->data = data;
	img->size = size;
	if (err && errlen)
		err[0] = 0;
	if (size < 64)
		return err_printf(err, errlen, -EINVAL,
				  "file too small to be a kernel (%zu bytes)",
				  size);

	if (is_bzimage(img))
		return parse_bzimage(img, err, errlen);
	mboff = find_mb1(img, mbh);
	if (!memcmp(data, elfmag, 4) && img->data[EI_CLASS] == ELFCLASS64 &&
	    (mboff < 0 || !(mbh[1] & MB1_FLAG_AOUT_KLUDGE)))
		return parse_elf64(img, err, errlen);

	if (mboff >= 0) {
		/* Flags 0-2 (alignment, memory info, video) are requests we
		 * meet or may ignore: modules are page aligned, the memory
		 * fields are always given, there is no framebuffer. */
		if (mbh[1] & MB1_FLAG_AOUT_KLUDGE) {
			ret = parse_mb1_kludge(img, mboff, mbh, err, errlen);
		} else if (!memcmp(data, elfmag, 4) &&
			   img->data[EI_CLASS] == ELFCLASS32) {
			ret = parse_elf32(img, &pvh, err, errlen);
		} else {
			ret = err_printf(
				err, errlen, -EINVAL,
				"Multiboot header without address fields in a non-ELF32 file");
		}
		if (ret < 0)
			return ret;
		img->kind = KERNEL_ENTRY_MULTIBOOT;
		return 0;
	}
	if (!memcmp(data, elfmag, 4) && img->data[EI_CLASS] == ELFCLASS32) {
		ret = parse_elf32(img, &pvh, err, errlen);
		if (ret < 0)
			return ret;
		if (!pvh)
			return err_printf(
				err, errlen, -ENOTSUP,
				"ELF32 image has neither a Multiboot header nor a PVH note");
		img->kind = KERNEL_ENTRY_PVH;
		img->entry = pvh;
		return 0;
	}
	if (!memcmp(data, elfmag, 4))
		return err_printf(err, errlen, -EINVAL,
				  "ELF image of unknown class %u",
				  img->data[EI_CLASS]);
	return err_printf(
		err, errlen, -EINVAL,
		"not a kernel vmrun can boot: no ELF header, no Linux bzImage header and no Multiboot header in the first 8 KiB");
}

int kernel_load(struct vm_mem *mem, const struct kernel_image *img,
		uint64_t ram_lo, uint64_t ram_hi, char *err, size_t errlen)
{
	unsigned int i;
	int ret;

	for (i = 0; i < img->nr_segs; i++) {
		const struct kernel_seg *s = &img->segs[i];

		if (s->paddr < ram_lo || s->paddr + s->memsz > ram_hi ||
		    !mem_range_ok(mem, s->paddr, s->memsz))
			return err_printf(
				err, errlen, -ERANGE,
				"kernel segment [%#llx, %#llx) is outside guest RAM [%#llx, %#llx) or crosses a hole",
				(unsigned long long)s->paddr,
				(unsigned long long)(s->paddr + s->memsz),
				(unsigned long long)ram_lo,
				(unsigned long long)ram_hi);
	}
	if (img->entry < img->lo || img->entry >= img->hi)
		return err_printf(
			err, errlen, -EINVAL,
			"entry point %#llx lies outside the loaded image [%#llx, %#llx)",
			(unsigned long long)img->entry,
			(unsigned long long)img->lo,
			(unsigned long long)img->hi);
	for (i = 0; i < img->nr_segs; i++) {
		const struct kernel_seg *s = &img->segs[i];

		ret = mem_write(mem, s->paddr, img->data + s->offset,
				s->filesz);
		if (!ret && s->memsz > s->filesz)
			ret = mem_fill(mem, s->paddr + s->filesz, 0,
				       s->memsz - s->filesz);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "writing segment %u: %s", i,
					  strerror(-ret));
	}
	return 0;
}

/* An 8-digit hex field of a newc header; -1 if it is not hex. */
static long long cpio_hex(const uint8_t *p)
{
	long long v = 0;
	unsigned int i;

	for (i = 0; i < 8; i++) {
		int c = p[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

#define CPIO_HDR 110

int initrd_check(const void *data, size_t size, char *err, size_t errlen)
{
	const uint8_t *d = data;
	size_t off = 0;
	unsigned int archives = 0;

	while (off < size) {
		const char *comp;

		if (!d[off]) { /* padding between archives */
			off++;
			continue;
		}
		comp = compressed_name(d + off, size - off);
		if (comp)
			return 0; /* the kernel checks the rest as it unpacks */
		if (size - off < 6 || (memcmp(d + off, "070701", 6) &&
				       memcmp(d + off, "070702", 6)))
			return err_printf(
				err, errlen, -EINVAL,
				"not an initramfs: byte %zu starts neither a cpio (newc) archive nor a compressed one",
				off);
		/* Entries up to the trailer. */
		for (;;) {
			long long namesize, filesize;
			size_t next;

			if (size - off < CPIO_HDR ||
			    (memcmp(d + off, "070701", 6) &&
			     memcmp(d + off, "070702", 6)))
				return err_printf(
					err, errlen, -EINVAL,
					"initramfs is truncated or corrupt: no cpio header at byte %zu",
					off);
			namesize = cpio_hex(d + off + 94);
			filesize = cpio_hex(d + off + 54);
			if (namesize <= 0 || filesize < 0)
				return err_printf(
					err, errlen, -EINVAL,
					"initramfs is corrupt: bad cpio header at byte %zu",
					off);
			next = ALIGN_UP(off + CPIO_HDR + (size_t)namesize, 4);
			if (next > size || (size_t)filesize > size - next)
				return err_printf(
					err, errlen, -EINVAL,
					"initramfs is truncated: the cpio entry at byte %zu runs past the end of the file",
					off);
			if (namesize == 11 &&
			    !memcmp(d + off + CPIO_HDR, "TRAILER!!!", 11)) {
				off = next + (size_t)filesize;
				break;
			}
			off = ALIGN_UP(next + (size_t)filesize, 4);
		}
		archives++;
	}
	if (!archives)
		return err_printf(err, errlen, -EINVAL,
				  "initramfs holds nothing but zeroes");
	return 0;
}
