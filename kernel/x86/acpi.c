/* SPDX-License-Identifier: MIT */
/*
 * ACPI table builder for a hardware-reduced machine; see acpi.h. Every
 * table is written byte by byte, little-endian, so nothing depends on the
 * host's struct layout. The buffer holds, 16-byte aligned:
 *
 *   RSDP  revision 2, points at the XSDT (no RSDT)
 *   DSDT  the virtio-mmio devices, optional COM1 and RTC, \_S5
 *   FADT  revision 6.4: HW_REDUCED_ACPI, reset and sleep registers
 *   MADT  local APICs, the IOAPIC, LINT1 as NMI
 *   XSDT  FADT, MADT (the DSDT is reached through FADT.X_DSDT)
 *
 * Each table only points at tables before it, so each is final (length,
 * checksum) when written; the RSDP, which must come first, is completed
 * last.
 */
#include "kernel/x86/acpi.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "kernel/util/log.h"

#define ACPI_OEM_ID "VMRUN "	      /* 6 bytes */
#define ACPI_OEM_TABLE_ID "VMRUN   "  /* 8 bytes */
#define ACPI_CREATOR_ID "VMRN"	      /* 4 bytes */
#define ACPI_HYPERVISOR_ID "VMRUN   " /* FADT: 8 bytes */

#define ACPI_ALIGN 16

/* The RSDP (ACPI 6.4 section 5.2.5.3). */
#define RSDP_LEN 36
#define RSDP_V1_LEN 20 /* what the first checksum covers */
#define RSDP_CHECKSUM 8
#define RSDP_XSDT 24
#define RSDP_XCHECKSUM 32

/* The common header of the other tables (section 5.2.6). */
#define HDR_LEN 36
#define HDR_LENGTH 4
#define HDR_CHECKSUM 9

/* FADT fields (section 5.2.9, table 5.9), as offsets into the table. */
#define FADT_REV 6
#define FADT_MINOR 4
#define FADT_LEN 276
#define FADT_DSDT 40
#define FADT_IAPC_BOOT_ARCH 109
#define FADT_FLAGS 112
#define FADT_RESET_REG 116
#define FADT_RESET_VALUE 128
#define FADT_MINOR_VERSION 131
#define FADT_X_DSDT 140
#define FADT_SLEEP_CONTROL 244
#define FADT_SLEEP_STATUS 256
#define FADT_HYPERVISOR_ID 268

/* FADT flags (table 5.10). */
#define FADT_F_WBINVD (1u << 0)	    /* required of new x86 systems */
#define FADT_F_PWR_BUTTON (1u << 4) /* set: no fixed power button */
#define FADT_F_SLP_BUTTON (1u << 5) /* set: no fixed sleep button */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

/* IA-PC boot architecture flags (table 5.11). */
#define IAPC_LEGACY_DEVICES (1u << 0) /* user-visible ISA devices */
#define IAPC_8042 (1u << 1)	      /* not set: Linux skips the i8042 */
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3) /* there is no PCI */
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* Generic Address Structure (section 5.2.3.2). */
#define GAS_LEN 12
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

/* MADT (section 5.2.12). */
#define MADT_REV 5
#define MADT_PCAT_COMPAT (1u << 0)
#define MADT_LAPIC 0
#define MADT_LAPIC_LEN 8
#define MADT_LAPIC_ENABLED (1u << 0)
#define MADT_IOAPIC 1
#define MADT_IOAPIC_LEN 12
#define MADT_LAPIC_NMI 4
#define MADT_LAPIC_NMI_LEN 6
#define MADT_ALL_CPUS 0xff
#define MADT_NMI_LINT1 1

#define XSDT_REV 1
#define DSDT_REV 2 /* 2 and above: 64-bit AML integers */

/* AML opcodes (section 20.3). */
#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME 0x08
#define AML_BYTE 0x0a
#define AML_WORD 0x0b
#define AML_DWORD 0x0c
#define AML_STRING 0x0d
#define AML_QWORD 0x0e
#define AML_SCOPE 0x10
#define AML_BUFFER 0x11
#define AML_PACKAGE 0x12
#define AML_EXT 0x5b
#define AML_DEVICE 0x82 /* after AML_EXT */
#define AML_ROOT '\\'

/* Resource descriptors (section 6.4). */
#define RES_IRQ_NOFLAGS 0x22 /* small, 2 bytes: edge, active-high */
#define RES_IO 0x47	     /* small, 7 bytes */
#define RES_IO_DECODE16 0x01
#define RES_END 0x79 /* small, 1 byte: the checksum */
#define RES_MEM32_FIXED 0x86
#define RES_MEM32_RW 0x01
#define RES_EXT_IRQ 0x89
#define RES_EXT_IRQ_CONSUMER 0x01 /* and level, active-high */
#define RES_EXT_IRQ_SHARED 0x08

/*
 * A bounded output buffer. Writes past the end are counted but dropped, so
 * that after building @pos is the size the tables need either way; @full
 * records that something was dropped, which makes the contents unusable.
 */
struct out {
	uint8_t *buf;
	size_t cap;
	size_t pos;
	bool full;
};

static bool out_fits(const struct out *o, size_t off, size_t n)
{
	return off <= o->cap && n <= o->cap - off;
}

/* Stores the low @n bytes of @v, little-endian, at @off. */
static void put_at(struct out *o, size_t off, uint64_t v, unsigned int n)
{
	unsigned int i;

	if (!out_fits(o, off, n)) {
		o->full = true;
		return;
	}
	for (i = 0; i < n; i++)
		o->buf[off + i] = (uint8_t)(v >> (8 * i));
}

static void put(struct out *o, uint64_t v, unsigned int n)
{
	put_at(o, o->pos, v, n);
	o->pos += n;
}

static void put_bytes(struct out *o, const void *p, size_t n)
{
	if (out_fits(o, o->pos, n))
		memcpy(o->buf + o->pos, p, n);
	else
		o->full = true;
	o->pos += n;
}

static void put_zeros(struct out *o, size_t n)
{
	if (out_fits(o, o->pos, n))
		memset(o->buf + o->pos, 0, n);
	else
		o->full = true;
	o->pos += n;
}

static void out_align(struct out *o)
{
	put_zeros(o, ALIGN_UP(o->pos, (size_t)ACPI_ALIGN) - o->pos);
}

/* Sets the byte at @at so that the @n bytes from @start sum to 0. */
static void put_checksum(struct out *o, size_t start, size_t n, size_t at)
{
	uint8_t sum = 0;
	size_t i;

	if (!out_fits(o, start, n))
		return; /* already marked full */
	o->buf[at] = 0;
	for (i = 0; i < n; i++)
		sum += o->buf[start + i];
	o->buf[at] = (uint8_t)-sum;
}

/* Starts a table with the common header; returns its offset. */
static size_t table_begin(struct out *o, const char *sig, uint8_t rev)
{
	size_t start;

	out_align(o);
	start = o->pos;
	put_bytes(o, sig, 4);
	put(o, 0, 4); /* length: table_end() */
	put(o, rev, 1);
	put(o, 0, 1); /* checksum: table_end() */
	put_bytes(o, ACPI_OEM_ID, 6);
	put_bytes(o, ACPI_OEM_TABLE_ID, 8);
	put(o, 1, 4); /* OEM revision */
	put_bytes(o, ACPI_CREATOR_ID, 4);
	put(o, 1, 4); /* creator revision */
	return start;
}

static void table_end(struct out *o, size_t start)
{
	put_at(o, start + HDR_LENGTH, o->pos - start, 4);
	put_checksum(o, start, o->pos - start, start + HDR_CHECKSUM);
}

/* An 8-bit register in I/O space, accessed a byte at a time. */
static void put_gas_io8_at(struct out *o, size_t off, uint16_t port)
{
	put_at(o, off, GAS_SYSTEM_IO, 1);
	put_at(o, off + 1, 8, 1); /* register bit width */
	put_at(o, off + 2, 0, 1); /* bit offset */
	put_at(o, off + 3, GAS_ACCESS_BYTE, 1);
	put_at(o, off + 4, port, 8);
}

size_t acpi_aml_pkglength(uint8_t out[4], size_t body)
{
	size_t n, len, i;

	/* One byte holds 6 bits of length; n bytes hold 4 + 8 * (n - 1). */
	for (n = 1; n <= 4; n++) {
		len = body + n;
		if (len < (n == 1 ? 0x40ul : 1ul << (4 + 8 * (n - 1))))
			break;
	}
	if (n > 4)
		return 0;
	if (n == 1) {
		out[0] = (uint8_t)len;
		return 1;
	}
	out[0] = (uint8_t)(((n - 1) << 6) | (len & 0xf));
	for (i = 1; i < n; i++)
		out[i] = (uint8_t)(len >> (4 + 8 * (i - 1)));
	return n;
}

/*
 * Packages: aml_pkg_begin() reserves the longest PkgLength, aml_pkg_end()
 * writes the shortest one that fits what came after and moves that down
 * over the bytes it did not need. Packages nest; the inner ones end first.
 */
static size_t aml_pkg_begin(struct out *o)
{
	size_t at = o->pos;

	put_zeros(o, 4);
	return at;
}

static void aml_pkg_end(struct out *o, size_t at)
{
	size_t body = o->pos - at - 4;
	uint8_t enc[4];
	size_t n = acpi_aml_pkglength(enc, body);

	assert(n); /* the tables are a few KiB */
	if (out_fits(o, at, 4 + body)) {
		memmove(o->buf + at + n, o->buf + at + 4, body);
		memcpy(o->buf + at, enc, n);
	}
	o->pos -= 4 - n;
}

/* A NameSeg: four characters, a shorter name padded with '_'. */
static void aml_nameseg(struct out *o, const char *name)
{
	size_t i, n = strlen(name);

	assert(n >= 1 && n <= 4);
	for (i = 0; i < 4; i++)
		put(o, i < n ? (uint8_t)name[i] : '_', 1);
}

/* An integer in its shortest encoding, as iasl writes it. */
static void aml_integer(struct out *o, uint64_t v)
{
	if (v == 0) {
		put(o, AML_ZERO, 1);
	} else if (v == 1) {
		put(o, AML_ONE, 1);
	} else if (v <= 0xff) {
		put(o, AML_BYTE, 1);
		put(o, v, 1);
	} else if (v <= 0xffff) {
		put(o, AML_WORD, 1);
		put(o, v, 2);
	} else if (v <= 0xffffffff) {
		put(o, AML_DWORD, 1);
		put(o, v, 4);
	} else {
		put(o, AML_QWORD, 1);
		put(o, v, 8);
	}
}

static void aml_name_integer(struct out *o, const char *name, uint64_t v)
{
	put(o, AML_NAME, 1);
	aml_nameseg(o, name);
	aml_integer(o, v);
}

static void aml_name_string(struct out *o, const char *name, const char *s)
{
	put(o, AML_NAME, 1);
	aml_nameseg(o, name);
	put(o, AML_STRING, 1);
	put_bytes(o, s, strlen(s) + 1);
}

/*
 * Name(_HID, EisaId(@id)): "PNP0501" compressed to three 5-bit letters
 * and four hex digits, a DWord stored most significant byte first.
 */
static void aml_hid_eisaid(struct out *o, const char *id)
{
	uint32_t v = 0;
	unsigned int i;

	assert(strlen(id) == 7);
	for (i = 0; i < 3; i++)
		v = (v << 5) | (uint32_t)(id[i] - '@');
	for (i = 3; i < 7; i++)
		v = (v << 4) |
		    (uint32_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	put(o, AML_NAME, 1);
	aml_nameseg(o, "_HID");
	put(o, AML_DWORD, 1);
	put(o, __builtin_bswap32(v), 4);
}

/* A resource template, built whole before it goes into a Buffer. */
struct restpl {
	uint8_t b[32];
	size_t n;
};

static void res_put(struct restpl *r, uint64_t v, unsigned int n)
{
	unsigned int i;

	assert(r->n + n <= sizeof(r->b));
	for (i = 0; i < n; i++)
		r->b[r->n++] = (uint8_t)(v >> (8 * i));
}

/* Memory32Fixed(ReadWrite, @base, @size) */
static void res_mem32(struct restpl *r, uint32_t base, uint32_t size)
{
	res_put(r, RES_MEM32_FIXED, 1);
	res_put(r, 9, 2);
	res_put(r, RES_MEM32_RW, 1);
	res_put(r, base, 4);
	res_put(r, size, 4);
}

/* Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive or Shared)
 * { @gsi } */
static void res_ext_irq(struct restpl *r, uint32_t gsi, bool shared)
{
	res_put(r, RES_EXT_IRQ, 1);
	res_put(r, 6, 2);
	res_put(r, RES_EXT_IRQ_CONSUMER | (shared ? RES_EXT_IRQ_SHARED : 0), 1);
	res_put(r, 1, 1); /* one interrupt in the table */
	res_put(r, gsi, 4);
}

/* IO(Decode16, @port, @port, 1, @len) */
static void res_io(struct restpl *r, uint16_t port, uint8_t len)
{
	res_put(r, RES_IO, 1);
	res_put(r, RES_IO_DECODE16, 1);
	res_put(r, port, 2);
	res_put(r, port, 2);
	res_put(r, 1, 1);
	res_put(r, len, 1);
}

/* IRQNoFlags() { @irq } */
static void res_irq(struct restpl *r, unsigned int irq)
{
	res_put(r, RES_IRQ_NOFLAGS, 1);
	res_put(r, 1u << irq, 2);
}

/* EndTag, with a checksum that makes the whole template sum to 0. */
static void res_end(struct restpl *r)
{
	uint8_t sum = RES_END;
	size_t i;

	for (i = 0; i < r->n; i++)
		sum += r->b[i];
	res_put(r, RES_END, 1);
	res_put(r, (uint8_t)-sum, 1);
}

/* Name(_CRS, ResourceTemplate() { ... }) */
static void aml_name_crs(struct out *o, const struct restpl *r)
{
	size_t pkg;

	put(o, AML_NAME, 1);
	aml_nameseg(o, "_CRS");
	put(o, AML_BUFFER, 1);
	pkg = aml_pkg_begin(o);
	aml_integer(o, r->n);
	put_bytes(o, r->b, r->n);
	aml_pkg_end(o, pkg);
}

/* Starts Device(@name); returns the package to end. */
static size_t aml_device_begin(struct out *o, const char *name)
{
	size_t pkg;

	put(o, AML_EXT, 1);
	put(o, AML_DEVICE, 1);
	pkg = aml_pkg_begin(o);
	aml_nameseg(o, name);
	return pkg;
}

/* True if another virtio-mmio device of @c uses device @idx's GSI. */
static bool gsi_shared(const struct acpi_config *c, unsigned int idx)
{
	unsigned int i;

	for (i = 0; i < c->nr_virtio; i++)
		if (i != idx && c->virtio[i].gsi == c->virtio[idx].gsi)
			return true;
	return false;
}

static void dsdt_virtio(struct out *o, const struct acpi_config *c,
			unsigned int idx)
{
	const struct acpi_virtio *v = &c->virtio[idx];
	char name[5] = { 'V', (char)('0' + idx / 100),
			 (char)('0' + idx / 10 % 10), (char)('0' + idx % 10),
			 0 };
	struct restpl r = { .n = 0 };
	size_t dev = aml_device_begin(o, name);

	aml_name_string(o, "_HID", "LNRO0005");
	aml_name_integer(o, "_UID", idx);
	/* DMA is cache-coherent (arm64 Linux needs this; x86 assumes it). */
	aml_name_integer(o, "_CCA", 1);
	res_mem32(&r, (uint32_t)v->base, v->size);
	res_ext_irq(&r, v->gsi, gsi_shared(c, idx));
	res_end(&r);
	aml_name_crs(o, &r);
	aml_pkg_end(o, dev);
}

/* An ISA device with one I/O range and at most one IRQ. */
static void dsdt_isa(struct out *o, const char *name, const char *eisaid,
		     uint16_t port, uint8_t nports, uint8_t irq)
{
	struct restpl r = { .n = 0 };
	size_t dev = aml_device_begin(o, name);

	aml_hid_eisaid(o, eisaid);
	aml_name_integer(o, "_UID", 1);
	res_io(&r, port, nports);
	if (irq)
		res_irq(&r, irq);
	res_end(&r);
	aml_name_crs(o, &r);
	aml_pkg_end(o, dev);
}

static size_t build_dsdt(struct out *o, const struct acpi_config *c)
{
	size_t start = table_begin(o, "DSDT", DSDT_REV);
	size_t pkg;
	unsigned int i;

	put(o, AML_SCOPE, 1);
	pkg = aml_pkg_begin(o);
	put(o, AML_ROOT, 1);
	aml_nameseg(o, "_SB");
	if (c->serial_port)
		dsdt_isa(o, "COM1", "PNP0501", c->serial_port, 8,
			 c->serial_irq);
	if (c->rtc_port)
		dsdt_isa(o, "RTC", "PNP0B00", c->rtc_port, 2, c->rtc_irq);
	for (i = 0; i < c->nr_virtio; i++)
		dsdt_virtio(o, c, i);
	aml_pkg_end(o, pkg);

	/* Name(_S5, Package(4) { SLP_TYPa, SLP_TYPb, reserved, reserved }) */
	put(o, AML_NAME, 1);
	aml_nameseg(o, "_S5");
	put(o, AML_PACKAGE, 1);
	pkg = aml_pkg_begin(o);
	put(o, 4, 1); /* NumElements */
	aml_integer(o, ACPI_SLP_TYP_S5);
	aml_integer(o, 0);
	aml_integer(o, 0);
	aml_integer(o, 0);
	aml_pkg_end(o, pkg);

	table_end(o, start);
	return start;
}

static size_t build_fadt(struct out *o, const struct acpi_config *c,
			 uint64_t dsdt_gpa)
{
	size_t start = table_begin(o, "FACP", FADT_REV);
	uint16_t boot = IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED;

	/* Zero: no FACS, SCI_INT 0, SMI_CMD 0, no PM or GPE blocks. */
	put_zeros(o, FADT_LEN - HDR_LEN);
	if (dsdt_gpa <= UINT32_MAX)
		put_at(o, start + FADT_DSDT, dsdt_gpa, 4);
	put_at(o, start + FADT_X_DSDT, dsdt_gpa, 8);
	if (c->serial_port)
		boot |= IAPC_LEGACY_DEVICES;
	put_at(o, start + FADT_IAPC_BOOT_ARCH, boot, 2);
	put_at(o, start + FADT_FLAGS,
	       FADT_F_WBINVD | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON |
		       FADT_F_RESET_REG_SUP | FADT_F_HW_REDUCED_ACPI,
	       4);
	put_gas_io8_at(o, start + FADT_RESET_REG, c->reset_port);
	put_at(o, start + FADT_RESET_VALUE, c->reset_value, 1);
	put_at(o, start + FADT_MINOR_VERSION, FADT_MINOR, 1);
	put_gas_io8_at(o, start + FADT_SLEEP_CONTROL, c->sleep_port);
	put_gas_io8_at(o, start + FADT_SLEEP_STATUS, c->sleep_port);
	if (out_fits(o, start + FADT_HYPERVISOR_ID, 8))
		memcpy(o->buf + start + FADT_HYPERVISOR_ID, ACPI_HYPERVISOR_ID,
		       8);
	table_end(o, start);
	return start;
}

static size_t build_madt(struct out *o, const struct acpi_config *c)
{
	size_t start = table_begin(o, "APIC", MADT_REV);
	unsigned int i;

	put(o, c->lapic_base, 4);
	put(o, MADT_PCAT_COMPAT, 4);
	for (i = 0; i < c->nr_cpus; i++) {
		put(o, MADT_LAPIC, 1);
		put(o, MADT_LAPIC_LEN, 1);
		put(o, i, 1); /* ACPI processor uid */
		put(o, i, 1); /* APIC id */
		put(o, MADT_LAPIC_ENABLED, 4);
	}
	put(o, MADT_IOAPIC, 1);
	put(o, MADT_IOAPIC_LEN, 1);
	put(o, 0, 1); /* IOAPIC id */
	put(o, 0, 1);
	put(o, c->ioapic_base, 4);
	put(o, 0, 4); /* GSI base */
	put(o, MADT_LAPIC_NMI, 1);
	put(o, MADT_LAPIC_NMI_LEN, 1);
	put(o, MADT_ALL_CPUS, 1);
	put(o, 0, 2); /* polarity and trigger: as the bus says */
	put(o, MADT_NMI_LINT1, 1);
	table_end(o, start);
	return start;
}

static size_t build_xsdt(struct out *o, uint64_t fadt_gpa, uint64_t madt_gpa)
{
	size_t start = table_begin(o, "XSDT", XSDT_REV);

	put(o, fadt_gpa, 8);
	put(o, madt_gpa, 8);
	table_end(o, start);
	return start;
}

/*
 * Level-triggered virtio-mmio lines may be shared (the DSDT says so); an
 * edge-triggered ISA IRQ is exclusive.
 */
static int check_irqs(const struct acpi_config *c, char *err, size_t errlen)
{
	unsigned int i;

	for (i = 0; i < c->nr_virtio; i++) {
		uint32_t gsi = c->virtio[i].gsi;

		if ((c->serial_port && c->serial_irq && gsi == c->serial_irq) ||
		    (c->rtc_port && c->rtc_irq && gsi == c->rtc_irq))
			return err_printf(
				err, errlen, -EINVAL,
				"virtio-mmio device %u: GSI %u is also an ISA device's IRQ",
				i, gsi);
	}
	if (c->serial_port && c->rtc_port && c->serial_irq &&
	    c->serial_irq == c->rtc_irq)
		return err_printf(err, errlen, -EINVAL,
				  "serial port and RTC share IRQ %u",
				  c->serial_irq);
	return 0;
}

static int check_virtio(const struct acpi_config *c, char *err, size_t errlen)
{
	unsigned int i, j;

	if (c->nr_virtio > ACPI_MAX_VIRTIO)
		return err_printf(err, errlen, -EINVAL,
				  "%u virtio-mmio devices, at most %d",
				  c->nr_virtio, ACPI_MAX_VIRTIO);
	if (c->nr_virtio && !c->virtio)
		return err_printf(err, errlen, -EINVAL,
				  "%u virtio-mmio devices but no array",
				  c->nr_virtio);
	for (i = 0; i < c->nr_virtio; i++) {
		const struct acpi_virtio *v = &c->virtio[i];

		if (!v->size || v->base > (1ull << 32) - v->size)
			return err_printf(
				err, errlen, -EINVAL,
				"virtio-mmio device %u: window %#llx+%#x is empty or not below 4 GiB",
				i, (unsigned long long)v->base, v->size);
		if (v->gsi >= ACPI_IOAPIC_PINS)
			return err_printf(
				err, errlen, -EINVAL,
				"virtio-mmio device %u: GSI %u is not an IOAPIC pin (0-%d)",
				i, v->gsi, ACPI_IOAPIC_PINS - 1);
		for (j = 0; j < i; j++)
			if (v->base < c->virtio[j].base + c->virtio[j].size &&
			    c->virtio[j].base < v->base + v->size)
				return err_printf(
					err, errlen, -EINVAL,
					"virtio-mmio devices %u and %u overlap",
					j, i);
	}
	return 0;
}

static int check_isa(const char *what, uint16_t port, uint8_t nports,
		     uint8_t irq, char *err, size_t errlen)
{
	if (!port)
		return 0;
	if ((uint32_t)port + nports > 0x10000)
		return err_printf(err, errlen, -EINVAL,
				  "%s ports %#x+%u pass 0xffff", what, port,
				  nports);
	if (irq > 15 || irq == 2)
		return err_printf(err, errlen, -EINVAL,
				  "%s IRQ %u is not an ISA IRQ", what, irq);
	return 0;
}

static int check_config(const struct acpi_config *c, uint64_t gpa, size_t len,
			char *err, size_t errlen)
{
	int ret;

	if (!c->nr_cpus || c->nr_cpus > ACPI_MAX_CPUS)
		return err_printf(err, errlen, -EINVAL,
				  "%u vCPUs, the MADT describes 1 to %d",
				  c->nr_cpus, ACPI_MAX_CPUS);
	if (!c->lapic_base || c->lapic_base > UINT32_MAX || !c->ioapic_base ||
	    c->ioapic_base > UINT32_MAX)
		return err_printf(
			err, errlen, -EINVAL,
			"LAPIC %#llx or IOAPIC %#llx is not a 32-bit address",
			(unsigned long long)c->lapic_base,
			(unsigned long long)c->ioapic_base);
	/* Address 0 means "absent": Linux would not power off or reset. */
	if (!c->sleep_port || !c->reset_port)
		return err_printf(err, errlen, -EINVAL,
				  "sleep port %#x or reset port %#x is 0",
				  c->sleep_port, c->reset_port);
	if (!IS_ALIGNED(gpa, (uint64_t)ACPI_ALIGN) || len > UINT64_MAX - gpa)
		return err_printf(
			err, errlen, -EINVAL,
			"tables at %#llx: not 16-byte aligned or past 2^64",
			(unsigned long long)gpa);
	ret = check_virtio(c, err, errlen);
	if (!ret)
		ret = check_isa("serial", c->serial_port, 8, c->serial_irq, err,
				errlen);
	if (!ret)
		ret = check_isa("RTC", c->rtc_port, 2, c->rtc_irq, err, errlen);
	if (!ret)
		ret = check_irqs(c, err, errlen);
	return ret;
}

int acpi_build(const struct acpi_config *c, void *buf, size_t len, uint64_t gpa,
	       uint64_t *rsdp_gpa, size_t *used, char *err, size_t errlen)
{
	struct out o = { .buf = buf, .cap = buf ? len : 0 };
	size_t dsdt, fadt, madt, xsdt;
	int ret;

	if (!c)
		return err_printf(err, errlen, -EINVAL, "no configuration");
	ret = check_config(c, gpa, len, err, errlen);
	if (ret)
		return ret;

	/* The RSDP: its XSDT pointer and checksums come last. */
	put_bytes(&o, "RSD PTR ", 8);
	put(&o, 0, 1); /* checksum of the first 20 bytes */
	put_bytes(&o, ACPI_OEM_ID, 6);
	put(&o, 2, 1); /* revision: ACPI 2.0+, has the XSDT */
	put(&o, 0, 4); /* no RSDT */
	put(&o, RSDP_LEN, 4);
	put(&o, 0, 8); /* XSDT */
	put(&o, 0, 1); /* checksum of all 36 bytes */
	put_zeros(&o, 3);

	dsdt = build_dsdt(&o, c);
	fadt = build_fadt(&o, c, gpa + dsdt);
	madt = build_madt(&o, c);
	xsdt = build_xsdt(&o, gpa + fadt, gpa + madt);

	put_at(&o, RSDP_XSDT, gpa + xsdt, 8);
	put_checksum(&o, 0, RSDP_V1_LEN, RSDP_CHECKSUM);
	put_checksum(&o, 0, RSDP_LEN, RSDP_XCHECKSUM);

	if (used)
		*used = o.pos;
	if (o.full)
		return err_printf(err, errlen, -ENOSPC,
				  "ACPI tables need %zu bytes, %zu available",
				  o.pos, len);
	if (rsdp_gpa)
		*rsdp_gpa = gpa;
	return 0;
}
