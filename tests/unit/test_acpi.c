/* SPDX-License-Identifier: MIT */
/*
 * The ACPI table builder: the tables are parsed back the way Linux reads
 * them (RSDP -> XSDT -> FADT -> DSDT, MADT subtables by length, AML
 * packages by PkgLength), and bad configurations are refused. If iasl is
 * installed, one test also has it disassemble the tables.
 */
#include "kernel/x86/acpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/unit_tests.h"

#define GPA 0xe0000ull
#define NR_DEVS 8

static const struct acpi_virtio devs[NR_DEVS] = {
	{ 0xd0000000, 0x200, 5 },  { 0xd0001000, 0x200, 6 },
	{ 0xd0002000, 0x200, 7 },  { 0xd0003000, 0x200, 9 },
	{ 0xd0004000, 0x200, 10 }, { 0xd0005000, 0x200, 11 },
	{ 0xd0006000, 0x200, 12 }, { 0xd0007000, 0x200, 14 },
};

static struct acpi_config config(unsigned int nr_cpus, unsigned int nr_virtio)
{
	return (struct acpi_config){ .nr_cpus = nr_cpus,
				     .virtio = devs,
				     .nr_virtio = nr_virtio,
				     .ioapic_base = 0xfec00000,
				     .lapic_base = 0xfee00000,
				     .sleep_port = 0x600,
				     .reset_port = 0xcf9,
				     .reset_value = 0x06,
				     .serial_port = 0x3f8,
				     .serial_irq = 4,
				     .rtc_port = 0x70 };
}

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = (v << 8) | p[n];
	return v;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* The built tables, and where each one starts in the buffer. */
struct tables {
	uint8_t buf[ACPI_TABLES_MAX];
	size_t used;
	uint64_t gpa;
	const uint8_t *xsdt, *fadt, *madt, *dsdt;
};

/* Returns the table at guest address @addr, checking its header. */
static const uint8_t *table_at(const struct tables *t, uint64_t addr,
			       const char *sig)
{
	const uint8_t *p;
	uint32_t len;

	TEST_ASSERT(addr >= t->gpa && addr - t->gpa + 36 <= t->used,
		    "%s at %#llx lies outside the %zu bytes at %#llx", sig,
		    (unsigned long long)addr, t->used,
		    (unsigned long long)t->gpa);
	p = t->buf + (addr - t->gpa);
	len = (uint32_t)le(p + 4, 4);
	TEST_ASSERT(!memcmp(p, sig, 4), "expected %s, found %.4s", sig, p);
	TEST_ASSERT(len >= 36 && addr - t->gpa + len <= t->used,
		    "%s: length %u runs past the tables", sig, len);
	TEST_ASSERT(sum(p, len) == 0, "%s: checksum off by %u", sig,
		    sum(p, len));
	TEST_ASSERT(!memcmp(p + 10, "VMRUN ", 6), "%s: OEM id %.6s", sig,
		    p + 10);
	return p;
}

/* Builds the tables for @c at @gpa and follows the pointers between them. */
static void build(struct tables *t, const struct acpi_config *c, uint64_t gpa)
{
	uint64_t rsdp = 0;
	char err[256] = "";
	int ret;

	memset(t->buf, 0xa5, sizeof(t->buf)); /* no help from zeroes */
	t->gpa = gpa;
	ret = acpi_build(c, t->buf, sizeof(t->buf), gpa, &rsdp, &t->used, err,
			 sizeof(err));
	TEST_ASSERT(ret == 0, "acpi_build: %d %s", ret, err);
	TEST_ASSERT(rsdp == gpa && t->used <= sizeof(t->buf),
		    "rsdp %#llx used %zu", (unsigned long long)rsdp, t->used);

	TEST_ASSERT(!memcmp(t->buf, "RSD PTR ", 8), "RSDP signature");
	TEST_ASSERT(t->buf[15] == 2, "RSDP revision %u", t->buf[15]);
	TEST_ASSERT(sum(t->buf, 20) == 0 && sum(t->buf, 36) == 0,
		    "RSDP checksums %u %u", sum(t->buf, 20), sum(t->buf, 36));
	TEST_ASSERT(le(t->buf + 20, 4) == 36, "RSDP length %llu",
		    (unsigned long long)le(t->buf + 20, 4));
	TEST_ASSERT(le(t->buf + 16, 4) == 0, "an RSDT we did not build");

	t->xsdt = table_at(t, le(t->buf + 24, 8), "XSDT");
	TEST_ASSERT(le(t->xsdt + 4, 4) == 36 + 2 * 8, "XSDT length %llu",
		    (unsigned long long)le(t->xsdt + 4, 4));
	t->fadt = table_at(t, le(t->xsdt + 36, 8), "FACP");
	t->madt = table_at(t, le(t->xsdt + 44, 8), "APIC");
	t->dsdt = table_at(t, le(t->fadt + 140, 8), "DSDT");
}

static void test_acpi_tables_link_up(void)
{
	static struct tables t;
	struct acpi_config c = config(4, NR_DEVS);
	const uint8_t *f;

	build(&t, &c, GPA);
	f = t.fadt;
	TEST_ASSERT(le(f + 4, 4) == 276 && f[8] == 6 && f[131] == 4,
		    "FADT length %llu revision %u.%u",
		    (unsigned long long)le(f + 4, 4), f[8], f[131]);
	TEST_ASSERT(le(f + 40, 4) == le(f + 140, 8), "DSDT %#llx X_DSDT %#llx",
		    (unsigned long long)le(f + 40, 4),
		    (unsigned long long)le(f + 140, 8));
	TEST_ASSERT(t.dsdt[8] == 2, "DSDT revision %u", t.dsdt[8]);
	TEST_ASSERT(le(t.madt + 8, 1) == 5, "MADT revision %u", t.madt[8]);
	/* Every table is 16-byte aligned, and none overlap the RSDP. */
	TEST_ASSERT((t.xsdt - t.buf) % 16 == 0 && (t.fadt - t.buf) % 16 == 0 &&
			    (t.madt - t.buf) % 16 == 0 &&
			    (t.dsdt - t.buf) % 16 == 0 && t.dsdt - t.buf >= 36,
		    "alignment");
}

static void test_acpi_fadt_fields(void)
{
	static struct tables t;
	struct acpi_config c = config(2, 1);
	const uint8_t *f;
	uint32_t flags;
	uint16_t boot;
	unsigned int i;

	build(&t, &c, GPA);
	f = t.fadt;
	flags = (uint32_t)le(f + 112, 4);
	boot = (uint16_t)le(f + 109, 2);
	TEST_ASSERT((flags & (1u << 20)) && (flags & (1u << 10)),
		    "flags %#x: HW_REDUCED_ACPI and RESET_REG_SUP", flags);
	TEST_ASSERT((flags & 0x30) == 0x30, "flags %#x: no fixed buttons",
		    flags);
	TEST_ASSERT((boot & 0x0c) == 0x0c && !(boot & 0x02) && !(boot & 0x20),
		    "IAPC_BOOT_ARCH %#x: no VGA, no MSI, no 8042, a CMOS RTC",
		    boot);
	/* RESET_REG: I/O space, 8 bits, byte access, then the value. */
	TEST_ASSERT(f[116] == 1 && f[117] == 8 && f[118] == 0 && f[119] == 1 &&
			    le(f + 120, 8) == 0xcf9 && f[128] == 0x06,
		    "RESET_REG %u/%u/%u/%u at %#llx value %#x", f[116], f[117],
		    f[118], f[119], (unsigned long long)le(f + 120, 8), f[128]);
	for (i = 244; i <= 256; i += 12)
		TEST_ASSERT(f[i] == 1 && f[i + 1] == 8 && f[i + 3] == 1 &&
				    le(f + i + 4, 8) == 0x600,
			    "sleep register at FADT+%u: %u/%u at %#llx", i,
			    f[i], f[i + 1],
			    (unsigned long long)le(f + i + 4, 8));
	TEST_ASSERT(!memcmp(f + 268, "VMRUN", 5), "hypervisor id %.8s",
		    f + 268);
	/* SCI_INT, SMI_CMD, PM1a_EVT_BLK .. GPE1_BLK: all 0. */
	for (i = 46; i < 88; i++)
		TEST_ASSERT(!f[i], "FADT byte %u is %#x", i, f[i]);
	/* The X_ blocks (PM1a_EVT .. GPE1): all 0. */
	for (i = 148; i < 244; i++)
		TEST_ASSERT(!f[i], "FADT byte %u is %#x", i, f[i]);
}

/* The tables somewhere above 4 GiB: the 32-bit DSDT pointer stays 0. */
static void test_acpi_above_4g(void)
{
	static struct tables t;
	struct acpi_config c = config(1, 1);

	build(&t, &c, 0x100000000ull);
	TEST_ASSERT(le(t.fadt + 40, 4) == 0, "FADT.DSDT %#llx",
		    (unsigned long long)le(t.fadt + 40, 4));
}

static void check_madt(unsigned int nr_cpus)
{
	static struct tables t;
	struct acpi_config c = config(nr_cpus, 2);
	const uint8_t *m, *p, *end;
	unsigned int cpus = 0, ioapics = 0, nmis = 0;

	build(&t, &c, GPA);
	m = t.madt;
	end = m + le(m + 4, 4);
	TEST_ASSERT(le(m + 36, 4) == 0xfee00000 && le(m + 40, 4) == 1,
		    "local APIC address %#llx flags %#llx",
		    (unsigned long long)le(m + 36, 4),
		    (unsigned long long)le(m + 40, 4));
	for (p = m + 44; p < end; p += p[1]) {
		TEST_ASSERT(p[1] >= 2 && p + p[1] <= end,
			    "subtable at +%td: length %u", p - m, p[1]);
		switch (p[0]) {
		case 0:
			TEST_ASSERT(p[1] == 8 && p[2] == cpus && p[3] == cpus &&
					    le(p + 4, 4) == 1,
				    "local APIC %u: uid %u id %u flags %#llx",
				    cpus, p[2], p[3],
				    (unsigned long long)le(p + 4, 4));
			cpus++;
			break;
		case 1:
			TEST_ASSERT(p[1] == 12 && p[2] == 0 &&
					    le(p + 4, 4) == 0xfec00000 &&
					    le(p + 8, 4) == 0,
				    "IOAPIC id %u at %#llx GSI base %llu", p[2],
				    (unsigned long long)le(p + 4, 4),
				    (unsigned long long)le(p + 8, 4));
			ioapics++;
			break;
		case 4:
			TEST_ASSERT(p[1] == 6 && p[2] == 0xff && p[5] == 1,
				    "local APIC NMI uid %#x LINT%u", p[2],
				    p[5]);
			nmis++;
			break;
		default:
			TEST_ASSERT(false, "unexpected subtable type %u", p[0]);
		}
	}
	TEST_ASSERT(p == end, "subtables overrun the MADT");
	TEST_ASSERT(cpus == nr_cpus && ioapics == 1 && nmis == 1,
		    "%u local APICs (want %u), %u IOAPICs, %u NMI entries",
		    cpus, nr_cpus, ioapics, nmis);
}

static void test_acpi_madt_cpus(void)
{
	check_madt(1);
	check_madt(4);
	check_madt(ACPI_MAX_CPUS);
}

/* Decodes the PkgLength at @p; returns the package's length from @p. */
static size_t pkglen(const uint8_t *p, size_t *nbytes)
{
	size_t n = (p[0] >> 6) + 1, len, i;

	if (n == 1) {
		*nbytes = 1;
		return p[0] & 0x3f;
	}
	len = p[0] & 0x0f;
	for (i = 1; i < n; i++)
		len |= (size_t)p[i] << (4 + 8 * (i - 1));
	*nbytes = n;
	return len;
}

static size_t count(const uint8_t *p, size_t n, const void *pat, size_t m)
{
	size_t i, hits = 0;

	for (i = 0; i + m <= n; i++)
		hits += !memcmp(p + i, pat, m);
	return hits;
}

/*
 * Walks Device(Vnnn) { Name(_HID) Name(_UID) Name(_CCA) Name(_CRS) } at
 * @p, checking each object where it must be; returns the end.
 */
static const uint8_t *check_virtio_dev(const uint8_t *p, unsigned int idx,
				       const struct acpi_virtio *v, bool shared)
{
	size_t nb, len, blen, bsz;
	const uint8_t *end, *crs, *res;
	char name[5];
	uint8_t mem[12] = { 0x86, 9, 0, 1 };
	uint8_t irq[9] = { 0x89, 6, 0, shared ? 0x09 : 0x01, 1 };

	TEST_ASSERT(p[0] == 0x5b && p[1] == 0x82, "device %u: opcode %#x %#x",
		    idx, p[0], p[1]);
	len = pkglen(p + 2, &nb);
	end = p + 2 + len;
	snprintf(name, sizeof(name), "V%03u", idx % 1000);
	TEST_ASSERT(!memcmp(p + 2 + nb, name, 4), "device %u named %.4s", idx,
		    p + 2 + nb);
	p += 2 + nb + 4;
	TEST_ASSERT(!memcmp(p, "\x08_HID\x0dLNRO0005", 15), "device %u _HID",
		    idx);
	p += 15;
	TEST_ASSERT(!memcmp(p, "\x08_UID", 5), "device %u _UID", idx);
	if (idx < 2) {
		TEST_ASSERT(p[5] == idx, "_UID %u encoded as %#x", idx, p[5]);
		p += 6;
	} else {
		TEST_ASSERT(p[5] == 0x0a && p[6] == idx,
			    "_UID %u encoded as %#x %#x", idx, p[5], p[6]);
		p += 7;
	}
	TEST_ASSERT(!memcmp(p, "\x08_CCA\x01", 6), "device %u _CCA", idx);
	p += 6;
	TEST_ASSERT(!memcmp(p, "\x08_CRS\x11", 6), "device %u _CRS", idx);
	crs = p + 5;
	blen = pkglen(crs + 1, &nb);
	TEST_ASSERT(crs[1 + nb] == 0x0a, "buffer size prefix %#x", crs[1 + nb]);
	bsz = crs[2 + nb];
	res = crs + 3 + nb;
	TEST_ASSERT(bsz == 12 + 9 + 2 && res + bsz == crs + 1 + blen &&
			    crs + 1 + blen == end,
		    "device %u: buffer of %zu bytes, package ends %td early",
		    idx, bsz, end - (crs + 1 + blen));
	memcpy(mem + 4, &v->base, 4);
	memcpy(mem + 8, &v->size, 4);
	memcpy(irq + 5, &v->gsi, 4);
	TEST_ASSERT(!memcmp(res, mem, 12), "device %u: Memory32Fixed", idx);
	TEST_ASSERT(!memcmp(res + 12, irq, 9), "device %u: Interrupt", idx);
	TEST_ASSERT(res[21] == 0x79 && sum(res, bsz) == 0,
		    "device %u: EndTag %#x, template sum %u", idx, res[21],
		    sum(res, bsz));
	return end;
}

/*
 * Parses the DSDT built for @c: Scope(\_SB) { [COM1] [RTC_] V000.. } and
 * Name(_S5), every package exactly as long as its PkgLength says.
 * @shared[i] says whether device i should declare its GSI Shared.
 */
static void check_dsdt(const struct acpi_config *c, const bool *shared)
{
	static struct tables t;
	const uint8_t *d, *p, *scope_end, *end;
	size_t nb, len;
	unsigned int i;

	build(&t, c, GPA);
	d = t.dsdt;
	end = d + le(d + 4, 4);
	TEST_ASSERT(count(d, (size_t)(end - d), "LNRO0005", 8) == c->nr_virtio,
		    "LNRO0005 %zu times for %u devices",
		    count(d, (size_t)(end - d), "LNRO0005", 8), c->nr_virtio);

	p = d + 36;
	TEST_ASSERT(p[0] == 0x10, "Scope opcode %#x", p[0]);
	len = pkglen(p + 1, &nb);
	scope_end = p + 1 + len;
	TEST_ASSERT(nb == (len < 64 ? 1u : 2u), "%zu-byte PkgLength for %zu",
		    nb, len);
	TEST_ASSERT(!memcmp(p + 1 + nb, "\\_SB_", 5), "Scope name");
	p += 1 + nb + 5;
	if (c->serial_port) {
		/* EisaId("PNP0501"), IO(Decode16, 0x3f8, 0x3f8, 1, 8),
		 * IRQNoFlags() { 4 }, EndTag. */
		TEST_ASSERT(
			!memcmp(p + 3, "COM1\x08_HID\x0c\x41\xd0\x05\x01", 14),
			"COM1 with EisaId(\"PNP0501\")");
		len = 2 + pkglen(p + 2, &nb);
		TEST_ASSERT(
			count(p, len,
			      "\x47\x01\xf8\x03\xf8\x03\x01\x08\x22\x10\x00\x79",
			      12) == 1,
			"COM1 resources");
		p += len;
	}
	if (c->rtc_port) {
		TEST_ASSERT(
			!memcmp(p + 3, "RTC_\x08_HID\x0c\x41\xd0\x0b\x00", 14),
			"RTC_ with EisaId(\"PNP0B00\")");
		len = 2 + pkglen(p + 2, &nb);
		TEST_ASSERT(count(p, len,
				  "\x47\x01\x70\x00\x70\x00\x01\x02\x79",
				  9) == 1,
			    "RTC resources");
		p += len;
	}
	for (i = 0; i < c->nr_virtio; i++)
		p = check_virtio_dev(p, i, &c->virtio[i], shared && shared[i]);
	TEST_ASSERT(p == scope_end, "Scope ends %td bytes after its devices",
		    scope_end - p);

	/* Name(_S5, Package(4) { 5, 0, 0, 0 }) closes the table. */
	TEST_ASSERT(
		!memcmp(p, "\x08_S5_\x12\x07\x04\x0a\x05\x00\x00\x00", 13) &&
			p + 13 == end,
		"_S5 object, %td bytes before the end", end - p);
}

static void test_acpi_dsdt_devices(void)
{
	struct acpi_config c = config(1, 0);

	c.serial_port = c.rtc_port = 0;
	check_dsdt(&c, NULL);
	c = config(1, 1);
	check_dsdt(&c, NULL);
	c = config(1, NR_DEVS);
	check_dsdt(&c, NULL);
	c.serial_port = 0;
	check_dsdt(&c, NULL);
}

/*
 * All 32 devices: the Scope needs a 2-byte PkgLength, and with 19 free
 * pins (5-23) some GSIs are shared, which the DSDT declares.
 */
static void test_acpi_dsdt_max_devices(void)
{
	static struct acpi_virtio many[ACPI_MAX_VIRTIO];
	struct acpi_config c = config(ACPI_MAX_CPUS, ACPI_MAX_VIRTIO);
	bool shared[ACPI_MAX_VIRTIO];
	unsigned int i;

	for (i = 0; i < ACPI_MAX_VIRTIO; i++) {
		many[i] = (struct acpi_virtio){ 0xd0000000 + 0x1000 * i, 0x200,
						5 + i % 19 };
		shared[i] = i < ACPI_MAX_VIRTIO - 19 || i >= 19;
	}
	c.virtio = many;
	check_dsdt(&c, shared);
}

/* The largest configuration fits in ACPI_TABLES_MAX and the bound. */
static void test_acpi_size_bound(void)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	static struct acpi_virtio many[ACPI_MAX_VIRTIO];
	struct acpi_config c = config(ACPI_MAX_CPUS, ACPI_MAX_VIRTIO);
	char err[256] = "";
	uint64_t rsdp;
	size_t used = 0, small = 0;
	unsigned int i;
	int ret;

	for (i = 0; i < ACPI_MAX_VIRTIO; i++)
		many[i] = (struct acpi_virtio){ 0xfff00000 + 0x1000 * i, 0x1000,
						9 + i % 15 };
	c.virtio = many;
	c.rtc_irq = 8;
	ret = acpi_build(&c, buf, sizeof(buf), GPA, &rsdp, &used, err,
			 sizeof(err));
	TEST_ASSERT(ret == 0 && used <= ACPI_TABLES_MAX &&
			    used <= 1024 + 8 * ACPI_MAX_CPUS +
					    80 * ACPI_MAX_VIRTIO,
		    "ret %d (%s), %zu bytes", ret, err, used);
	printf("\n    largest tables: %zu bytes ", used);

	/* Asked with no buffer, it says how much it needs. */
	small = 0;
	ret = acpi_build(&c, NULL, 0, GPA, &rsdp, &small, err, sizeof(err));
	TEST_ASSERT(ret == -ENOSPC && small == used,
		    "sizing query: %d, %zu bytes for %zu", ret, small, used);

	/* Exactly @used bytes suffice; one fewer does not. */
	ret = acpi_build(&c, buf, used, GPA, &rsdp, &small, err, sizeof(err));
	TEST_ASSERT(ret == 0 && small == used, "ret %d in %zu bytes", ret,
		    used);
	err[0] = 0;
	ret = acpi_build(&c, buf, used - 1, GPA, &rsdp, &small, err,
			 sizeof(err));
	TEST_ASSERT(ret == -ENOSPC && strstr(err, "bytes"),
		    "ret %d in %zu bytes: '%s'", ret, used - 1, err);

	/* Every shorter buffer, each exactly as long as it claims to be
	 * (so that a sanitizer sees any write past it), is refused. */
	for (i = 0; i < used; i++) {
		uint8_t *b = malloc(i ? i : 1);

		TEST_ASSERT(b, "malloc");
		ret = acpi_build(&c, b, i, GPA, &rsdp, &small, err,
				 sizeof(err));
		free(b);
		TEST_ASSERT(ret == -ENOSPC, "%u bytes: %d", i, ret);
	}
}

/* A GSI two devices have is declared Shared by both, and only by them. */
static void test_acpi_shared_gsi(void)
{
	struct acpi_virtio v[3] = { devs[0], devs[1], devs[2] };
	struct acpi_config c = config(2, 3);
	bool shared[3] = { true, false, true };

	v[2].gsi = v[0].gsi;
	c.virtio = v;
	check_dsdt(&c, shared);
}

static void expect_refused(const struct acpi_config *c, size_t len,
			   uint64_t gpa, int want, const char *what)
{
	static uint8_t buf[ACPI_TABLES_MAX];
	char err[256] = "";
	uint64_t rsdp = 0;
	size_t used = 0;
	int ret = acpi_build(c, buf, len, gpa, &rsdp, &used, err, sizeof(err));

	TEST_ASSERT(ret == want, "%s: returned %d, want %d (%s)", what, ret,
		    want, err);
	TEST_ASSERT(err[0], "%s: no reason given", what);
}

static void test_acpi_bad_config(void)
{
	struct acpi_virtio v[ACPI_MAX_VIRTIO + 1];
	struct acpi_config c;
	unsigned int i;

	for (i = 0; i <= ACPI_MAX_VIRTIO; i++)
		v[i] = (struct acpi_virtio){ 0xd0000000 + 0x1000 * i, 0x200,
					     i % ACPI_IOAPIC_PINS };

#define REFUSE(stmt, want, what)                                      \
	do {                                                          \
		c = config(2, 2);                                     \
		stmt;                                                 \
		expect_refused(&c, ACPI_TABLES_MAX, GPA, want, what); \
	} while (0)

	REFUSE(c.nr_cpus = 0, -EINVAL, "0 vCPUs");
	REFUSE(c.nr_cpus = 256, -EINVAL, "256 vCPUs");
	REFUSE((c.virtio = v, c.nr_virtio = ACPI_MAX_VIRTIO + 1), -EINVAL,
	       "33 devices");
	REFUSE(c.virtio = NULL, -EINVAL, "no device array");
	REFUSE((c.virtio = v, v[1].base = 0xfffff000, v[1].size = 0x2000),
	       -EINVAL, "window crossing 4 GiB");
	REFUSE((c.virtio = v, v[1].base = 0x100000000ull), -EINVAL,
	       "window above 4 GiB");
	v[1].base = 0xd0001000;
	v[1].size = 0x200;
	REFUSE((c.virtio = v, v[1].size = 0), -EINVAL, "empty window");
	v[1].size = 0x200;
	REFUSE((c.virtio = v, v[1].base = 0xd0000100), -EINVAL,
	       "overlapping windows");
	v[1].base = 0xd0001000;
	REFUSE((c.virtio = v, v[1].gsi = 24), -EINVAL, "GSI 24");
	REFUSE((c.virtio = v, v[1].gsi = 4), -EINVAL, "GSI of the serial port");
	v[1].gsi = 1;
	REFUSE(c.serial_irq = 16, -EINVAL, "serial IRQ 16");
	REFUSE(c.serial_port = 0xfffc, -EINVAL, "serial ports past 0xffff");
	REFUSE(c.rtc_irq = 4, -EINVAL, "RTC on the serial IRQ");
	REFUSE(c.sleep_port = 0, -EINVAL, "no sleep port");
	REFUSE(c.reset_port = 0, -EINVAL, "no reset port");
	REFUSE(c.ioapic_base = 0x100000000ull, -EINVAL, "64-bit IOAPIC");
	REFUSE(c.lapic_base = 0, -EINVAL, "no LAPIC address");
#undef REFUSE

	c = config(2, 2);
	expect_refused(&c, ACPI_TABLES_MAX, GPA + 8, -EINVAL, "unaligned gpa");
	expect_refused(&c, 0, GPA, -ENOSPC, "empty buffer");
	expect_refused(&c, 64, GPA, -ENOSPC, "64-byte buffer");
	expect_refused(&c, 400, GPA, -ENOSPC, "400-byte buffer");
	expect_refused(NULL, ACPI_TABLES_MAX, GPA, -EINVAL, "no config");
	/* A serial port without an IRQ and a GSI 0 device coexist. */
	c.serial_irq = 0;
	c.virtio = v;
	{
		static uint8_t buf[ACPI_TABLES_MAX];
		char err[256] = "";
		uint64_t rsdp;
		size_t used;
		int ret = acpi_build(&c, buf, sizeof(buf), GPA, &rsdp, &used,
				     err, sizeof(err));

		TEST_ASSERT(ret == 0, "IRQ-less serial port: %d %s", ret, err);
	}
}

static void check_pkglength(size_t body, size_t want)
{
	uint8_t enc[4];
	size_t n = acpi_aml_pkglength(enc, body), nb, len;

	TEST_ASSERT(n == want, "body %zu: %zu bytes, want %zu", body, n, want);
	if (!n)
		return;
	len = pkglen(enc, &nb);
	TEST_ASSERT(nb == n && len == body + n,
		    "body %zu: decodes as %zu in %zu bytes", body, len, nb);
	if (n > 1)
		TEST_ASSERT(!(enc[0] & 0x30), "lead byte %#x uses bits 4-5",
			    enc[0]);
}

static void test_acpi_pkglength_forms(void)
{
	check_pkglength(0, 1);
	check_pkglength(62, 1);
	check_pkglength(63, 2);
	check_pkglength(4093, 2);
	check_pkglength(4094, 3);
	check_pkglength((1u << 20) - 4, 3);
	check_pkglength((1u << 20) - 3, 4);
	check_pkglength((1u << 28) - 5, 4);
	check_pkglength((1u << 28) - 4, 0);
}

static void test_acpi_sleep_is_s5(void)
{
	uint8_t s5 = (ACPI_SLP_TYP_S5 << 2) | ACPI_SLP_EN;

	TEST_ASSERT(s5 == 0x34 && acpi_sleep_is_s5(s5), "S5 is %#x", s5);
	TEST_ASSERT(!acpi_sleep_is_s5(0x80), "WAK_STS clear is not S5");
	TEST_ASSERT(!acpi_sleep_is_s5(0x14), "SLP_TYP without SLP_EN");
	TEST_ASSERT(!acpi_sleep_is_s5(0x20 | (3 << 2)), "S3 is not S5");
}

static bool have_iasl(void)
{
	return system("command -v iasl >/dev/null 2>&1") == 0;
}

/* Writes one table to @dir/@name.dat; returns false on an I/O error. */
static bool dump(const char *dir, const char *name, const uint8_t *p)
{
	char path[512];
	FILE *f;
	size_t n = (size_t)le(p + 4, 4);
	bool ok;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	if (!f)
		return false;
	ok = fwrite(p, 1, n, f) == n;
	return fclose(f) == 0 && ok;
}

/* Reads @dir/@name.dsl into @buf (@len bytes, NUL-terminated). */
static bool slurp(const char *dir, const char *name, char *buf, size_t len)
{
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
	return true;
}

/*
 * iasl -d, when installed: every table disassembles without a warning and
 * shows the objects we meant.
 */
static void test_acpi_iasl_disassembles(void)
{
	static struct tables t;
	static char dsl[64 * 1024];
	struct acpi_config c = config(3, NR_DEVS);
	char dir[] = "/tmp/vmrun-acpi-XXXXXX", cmd[1024];
	static const char *const names[] = { "dsdt", "facp", "apic" };
	unsigned int i;
	int status;

	TEST_REQUIRE(have_iasl(), "iasl (acpica-tools)");
	build(&t, &c, GPA);
	TEST_ASSERT(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	TEST_ASSERT(dump(dir, "dsdt", t.dsdt) && dump(dir, "facp", t.fadt) &&
			    dump(dir, "apic", t.madt),
		    "writing the tables to %s", dir);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(cmd, sizeof(cmd),
			 "cd %s && iasl -d %s.dat >%s.log 2>&1 && "
			 "! grep -qiE '(error|warning)[^s]' %s.log",
			 dir, names[i], names[i], names[i]);
		status = system(cmd);
		TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			   "iasl -d %s/%s.dat: status %#x (see %s.log)", dir,
			   names[i], status, names[i]);
	}
	TEST_ASSERT(slurp(dir, "dsdt", dsl, sizeof(dsl)), "no dsdt.dsl");
	TEST_CHECK(strstr(dsl, "Device (V007)") &&
			   strstr(dsl, "\"LNRO0005\"") &&
			   strstr(dsl, "Memory32Fixed (ReadWrite,") &&
			   strstr(dsl, "Interrupt (ResourceConsumer, Level, "
				       "ActiveHigh, Exclusive, ,, )") &&
			   strstr(dsl, "Name (_S5, Package (0x04)") &&
			   strstr(dsl, "EisaId (\"PNP0501\")") &&
			   strstr(dsl, "IRQNoFlags ()"),
		   "dsdt.dsl lacks an object:\n%s", dsl);
	TEST_ASSERT(slurp(dir, "facp", dsl, sizeof(dsl)), "no facp.dsl");
	TEST_CHECK(strstr(dsl, "Hardware Reduced (V5) : 1") &&
			   strstr(dsl, "Reset Register Supported (V2) : 1"),
		   "facp.dsl:\n%s", dsl);
	TEST_ASSERT(slurp(dir, "apic", dsl, sizeof(dsl)), "no apic.dsl");
	TEST_CHECK(count((const uint8_t *)dsl, strlen(dsl),
			 "[Processor Local APIC]", 22) == 3 &&
			   strstr(dsl, "[I/O APIC]"),
		   "apic.dsl:\n%s", dsl);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "\n  could not remove %s\n", dir);
}

const struct test_case acpi_tests[] = {
	{ "tables_link_up", test_acpi_tables_link_up },
	{ "fadt_fields", test_acpi_fadt_fields },
	{ "above_4g", test_acpi_above_4g },
	{ "madt_cpus", test_acpi_madt_cpus },
	{ "dsdt_devices", test_acpi_dsdt_devices },
	{ "dsdt_max_devices", test_acpi_dsdt_max_devices },
	{ "shared_gsi", test_acpi_shared_gsi },
	{ "size_bound", test_acpi_size_bound },
	{ "bad_config", test_acpi_bad_config },
	{ "pkglength_forms", test_acpi_pkglength_forms },
	{ "sleep_is_s5", test_acpi_sleep_is_s5 },
	{ "iasl_disassembles", test_acpi_iasl_disassembles },
	{ NULL, NULL },
};
