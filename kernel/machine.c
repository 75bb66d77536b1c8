/* SPDX-License-Identifier: MIT */
#include "kernel/machine.h"
#include "kernel/machine_priv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kernel/dev/dev.h"
#include "kernel/dev/harness.h"
#include "kernel/dirty.h"
#include "kernel/util/bitmap.h"
#include "kernel/dev/dev_table.h"
#include "kernel/iotrap.h"
#include "kernel/dev/serial.h"
#include "kernel/dev/virtio.h"
#include "kernel/irq.h"
#include "kernel/mem.h"
#include "kernel/netif.h"
#include "kernel/util/log.h"
#include "kernel/x86/acpi.h"
#include "kernel/x86/boot64.h"
#include "kernel/x86/loader.h"
#include "kernel/x86/vmrun_boot.h"

/* Low memory that vmrun uses for boot structures (below 1 MiB). */
#define LOW_GDT 0x1000ULL
#define LOW_BOOTINFO 0x3000ULL
#define LOW_CMDLINE 0x4000ULL
#define LOW_CMDLINE_MAX 0x1000ULL
#define LOW_ZEROPAGE 0x7000ULL /* Linux boot_params */
#define LOW_PT 0x10000ULL
#define LOW_PT_SIZE 0x40000ULL
#define LOW_STACKS 0x50000ULL
#define LOW_STACK_SIZE 0x4000ULL
#define LOW_ACPI 0xe0000ULL /* ACPI tables, in the BIOS area */
#define LOW_ACPI_SIZE 0x20000ULL
#define LOW_RESERVED 0x9fc00ULL /* [here, 1 MiB): reserved, as on a PC */
#define LOW_END 0x100000ULL

#define RAM_LOW_MAX VMRUN_MMIO_HOLE
#define RAM_HIGH_BASE (4ULL << 30)

/* The GSIs given to virtio-mmio devices 0..7 (free ISA lines). */
static const uint32_t virtio_gsis[] = { 5, 6, 7, 9, 10, 11, 12, 14 };

static void cfg_free(struct machine_config *c)
{
	unsigned int i;

	for (i = 0; i < c->nr_disks; i++)
		free((void *)(uintptr_t)c->disks[i]);
	for (i = 0; i < c->nr_nets; i++)
		free((void *)(uintptr_t)c->nets[i]);
	free((void *)(uintptr_t)c->cmdline);
	free((void *)(uintptr_t)c->console);
	memset(c, 0, sizeof(*c));
}

/* Keeps what the machine is built from, without the kernel image. */
static int cfg_copy(struct machine_config *d, const struct machine_config *s)
{
	unsigned int i;

	*d = *s;
	d->kernel = NULL;
	d->kernel_size = 0;
	d->kernel_name = NULL;
	d->initrd = NULL;
	d->initrd_size = 0;
	d->initrd_name = NULL;
	d->nr_disks = d->nr_nets = 0;
	d->cmdline = s->cmdline ? strdup(s->cmdline) : NULL;
	d->console = strdup(s->console ? s->console : "stdio");
	if ((s->cmdline && !d->cmdline) || !d->console)
		goto nomem;
	for (i = 0; i < s->nr_disks; i++) {
		if (!(d->disks[i] = strdup(s->disks[i])))
			goto nomem;
		d->nr_disks++;
	}
	for (i = 0; i < s->nr_nets; i++) {
		if (!(d->nets[i] = strdup(s->nets[i])))
			goto nomem;
		d->nr_nets++;
	}
	return 0;
nomem:
	cfg_free(d);
	return -ENOMEM;
}

static int add_dev(struct machine *m, const struct dev_ops *ops,
		   const char *conf, char *err, size_t errlen)
{
	struct dev *d;
	int ret;

	if (m->nr_devs == MACHINE_MAX_DEVS)
		return err_printf(err, errlen, -ENOSPC, "too many devices");
	ret = ops->init(m->vm, conf, &d);
	if (ret < 0)
		return err_printf(err, errlen, ret, "device %s (%s): %s",
				  ops->name, conf ? conf : "default",
				  strerror(-ret));
	m->devs[m->nr_devs++] = d;
	return 0;
}

/*
 * Turns a --net spec into the virtio-net conf: "tap:NAME[,bridge=BR]" or
 * "fd:N" (a connected SOCK_SEQPACKET or SOCK_DGRAM socket: no privileges
 * needed). @tap and @bridge (16 bytes each) receive the names, if any.
 */
static int net_conf(const char *spec, char *conf, size_t len, char *tap,
		    char *bridge, char *err, size_t errlen)
{
	const char *name = spec + 4, *comma;
	size_t nlen;
	char *end;
	long fd;

	tap[0] = bridge[0] = 0;
	if (!strncmp(spec, "fd:", 3)) {
		fd = strtol(spec + 3, &end, 10);
		if (end == spec + 3 || *end || fd < 0 || fd > 65535)
			return err_printf(
				err, errlen, -EINVAL,
				"--net %s: fd:N needs a descriptor number",
				spec);
		snprintf(conf, len, "fd=%ld", fd);
		return 0;
	}
	comma = strchr(name, ',');
	nlen = comma ? (size_t)(comma - name) : strlen(name);
	if (strncmp(spec, "tap:", 4) || !nlen || nlen >= 16)
		return err_printf(
			err, errlen, -EINVAL,
			"--net %s: expected tap:NAME[,bridge=BR] or fd:N (names under 16 characters)",
			spec);
	snprintf(tap, 16, "%.*s", (int)nlen, name);
	if (comma) {
		const char *br = comma + 8;

		if (strncmp(comma, ",bridge=", 8) || !*br || strlen(br) >= 16 ||
		    strchr(br, ','))
			return err_printf(
				err, errlen, -EINVAL,
				"--net %s: expected ,bridge=NAME after the tap name",
				spec);
		snprintf(bridge, 16, "%s", br);
	}
	snprintf(conf, len, "tap=%s", tap);
	return 0;
}

/*
 * Creates virtio device number @nv of @kind: its MMIO window and GSI, its
 * boot-info entry, and for a tap the host side (up, on its bridge).
 */
static int add_virtio(struct machine *m, const struct dev_table_entry *e,
		      const char *arg, unsigned int nv, char *err,
		      size_t errlen)
{
	uint64_t base = VMRUN_VIRTIO_MMIO_BASE + nv * VMRUN_VIRTIO_MMIO_STRIDE;
	char conf[512], extra[80] = "", tap[16] = "", bridge[16] = "";
	struct vmrun_boot_dev *bd;
	uint32_t type = VMRUN_DEV_VIRTIO_RNG;
	int ret;

	if (nv >= ARRAY_SIZE(virtio_gsis))
		return err_printf(err, errlen, -ENOSPC,
				  "at most %zu virtio devices",
				  ARRAY_SIZE(virtio_gsis));
	if (e->kind == DEV_KIND_VIRTIO_BLK) {
		type = VMRUN_DEV_VIRTIO_BLK;
		snprintf(extra, sizeof(extra), ",path=");
	} else if (e->kind == DEV_KIND_VIRTIO_NET) {
		char nc[64];

		type = VMRUN_DEV_VIRTIO_NET;
		ret = net_conf(arg, nc, sizeof(nc), tap, bridge, err, errlen);
		if (ret < 0)
			return ret;
		snprintf(extra, sizeof(extra), ",%s", nc);
		arg = "";
	}
	snprintf(conf, sizeof(conf), "base=%#llx,gsi=%u%s%s",
		 (unsigned long long)base, virtio_gsis[nv], extra,
		 arg ? arg : "");
	ret = add_dev(m, e->ops, conf, err, errlen);
	if (ret < 0)
		return ret;
	bd = &m->boot.devs[m->boot.nr_devs++];
	bd->type = type;
	bd->gsi = virtio_gsis[nv];
	bd->base = base;
	bd->size = VMRUN_VIRTIO_MMIO_SIZE;
	if (type != VMRUN_DEV_VIRTIO_NET)
		return 0;
	m->nets[m->nr_nets] = m->devs[m->nr_devs - 1];
	if (tap[0]) {
		ret = netif_attach(tap, bridge[0] ? bridge : NULL,
				   &m->netifs[m->nr_nets]);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "--net %s: setting up the tap: %s",
					  arg, strerror(-ret));
	}
	m->nr_nets++;
	return 0;
}

/*
 * Ports a PC operating system probes for hardware this machine does not
 * have (Linux does at every boot): the DMA page registers, Super I/O
 * configuration (0x2e, 0x4e), COM2-COM4, and PCI's configuration
 * mechanism #1 (0xcf8-0xcff, around the reset control register 0xcf9).
 * They read as all ones, as on a PC, without a warning each.
 */
static const struct {
	uint16_t base, len;
} absent_ports[] = {
	{ 0x80, 0x10 }, { 0x2e, 2 },  { 0x4e, 2 },  { 0x2e8, 8 },
	{ 0x2f8, 8 },	{ 0x3e8, 8 }, { 0xcf8, 1 }, { 0xcfa, 6 },
};

static int quiet_absent_ports(struct machine *m)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < ARRAY_SIZE(absent_ports) && !ret; i++)
		ret = iotrap_quiet(vm_pio(m->vm), absent_ports[i].base,
				   absent_ports[i].len);
	return ret;
}

/*
 * Creates the devices in dev_table order. Virtio devices get consecutive
 * MMIO windows and GSIs and are listed in the boot info.
 */
static int create_devices(struct machine *m, const struct machine_config *cfg,
			  char *err, size_t errlen)
{
	unsigned int i, j, nv = 0;
	int ret = quiet_absent_ports(m);

	for (i = 0; i < dev_table_len && !ret; i++) {
		const struct dev_table_entry *e = &dev_table[i];

		switch (e->kind) {
		case DEV_KIND_PLATFORM:
			ret = add_dev(m, e->ops, NULL, err, errlen);
			break;
		case DEV_KIND_SERIAL:
			ret = add_dev(m, e->ops,
				      cfg->console ? cfg->console : "stdio",
				      err, errlen);
			if (!ret)
				m->serial = m->devs[m->nr_devs - 1];
			break;
		case DEV_KIND_VIRTIO_BLK:
			for (j = 0; j < cfg->nr_disks && !ret; j++)
				ret = add_virtio(m, e, cfg->disks[j], nv++, err,
						 errlen);
			break;
		case DEV_KIND_VIRTIO_NET:
			for (j = 0; j < cfg->nr_nets && !ret; j++)
				ret = add_virtio(m, e, cfg->nets[j], nv++, err,
						 errlen);
			break;
		case DEV_KIND_VIRTIO_RNG:
			if (cfg->rng)
				ret = add_virtio(m, e, NULL, nv++, err, errlen);
			break;
		}
	}
	return ret;
}

/* Finalises devices in reverse order and releases host interfaces. */
static void destroy_devices(struct machine *m)
{
	while (m->nr_devs) {
		struct dev *d = m->devs[--m->nr_devs];

		d->ops->fini(d);
	}
	while (m->nr_nets)
		netif_release(m->netifs[--m->nr_nets]);
}

static int setup_ram(struct machine *m, const struct machine_config *cfg,
		     char *err, size_t errlen)
{
	struct vm_mem *mem = vm_mem(m->vm);
	int ret;

	ret = cfg->restore && cfg->ram_cow ?
		      mem_seg_import_cow(mem, "ram", cfg->ram_cow_fd, cfg->mem,
					 &m->ram) :
		      mem_seg_create(mem, "ram", cfg->mem, &m->ram);
	if (ret < 0)
		return err_printf(
			err, errlen, ret, "allocating %llu MiB of RAM: %s",
			(unsigned long long)(cfg->mem >> 20), strerror(-ret));
	m->ram_low = MIN(cfg->mem, RAM_LOW_MAX);
	m->ram_high = cfg->mem - m->ram_low;
	ret = mem_map(mem, m->ram, 0, 0, m->ram_low, NULL);
	if (!ret && m->ram_high)
		ret = mem_map(mem, m->ram, m->ram_low, RAM_HIGH_BASE,
			      m->ram_high, NULL);
	if (ret < 0)
		return err_printf(err, errlen, ret, "mapping RAM: %s",
				  strerror(-ret));
	return 0;
}

/* Builds the boot info, page tables and vCPU state for the vmrun entry. */
static int boot_vmrun64(struct machine *m, const struct kernel_image *img,
			size_t cmdlen, char *err, size_t errlen)
{
	struct boot64 b;
	int ret;

	m->boot.magic = VMRUN_BOOT_MAGIC;
	m->boot.version = VMRUN_BOOT_VERSION;
	m->boot.nr_cpus = vm_nr_vcpus(m->vm);
	m->boot.ram_below_4g = m->ram_low;
	m->boot.ram_above_4g = m->ram_high;
	m->boot.cmdline_gpa = LOW_CMDLINE;
	m->boot.cmdline_len = (uint32_t)cmdlen;
	ret = mem_write(vm_mem(m->vm), LOW_BOOTINFO, &m->boot, sizeof(m->boot));
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing boot info");

	memset(&b, 0, sizeof(b));
	b.gdt_gpa = LOW_GDT;
	b.pt_gpa = LOW_PT;
	b.pt_size = LOW_PT_SIZE;
	b.entry = img->entry;
	b.stack_top = LOW_STACKS + MACHINE_MAX_CPUS * LOW_STACK_SIZE;
	b.stack_stride = LOW_STACK_SIZE;
	b.rsp0_top = b.stack_top;
	b.rsp0_stride = LOW_STACK_SIZE;
	b.boot_info_gpa = LOW_BOOTINFO;
	b.extra_gpa = VMRUN_MMIO_HOLE;
	b.extra_len = RAM_HIGH_BASE - VMRUN_MMIO_HOLE;
	ret = boot64_setup(m->vm, &b);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "setting up 64-bit entry: %s",
				  strerror(-ret));
	return 0;
}

/*
 * The firmware's reset vector (f000:fff0, physical 0xffff0): what a CPU
 * runs after a reset, and where Linux jumps when it reboots "through the
 * BIOS". It does so by default on a hardware-reduced ACPI machine without
 * EFI (its reboot order there is EFI, then the BIOS), so with no firmware
 * that reboot ran zeros forever. vmrun's firmware resets the machine, as a
 * PC's would: in real mode, "mov al, 6; mov dx, 0xcf9; out dx, al; hlt;
 * jmp $-1".
 */
#define RESET_VECTOR 0xffff0ULL
static const uint8_t reset_stub[] = { 0xb0, 0x06, 0xba, 0xf9, 0x0c,
				      0xee, 0xf4, 0xeb, 0xfd };

/*
 * ACPI tables at LOW_ACPI describing the vCPUs, the IOAPIC, the virtio-mmio
 * windows (as LNRO0005 devices: a stock Linux finds them nowhere else) and
 * the power registers. Returns the RSDP's address, or 0 after setting @err.
 */
static uint64_t write_acpi(struct machine *m, int *ret, char *err,
			   size_t errlen)
{
	struct acpi_virtio v[VMRUN_BOOT_MAX_DEVS];
	struct acpi_config ac = { .nr_cpus = vm_nr_vcpus(m->vm),
				  .virtio = v,
				  .nr_virtio = m->boot.nr_devs,
				  .ioapic_base = 0xfec00000,
				  .lapic_base = 0xfee00000,
				  .sleep_port = VMRUN_PORT_SLEEP,
				  .reset_port = 0xcf9,
				  .reset_value = 0x06,
				  .serial_port = 0x3f8,
				  .serial_irq = 4,
				  .rtc_port = 0x70 };
	uint64_t rsdp = 0;
	size_t used = 0;
	char aerr[160];
	void *buf;
	unsigned int i;

	for (i = 0; i < m->boot.nr_devs; i++)
		v[i] = (struct acpi_virtio){
			.base = m->boot.devs[i].base,
			.size = (uint32_t)m->boot.devs[i].size,
			.gsi = m->boot.devs[i].gsi
		};
	buf = calloc(1, LOW_ACPI_SIZE);
	if (!buf) {
		*ret = -ENOMEM;
		return 0;
	}
	*ret = acpi_build(&ac, buf, LOW_ACPI_SIZE, LOW_ACPI, &rsdp, &used, aerr,
			  sizeof(aerr));
	if (*ret < 0)
		err_printf(err, errlen, *ret, "ACPI tables: %s", aerr);
	else if (LOW_ACPI + used > RESET_VECTOR)
		err_printf(err, errlen, *ret = -E2BIG,
			   "ACPI tables: %zu bytes reach the reset vector",
			   used);
	else if ((*ret = mem_write(vm_mem(m->vm), LOW_ACPI, buf, used)) < 0 ||
		 (*ret = mem_write(vm_mem(m->vm), RESET_VECTOR, reset_stub,
				   sizeof(reset_stub))) < 0)
		err_printf(err, errlen, *ret, "writing the ACPI tables");
	free(buf);
	return *ret < 0 ? 0 : rsdp;
}

/*
 * Where the initramfs goes: as high in low RAM as the kernel allows (below
 * @max_end), page aligned, above everything the kernel needs. Writes it.
 */
static int write_initrd(struct machine *m, const struct machine_config *cfg,
			uint64_t kernel_end, uint64_t max_end, uint64_t *gpa,
			char *err, size_t errlen)
{
	uint64_t top = MIN(m->ram_low, max_end), at;
	int ret;

	*gpa = 0;
	if (!cfg->initrd)
		return 0;
	at = (top - MIN(top, cfg->initrd_size)) & ~(PAGE_SIZE - 1);
	if (cfg->initrd_size > top || at < kernel_end)
		return err_printf(
			err, errlen, -ENOSPC,
			"%s: %zu bytes of initramfs do not fit between the kernel's end (%#llx) and %#llx; give the guest more --mem",
			cfg->initrd_name, cfg->initrd_size,
			(unsigned long long)kernel_end,
			(unsigned long long)top);
	ret = mem_write(vm_mem(m->vm), at, cfg->initrd, cfg->initrd_size);
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing the initramfs");
	*gpa = at;
	return 0;
}

/* Linux's boot_params ("zero page") and its e820 entries. */
#define BP_ACPI_RSDP 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_HEAP_END_PTR 0x224
#define BP_CMD_LINE_PTR 0x228
#define BP_E820_TABLE 0x2d0
#define BP_CAN_USE_HEAP 0x80

#define E820_RAM 1
#define E820_RESERVED 2

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

/* The guest's memory map, for e820 and PVH alike. Returns the count. */
static unsigned int memory_map(const struct machine *m, struct e820_entry *e)
{
	unsigned int n = 0;

	e[n++] = (struct e820_entry){ 0, LOW_RESERVED, E820_RAM };
	e[n++] = (struct e820_entry){ LOW_RESERVED, LOW_END - LOW_RESERVED,
				      E820_RESERVED };
	e[n++] = (struct e820_entry){ LOW_END, m->ram_low - LOW_END, E820_RAM };
	if (m->ram_high)
		e[n++] = (struct e820_entry){ RAM_HIGH_BASE, m->ram_high,
					      E820_RAM };
	return n;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/*
 * A bzImage: the Linux x86 64-bit boot protocol (Documentation/x86/
 * boot.rst). The protected-mode kernel at its preferred address, the
 * initramfs high in low RAM, boot_params with the file's setup header,
 * the command line and the e820 map, ACPI tables; vCPU 0 enters at the
 * 64-bit entry with RSI = boot_params and the identity map; the APs wait
 * for the kernel's INIT/SIPI.
 */
static int boot_linux(struct machine *m, const struct machine_config *cfg,
		      const struct kernel_image *img, size_t cmdlen, char *err,
		      size_t errlen)
{
	const struct linux_setup *ls = &img->bz;
	struct e820_entry e820[8];
	uint8_t *bp;
	uint64_t rsdp, initrd;
	unsigned int n;
	struct boot64 b;
	int ret;

	if (cmdlen > ls->cmdline_max)
		return err_printf(
			err, errlen, -EINVAL,
			"command line of %zu bytes; this kernel takes at most %u",
			cmdlen, ls->cmdline_max);
	if (img->hi > m->ram_low)
		return err_printf(
			err, errlen, -ENOSPC,
			"%s needs RAM up to %#llx to boot (%llu MiB); give the guest more --mem",
			cfg->kernel_name ? cfg->kernel_name : "the kernel",
			(unsigned long long)img->hi,
			(unsigned long long)((img->hi + SZ_2M - 1) >> 20));
	ret = write_initrd(m, cfg, img->hi, (uint64_t)ls->initrd_max + 1,
			   &initrd, err, errlen);
	if (ret < 0)
		return ret;
	rsdp = write_acpi(m, &ret, err, errlen);
	if (!rsdp)
		return ret;

	bp = calloc(1, PAGE_SIZE);
	if (!bp)
		return -ENOMEM;
	memcpy(bp + ls->hdr_off, img->data + ls->hdr_off, ls->hdr_len);
	bp[BP_TYPE_OF_LOADER] = 0xff; /* a loader with no assigned id */
	bp[BP_LOADFLAGS] |= BP_CAN_USE_HEAP;
	bp[BP_HEAP_END_PTR] = 0x00; /* 0xfe00: unused by the 64-bit entry */
	bp[BP_HEAP_END_PTR + 1] = 0xfe;
	put32(bp + BP_CMD_LINE_PTR, (uint32_t)LOW_CMDLINE);
	put32(bp + BP_EXT_CMD_LINE_PTR, 0);
	put32(bp + BP_RAMDISK_IMAGE, (uint32_t)initrd);
	put32(bp + BP_RAMDISK_SIZE, (uint32_t)(initrd ? cfg->initrd_size : 0));
	put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd >> 32));
	put32(bp + BP_EXT_RAMDISK_SIZE, 0);
	memcpy(bp + BP_ACPI_RSDP, &rsdp, 8);
	n = memory_map(m, e820);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(bp + BP_E820_TABLE, e820, n * sizeof(e820[0]));
	ret = mem_write(vm_mem(m->vm), LOW_ZEROPAGE, bp, PAGE_SIZE);
	free(bp);
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing boot_params");

	memset(&b, 0, sizeof(b));
	b.gdt_gpa = LOW_GDT;
	b.pt_gpa = LOW_PT;
	b.pt_size = LOW_PT_SIZE;
	b.entry = img->entry;
	b.stack_top = LOW_STACKS + LOW_STACK_SIZE;
	b.rsp0_top = b.stack_top;
	b.boot_info_gpa = LOW_ZEROPAGE; /* RSI */
	b.bsp_only = true;
	ret = irq_pic_mask_all(m->vm);
	if (ret < 0)
		return err_printf(err, errlen, ret, "masking the 8259s: %s",
				  strerror(-ret));
	ret = boot64_setup(m->vm, &b);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "setting up the 64-bit entry: %s",
				  strerror(-ret));
	return 0;
}

/* hvm_start_info and one memory map entry type, from the PVH ABI. */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};

#define HVM_START_MAGIC 0x336ec578u

struct mb1_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline;
	uint32_t mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
};

struct mb1_mmap {
	uint32_t size;
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

static int boot_32bit(struct machine *m, const struct machine_config *cfg,
		      const struct kernel_image *img, char *err, size_t errlen)
{
	struct vm_mem *mem = vm_mem(m->vm);
	uint32_t eax, ebx = LOW_BOOTINFO;
	int ret;

	if (img->kind == KERNEL_ENTRY_PVH) {
		struct hvm_start_info si = { 0 };
		struct hvm_memmap_entry mm[8] = { 0 };
		struct hvm_modlist_entry mod = { 0 };
		struct e820_entry e820[8];
		uint64_t initrd;
		uint32_t i, n = memory_map(m, e820);

		for (i = 0; i < n; i++)
			mm[i] = (struct hvm_memmap_entry){ e820[i].addr,
							   e820[i].size,
							   e820[i].type, 0 };
		ret = write_initrd(m, cfg, img->hi, 1ULL << 32, &initrd, err,
				   errlen);
		if (ret < 0)
			return ret;
		si.rsdp_paddr = write_acpi(m, &ret, err, errlen);
		if (!si.rsdp_paddr)
			return ret;
		ret = irq_pic_mask_all(m->vm);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "masking the 8259s: %s",
					  strerror(-ret));
		si.magic = HVM_START_MAGIC;
		si.version = 1;
		si.cmdline_paddr = LOW_CMDLINE;
		si.memmap_paddr = LOW_BOOTINFO + 0x100;
		si.memmap_entries = n;
		if (initrd) {
			mod.paddr = initrd;
			mod.size = cfg->initrd_size;
			si.nr_modules = 1;
			si.modlist_paddr = LOW_BOOTINFO + 0x80;
		}
		ret = mem_write(mem, LOW_BOOTINFO, &si, sizeof(si));
		if (!ret)
			ret = mem_write(mem, si.memmap_paddr, mm,
					n * sizeof(mm[0]));
		if (!ret && initrd)
			ret = mem_write(mem, si.modlist_paddr, &mod,
					sizeof(mod));
		eax = 0;
	} else {
		struct mb1_info mi = { 0 };
		struct mb1_mmap mm[3];
		uint32_t n = 0;

		mm[n++] = (struct mb1_mmap){ 20, 0, 0x9fc00, E820_RAM };
		mm[n++] = (struct mb1_mmap){ 20, LOW_END, m->ram_low - LOW_END,
					     E820_RAM };
		if (m->ram_high)
			mm[n++] = (struct mb1_mmap){ 20, RAM_HIGH_BASE,
						     m->ram_high, E820_RAM };
		mi.flags = 0x1 | 0x4 | 0x40; /* mem, cmdline, mmap */
		mi.mem_lower = 639;
		mi.mem_upper = (uint32_t)MIN((m->ram_low - LOW_END) >> 10,
					     (uint64_t)UINT32_MAX);
		mi.cmdline = LOW_CMDLINE;
		mi.mmap_addr = LOW_BOOTINFO + 0x100;
		mi.mmap_length = n * sizeof(mm[0]);
		ret = mem_write(mem, LOW_BOOTINFO, &mi, sizeof(mi));
		if (!ret)
			ret = mem_write(mem, mi.mmap_addr, mm,
					n * sizeof(mm[0]));
		eax = 0x2badb002;
	}
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing boot information");
	if (img->entry > UINT32_MAX)
		return err_printf(err, errlen, -EINVAL,
				  "32-bit entry point %#llx above 4 GiB",
				  (unsigned long long)img->entry);
	ret = boot32_setup(m->vm, LOW_GDT, (uint32_t)img->entry, eax, ebx);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "setting up 32-bit entry: %s",
				  strerror(-ret));
	return 0;
}

int machine_create(const struct machine_config *cfg, struct machine **out,
		   char *err, size_t errlen)
{
	struct vm_config vc = { .nr_vcpus = cfg->cpus,
				.pit = true,
				.dirty = cfg->dirty,
				.dirty_ring_size = cfg->dirty_ring_size };
	struct kernel_image img;
	struct machine *m;
	size_t cmdlen = cfg->cmdline ? strlen(cfg->cmdline) : 0;
	char kerr[256];
	int ret;

	if (!cfg->cpus || cfg->cpus > MACHINE_MAX_CPUS)
		return err_printf(err, errlen, -EINVAL,
				  "--cpus %u: must be 1..%d", cfg->cpus,
				  MACHINE_MAX_CPUS);
	if (cfg->mem < (16ULL << 20) || cfg->mem % SZ_2M ||
	    cfg->mem > (1ULL << 40))
		return err_printf(
			err, errlen, -EINVAL,
			"--mem %llu MiB: must be a multiple of 2 MiB, 16 MiB .. 1 TiB",
			(unsigned long long)(cfg->mem >> 20));
	if (cmdlen >= LOW_CMDLINE_MAX)
		return err_printf(err, errlen, -EINVAL,
				  "command line of %zu bytes; at most %llu",
				  cmdlen, LOW_CMDLINE_MAX - 1);
	if (cfg->restore)
		goto parsed;
	ret = kernel_parse(cfg->kernel, cfg->kernel_size, &img, kerr,
			   sizeof(kerr));
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s: %s", cfg->kernel_name,
				  kerr);
	if (cfg->initrd &&
	    initrd_check(cfg->initrd, cfg->initrd_size, kerr, sizeof(kerr)))
		return err_printf(err, errlen, -EINVAL, "%s: %s",
				  cfg->initrd_name, kerr);
	if (cfg->initrd && img.kind != KERNEL_ENTRY_LINUX64 &&
	    img.kind != KERNEL_ENTRY_PVH)
		return err_printf(
			err, errlen, -EINVAL,
			"--initrd is for Linux kernels (a bzImage or a PVH vmlinux); %s is a %s kernel",
			cfg->kernel_name, kernel_entry_name(img.kind));
	if (img.lo < LOW_END)
		return err_printf(
			err, errlen, -EINVAL,
			"%s: loads at %#llx; vmrun needs kernels at 1 MiB or above",
			cfg->kernel_name, (unsigned long long)img.lo);

parsed:
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (cfg_copy(&m->cfg, cfg) < 0) {
		free(m);
		return -ENOMEM;
	}
	m->track_fd = -1;
	m->loop_sfd = -1;
	m->track_ms = cfg->track_ms;
	for (unsigned int w = 0; w < MACHINE_MAX_WATCH; w++)
		m->watch[w].fd = -1;
	m->ep = epoll_create1(EPOLL_CLOEXEC);
	if (m->ep < 0) {
		ret = -errno;
		cfg_free(&m->cfg);
		free(m);
		return ret;
	}
	if (m->track_ms) {
		m->track_scratch = bitmap_alloc(cfg->mem / PAGE_SIZE);
		if (!m->track_scratch) {
			close(m->ep);
			cfg_free(&m->cfg);
			free(m);
			return -ENOMEM;
		}
	}
	m->net_wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->net_wake_efd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = vm_create(&vc, &m->vm);
	if (ret < 0) {
		err_printf(err, errlen, ret, "creating the VM: %s",
			   strerror(-ret));
		goto err_free;
	}
	ret = harness_create(m->vm, &m->harness);
	if (ret < 0) {
		err_printf(err, errlen, ret, "fuzz harness ports: %s",
			   strerror(-ret));
		goto err_vm;
	}
	ret = setup_ram(m, cfg, err, errlen);
	if (ret < 0)
		goto err_vm;
	if (cfg->restore) {
		ret = create_devices(m, cfg, err, errlen);
		if (ret < 0)
			goto err_devs;
		goto done;
	}
	ret = kernel_load(vm_mem(m->vm), &img, LOW_END,
			  m->ram_high ? RAM_HIGH_BASE + m->ram_high :
					m->ram_low,
			  kerr, sizeof(kerr));
	if (ret < 0) {
		err_printf(err, errlen, ret, "%s: %s", cfg->kernel_name, kerr);
		goto err_vm;
	}
	ret = mem_write(vm_mem(m->vm), LOW_CMDLINE,
			cfg->cmdline ? cfg->cmdline : "", cmdlen + 1);
	if (ret < 0)
		goto err_vm;
	ret = create_devices(m, cfg, err, errlen);
	if (ret < 0)
		goto err_devs;
	if (img.kind == KERNEL_ENTRY_VMRUN64)
		ret = boot_vmrun64(m, &img, cmdlen, err, errlen);
	else if (img.kind == KERNEL_ENTRY_LINUX64)
		ret = boot_linux(m, cfg, &img, cmdlen, err, errlen);
	else
		ret = boot_32bit(m, cfg, &img, err, errlen);
	if (ret < 0)
		goto err_devs;
done:
	m->stdin_console = !cfg->console || !strcmp(cfg->console, "stdio");
	*out = m;
	return 0;

err_devs:
	destroy_devices(m);
err_vm:
	harness_destroy(m->harness);
	vm_destroy(m->vm);
	mem_seg_put(m->ram);
err_free:
	if (m->net_wake_efd >= 0)
		close(m->net_wake_efd);
	bitmap_free(m->track_scratch);
	close(m->ep);
	cfg_free(&m->cfg);
	free(m);
	return ret;
}

void machine_destroy(struct machine *m)
{
	if (!m)
		return;
	vm_stop(m->vm, VM_EXIT_REQUESTED);
	vm_wait(m->vm, -1);
	destroy_devices(m);
	if (m->loader.release)
		m->loader.release(m->loader.opaque);
	harness_destroy(m->harness);
	vm_destroy(m->vm);
	mem_seg_put(m->ram);
	close(m->net_wake_efd);
	if (m->track_fd >= 0)
		close(m->track_fd);
	bitmap_free(m->track_scratch);
	close(m->ep);
	cfg_free(&m->cfg);
	free(m);
}

void machine_set_loader(struct machine *m, const struct machine_loader *l)
{
	m->loader = *l;
}

bool machine_mem_loading(struct machine *m, uint64_t *done, uint64_t *total)
{
	*done = *total = 0;
	return m->loader.progress &&
	       m->loader.progress(m->loader.opaque, done, total);
}

int machine_mem_wait(struct machine *m)
{
	return m->loader.wait ? m->loader.wait(m->loader.opaque) : 0;
}

struct vm *machine_vm(struct machine *m)
{
	return m->vm;
}

const struct machine_config *machine_config(const struct machine *m)
{
	return &m->cfg;
}

unsigned int machine_nr_devs(const struct machine *m)
{
	return m->nr_devs;
}

struct dev *machine_dev(struct machine *m, unsigned int i)
{
	return i < m->nr_devs ? m->devs[i] : NULL;
}

struct mem_seg *machine_ram(struct machine *m)
{
	return m->ram;
}

struct harness *machine_harness(struct machine *m)
{
	return m->harness;
}

void machine_dirty_keep(struct machine *m)
{
	m->dirty_keep = true;
}

void machine_dirty_share(struct machine *m, uint64_t *bits, bool *any)
{
	m->dirty_share = bits;
	m->dirty_share_any = any;
}

void machine_dirty_unshare(struct machine *m, const uint64_t *bits)
{
	if (m->dirty_share == bits)
		machine_dirty_share(m, NULL, NULL);
}

int machine_freeze(struct machine *m)
{
	unsigned int i;
	int ret = vm_pause(m->vm);

	if (ret < 0)
		return ret;
	if (m->freezes++)
		return 0;
	for (i = 0; i < m->nr_devs; i++) {
		if (!m->devs[i]->ops->pause)
			continue;
		ret = m->devs[i]->ops->pause(m->devs[i]);
		if (ret < 0) {
			while (i--)
				if (m->devs[i]->ops->resume)
					m->devs[i]->ops->resume(m->devs[i]);
			m->freezes--;
			vm_resume(m->vm);
			return ret;
		}
	}
	return 0;
}

void machine_thaw(struct machine *m)
{
	unsigned int i = m->nr_devs;

	if (!--m->freezes)
		while (i--)
			if (m->devs[i]->ops->resume &&
			    m->devs[i]->ops->resume(m->devs[i]) < 0)
				pr_warn("%s: resume failed",
					m->devs[i]->ops->name);
	vm_resume(m->vm);
}
