/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_VMRUN_BOOT_H
#define VMM_X86_VMRUN_BOOT_H

/*
 * The direct 64-bit entry contract between vmrun and a guest kernel that
 * asks for it. Shared with guests, so: fixed-width types only, no host
 * headers beyond <stdint.h>.
 *
 * A guest ELF asks for the direct entry with an ELF note of name "vmrun"
 * and type VMRUN_NOTE_ENTRY64 whose 8-byte descriptor is the 64-bit entry
 * address. vmrun then loads the PT_LOAD segments at their physical
 * addresses and starts every vCPU there:
 *
 *   - 64-bit mode, CPL 0, interrupts off, identity paging over all RAM
 *     and the MMIO window (2 MiB pages, writable, user-accessible, A/D
 *     preset), flat GDT: 0x08 code, 0x10 data, 0x18 user data, 0x20 user
 *     code, and a TSS per vCPU (selector 0x28 + 16 * index);
 *   - RDI = vCPU index (0 is the boot CPU), RSI = guest-physical address
 *     of struct vmrun_boot_info, RSP = top of a 16 KiB stack for this
 *     vCPU (also the TSS's RSP0), all other registers 0.
 *
 * The guest should install its own GDT, IDT, TSS and page tables as soon
 * as it likes; the boot ones live in low memory below 1 MiB, which the
 * guest may reuse once it has its own.
 */

#include <stdint.h>

#define VMRUN_NOTE_NAME "vmrun"
#define VMRUN_NOTE_ENTRY64 1

#define VMRUN_BOOT_MAGIC 0x544f4f424e55524dULL /* "MRUNBOOT" */
#define VMRUN_BOOT_VERSION 1
#define VMRUN_BOOT_MAX_DEVS 16

/* Virtio device ids (the virtio spec's). */
#define VMRUN_DEV_VIRTIO_NET 1
#define VMRUN_DEV_VIRTIO_BLK 2
#define VMRUN_DEV_VIRTIO_RNG 4

struct vmrun_boot_dev {
	uint32_t type; /* VMRUN_DEV_* */
	uint32_t gsi;  /* interrupt line on the 8259 PIC / IOAPIC */
	uint64_t base; /* virtio-mmio register window */
	uint64_t size;
};

struct vmrun_boot_info {
	uint64_t magic;	  /* VMRUN_BOOT_MAGIC */
	uint32_t version; /* VMRUN_BOOT_VERSION */
	uint32_t nr_cpus;
	uint64_t ram_below_4g; /* bytes of RAM from 0 */
	uint64_t ram_above_4g; /* bytes of RAM from 4 GiB */
	uint64_t cmdline_gpa;  /* NUL-terminated */
	uint32_t cmdline_len;  /* without the NUL */
	uint32_t nr_devs;
	struct vmrun_boot_dev devs[VMRUN_BOOT_MAX_DEVS];
};

/*
 * The machine (fixed addresses):
 *   RAM                 0 .. min(mem, 3 GiB), the rest from 4 GiB
 *   virtio-mmio dev n   0xd0000000 + n * 0x1000 (0x200 bytes), GSI per
 *                       boot info (5, 6, 7, 9, 10, 11, 12, 14 for n=0..7)
 *   IOAPIC / LAPIC      0xfec00000 / 0xfee00000 (in-kernel)
 *   16550 UART (COM1)   ports 0x3f8..0x3ff, IRQ 4
 *   8259 PIC            ports 0x20, 0x21, 0xa0, 0xa1 (in-kernel)
 *   8254 PIT            ports 0x40..0x43, IRQ 0 (in-kernel)
 *   CMOS RTC            ports 0x70, 0x71
 *   power off           16-bit write of 0x2000 to port 0x604
 *                       (as on QEMU q35; guest exit code 0), or the
 *                       ACPI sleep control register (port 0x600, 8-bit:
 *                       SLP_EN with SLP_TYP 5, the DSDT's _S5)
 *   ACPI tables         0xe0000 (RSDP first), for Linux and PVH kernels
 *   reset               write 0xfe to port 0x64 (i8042), or 0x06 to 0xcf9
 */
#define VMRUN_VIRTIO_MMIO_BASE 0xd0000000ULL
#define VMRUN_VIRTIO_MMIO_STRIDE 0x1000ULL
#define VMRUN_VIRTIO_MMIO_SIZE 0x200ULL
#define VMRUN_MMIO_HOLE 0xc0000000ULL
#define VMRUN_PORT_POWEROFF 0x604
#define VMRUN_POWEROFF_VALUE 0x2000
#define VMRUN_PORT_SLEEP 0x600

#endif /* VMM_X86_VMRUN_BOOT_H */
