/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_ACPI_H
#define VMM_X86_ACPI_H

/*
 * ACPI tables for a hardware-reduced machine (ACPI 6.4 section 4.1: no PM1
 * or GPE blocks, no SCI, no FACS), the model Firecracker and Cloud
 * Hypervisor use, so that a stock Linux finds the vCPUs and the IOAPIC
 * (MADT), the virtio-mmio windows (LNRO0005 devices in the DSDT) and how
 * to power off (the FADT's sleep control register and the DSDT's _S5) and
 * reset (the FADT's reset register).
 *
 * The tables are built in a host buffer with every pointer in them already
 * a guest-physical address; the caller copies the buffer to guest memory at
 * that address, keeps the range out of the guest's RAM in its memory map
 * (e820 "reserved" or "ACPI"), and hands the guest the RSDP's address
 * (boot_params.acpi_rsdp_addr, hvm_start_info.rsdp_paddr) or puts the
 * tables in 0xe0000-0xfffff, where Linux also scans for the RSDP.
 *
 * What a hardware-reduced Linux does not do by itself, and a VMM must know:
 * it never programs or masks the 8259s (legacy_pic is the null PIC) and
 * does not map ISA IRQs 0-15 on the IOAPIC; an interrupt reaches a driver
 * only through a device described here. Hence the optional serial and RTC
 * descriptions below.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

#define ACPI_MAX_CPUS 255   /* xAPIC ids 0..254; uid 0xff means "all" */
#define ACPI_MAX_VIRTIO 32  /* Device names V000..V031 */
#define ACPI_IOAPIC_PINS 24 /* KVM's in-kernel IOAPIC: GSIs 0..23 */

/*
 * Enough buffer for any configuration acpi_build() accepts (255 vCPUs, 32
 * devices, serial and RTC: about 5 KiB); in general the tables take at
 * most 1 KiB + 8 bytes per vCPU + 80 bytes per virtio device.
 */
#define ACPI_TABLES_MAX 8192

/* A virtio-mmio window, described as Device(Vnnn) { _HID "LNRO0005" }. */
struct acpi_virtio {
	uint64_t base; /* the window must lie below 4 GiB (Memory32Fixed) */
	uint32_t size; /* bytes, not 0 */
	uint32_t gsi;  /* IOAPIC pin: level-triggered, active-high; declared
			* Shared if another device has it, else Exclusive */
};

struct acpi_config {
	/* 1..255; APIC ids 0..nr_cpus-1, ACPI processor uid = index. */
	unsigned int nr_cpus;
	/* At most ACPI_MAX_VIRTIO; _UID = index in this array. */
	const struct acpi_virtio *virtio;
	unsigned int nr_virtio;
	uint64_t ioapic_base; /* 0xfec00000; IOAPIC id 0, GSI base 0 */
	uint64_t lapic_base;  /* 0xfee00000 */
	/*
	 * Hardware-reduced SLEEP_CONTROL_REG (an 8-bit I/O port), also used
	 * as SLEEP_STATUS_REG: Linux writes 0x80 (clear WAK_STS) to it, then
	 * the value acpi_sleep_is_s5() recognises. Not 0.
	 */
	uint16_t sleep_port;
	uint16_t reset_port; /* FADT RESET_REG, I/O space, 8-bit; not 0 */
	uint8_t reset_value;
	/*
	 * Optional ISA devices (port 0: not described). Linux binds its
	 * 16550 (8250_pnp) and CMOS RTC (rtc_cmos) drivers to them, with
	 * the interrupt registered through ACPI, which is the only way a
	 * hardware-reduced Linux routes an ISA IRQ. IRQ 0: none.
	 */
	uint16_t serial_port; /* PNP0501, 8 ports (0x3f8) */
	uint8_t serial_irq;   /* ISA IRQ, edge-triggered, active-high (4) */
	uint16_t rtc_port;    /* PNP0B00, 2 ports (0x70) */
	uint8_t rtc_irq;      /* 0 if the RTC raises no interrupt */
};

/*
 * Lays out RSDP, DSDT, FADT, MADT and XSDT in @buf, which the guest will
 * see at guest-physical @gpa (so all pointers inside are gpa-based); @len
 * bytes available (ACPI_TABLES_MAX always suffices). On success returns 0,
 * *@rsdp_gpa (== @gpa: the RSDP comes first, @gpa must be 16-byte aligned)
 * and *@used, the bytes to copy. Returns -EINVAL for a bad configuration,
 * or -ENOSPC if @len is too small (then *@used is the size needed, and
 * nothing useful is in @buf; @buf may be NULL to ask), each with a
 * one-line reason in @err.
 */
int acpi_build(const struct acpi_config *c, void *buf, size_t len, uint64_t gpa,
	       uint64_t *rsdp_gpa, size_t *used, char *err,
	       size_t errlen) __must_check;

/* The byte a guest writes to SLEEP_CONTROL_REG to enter S5 (_S5's
 * SLP_TYPa in bits 2-4, SLP_EN in bit 5): */
#define ACPI_SLP_TYP_S5 5
#define ACPI_SLP_EN 0x20

/* True if @v written to the sleep control register means "power off". */
static inline bool acpi_sleep_is_s5(uint8_t v)
{
	return (v & ACPI_SLP_EN) && ((v >> 2) & 7) == ACPI_SLP_TYP_S5;
}

/*
 * Encodes the AML PkgLength of a package whose contents after the
 * PkgLength are @body bytes (the encoded length counts itself) into @out,
 * in the shortest of the 1-4 byte forms. Returns its size, or 0 if @body
 * is too long for AML (2^28 bytes). Exposed for the unit tests.
 */
size_t acpi_aml_pkglength(uint8_t out[4], size_t body);

#endif /* VMM_X86_ACPI_H */
