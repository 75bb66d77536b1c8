/* SPDX-License-Identifier: MIT */
/*
 * The ring-3 side of the reference guest: boot information, command line,
 * CPU start-up, the main loop of the boot CPU and the console reports.
 * All of it runs natively; ring 0 is entered only through sys_*().
 */
#include "ref.h"

#include "kernel/x86/vmrun_boot.h"

/* The Xen PVH start-of-day structure (version 1). */
#define PVH_MAGIC 0x336ec578
#define PVH_RAM 1

struct pvh_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct pvh_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#define CMDLINE_MAX 1024
#define DEVS_MAX 32
#define FAIL_LINES_MAX 32
#define AP_WAIT_JIFFIES REF_HZ

/* What the boot path found; filled by the BSP before anything else. */
static struct {
	unsigned int ncpus;
	uint64_t ram_end; /* end of the RAM range that holds the kernel */
	const char *err;
	char cmdline[CMDLINE_MAX];
	unsigned int ndevs;
	struct {
		uint64_t base;
		uint32_t type; /* 0 = ask the device */
	} devs[DEVS_MAX];
} boot;

static struct ref_cfg cfg = {
	.dirty = true,
	.mib = 64,
	.rate = 0,
	.pattern = PAT_SEQ,
	.ticks = 0,
	.tick_ms = 100,
	.verify_ms = 1000,
};

/* Start-up handshake: APs set their bit, the BSP answers with go. */
static volatile uint32_t ap_up_mask;
static volatile uint32_t go;
static uint8_t cpu_slot[REF_MAX_CPUS]; /* 0xff: not taking part */

/* The report counter: in guest memory, so it survives save and restore. */
static uint64_t tick_n;
static unsigned int fail_lines;

static void idt_set(unsigned int vec, uint64_t handler)
{
	idt[vec * 2] = (handler & 0xffff) | (0x08ULL << 16) | (0x8eULL << 40) |
		       (((handler >> 16) & 0xffff) << 48);
	idt[vec * 2 + 1] = handler >> 32;
}

/*
 * The IDT is plain memory that every ring may write, so ring 3 builds it
 * at native speed. Only the BSP does, before anything can interrupt.
 */
static void idt_fill(void)
{
	unsigned int v;

	for (v = 0; v < 32; v++)
		idt_set(v, exc_stubs[v]);
	for (v = VEC_PIC; v < VEC_PIC + 16; v++)
		idt_set(v, v < VEC_PIC + 8 ? (uint64_t)isr_irq_master :
					     (uint64_t)isr_irq_slave);
	idt_set(VEC_TIMER, (uint64_t)isr_timer);
	idt_set(VEC_PIC + 7, (uint64_t)isr_spurious);
	idt_set(VEC_PIC + 15, (uint64_t)isr_irq_master);
	idt_set(VEC_IPI, (uint64_t)isr_ipi);
	idt_set(VEC_SPURIOUS, (uint64_t)isr_spurious);
}

static void copy_cmdline(uint64_t gpa, uint64_t max)
{
	const char *s = (const char *)gpa;
	uint64_t i;

	if (!gpa)
		return;
	if (max > CMDLINE_MAX - 1)
		max = CMDLINE_MAX - 1;
	for (i = 0; i < max && s[i]; i++)
		boot.cmdline[i] = s[i];
	boot.cmdline[i] = 0;
}

static void boot_vmrun(const struct vmrun_boot_info *bi)
{
	unsigned int i;

	if (!bi || bi->magic != VMRUN_BOOT_MAGIC) {
		boot.err = "bootinfo-magic";
		return;
	}
	if (bi->version != VMRUN_BOOT_VERSION) {
		boot.err = "bootinfo-version";
		return;
	}
	boot.ncpus = bi->nr_cpus;
	if (boot.ncpus < 1)
		boot.ncpus = 1;
	if (boot.ncpus > REF_MAX_CPUS)
		boot.ncpus = REF_MAX_CPUS;
	boot.ram_end = MIN(bi->ram_below_4g, (uint64_t)VMRUN_MMIO_HOLE);
	copy_cmdline(bi->cmdline_gpa, bi->cmdline_len);
	for (i = 0; i < bi->nr_devs && i < VMRUN_BOOT_MAX_DEVS; i++) {
		boot.devs[boot.ndevs].base = bi->devs[i].base;
		boot.devs[boot.ndevs].type = bi->devs[i].type;
		boot.ndevs++;
	}
}

static void boot_pvh(const struct pvh_start_info *si)
{
	const struct pvh_memmap_entry *mm;
	uint32_t i;

	boot.ncpus = 1;
	if (!si || si->magic != PVH_MAGIC) {
		boot.err = "pvh-magic";
		return;
	}
	copy_cmdline(si->cmdline_paddr, CMDLINE_MAX);
	if (si->version < 1 || !si->memmap_paddr) {
		boot.err = "pvh-no-memmap";
		return;
	}
	mm = (const void *)si->memmap_paddr;
	for (i = 0; i < si->memmap_entries; i++) {
		uint64_t end = mm[i].addr + mm[i].size;

		if (mm[i].type == PVH_RAM && mm[i].addr <= (uint64_t)__end &&
		    end > (uint64_t)__end)
			boot.ram_end = MIN(end, 1ULL << 32);
	}
	if (!boot.ram_end)
		boot.err = "pvh-no-ram";
}

/* Does the word at @s (up to a space) start with @key? */
static const char *arg_match(const char *s, const char *key)
{
	size_t n = strlen(key);

	return memcmp(s, key, n) ? NULL : s + n;
}

/* "virtio_mmio.device=<size>@<base>:<irq>", as Firecracker passes them. */
static void arg_virtio_mmio(const char *v)
{
	uint64_t size, base;

	if (!parse_u64(&v, &size) || *v++ != '@' || !parse_u64(&v, &base))
		return;
	if (boot.ndevs < DEVS_MAX) {
		boot.devs[boot.ndevs].base = base;
		boot.devs[boot.ndevs].type = 0;
		boot.ndevs++;
	}
}

static void arg_number(const char *v, uint64_t *out)
{
	uint64_t n;

	if (parse_u64(&v, &n))
		*out = n;
}

static void parse_cmdline(void)
{
	const char *s = boot.cmdline, *v;

	while (*s) {
		while (*s == ' ')
			s++;
		if ((v = arg_match(s, "work="))) {
			cfg.dirty = !arg_match(v, "idle");
			cfg.fuzz = arg_match(v, "fuzz") != NULL;
		} else if ((v = arg_match(s, "fuzz_pages=")))
			arg_number(v, &cfg.fuzz_pages);
		else if ((v = arg_match(s, "mib=")))
			arg_number(v, &cfg.mib);
		else if ((v = arg_match(s, "rate=")))
			arg_number(v, &cfg.rate);
		else if ((v = arg_match(s, "spin=")))
			arg_number(v, &cfg.spin);
		else if ((v = arg_match(s, "verify_ms=")))
			arg_number(v, &cfg.verify_ms);
		else if ((v = arg_match(s, "ticks=")))
			arg_number(v, &cfg.ticks);
		else if ((v = arg_match(s, "tick_ms=")))
			arg_number(v, &cfg.tick_ms);
		else if ((v = arg_match(s, "pattern=")))
			cfg.pattern = arg_match(v, "random") ? PAT_RANDOM :
				      arg_match(v, "hot")    ? PAT_HOT :
							       PAT_SEQ;
		else if (boot_kind == BOOT_PVH &&
			 (v = arg_match(s, "virtio_mmio.device=")))
			arg_virtio_mmio(v);
		while (*s && *s != ' ')
			s++;
	}
	if (!cfg.tick_ms)
		cfg.tick_ms = 100;
}

void guest_fail(struct line *l)
{
	struct line h;

	if (fail_lines >= FAIL_LINES_MAX)
		return;
	if (++fail_lines == FAIL_LINES_MAX)
		line_str(l, " (more failures not shown)");
	line_init(&h, "GUEST FAIL ");
	memcpy(h.buf + h.len, l->buf, MIN(l->len, REF_LINE_MAX - 1 - h.len));
	h.len += MIN(l->len, REF_LINE_MAX - 1 - h.len);
	line_put(&h);
}

static __noreturn void poweroff(void)
{
	struct line l;

	line_init(&l, "GUEST POWEROFF");
	line_put(&l);
	sys_call(SYS_POWEROFF, 0, 0);
	for (;;)
		;
}

static void report(void)
{
	struct work_totals t;
	struct vio_totals v;
	struct line l;

	work_totals(&t);
	vdev_totals(&v);
	tick_n++;
	line_init(&l, "GUEST TICK");
	line_kv(&l, "n", tick_n);
	line_kv(&l, "written", t.written);
	line_kv(&l, "verified", t.verified);
	line_kv(&l, "mismatches", t.mismatches + v.blk_bad + v.net_bad);
	line_put(&l);
	if (!vdev_any())
		return;
	line_init(&l, "GUEST IO");
	line_kv(&l, "n", tick_n);
	line_kv(&l, "blk_w", v.blk_w);
	line_kv(&l, "blk_r", v.blk_r);
	line_kv(&l, "blk_bad", v.blk_bad);
	line_kv(&l, "net_tx", v.net_tx);
	line_kv(&l, "net_rx", v.net_rx);
	line_kv(&l, "net_echo", v.net_echo);
	line_kv(&l, "net_bad", v.net_bad);
	line_kv(&l, "rng", v.rng_bytes);
	line_put(&l);
}

static __noreturn void ap_main(unsigned int cpu)
{
	unsigned int slot;

	__atomic_or_fetch(&ap_up_mask, 1U << cpu, __ATOMIC_SEQ_CST);
	while (!go)
		cpu_relax();
	slot = cpu_slot[cpu];
	for (;;)
		if (slot == 0xff || !work_step(slot))
			sys_idle();
}

/*
 * Waits (in ring 3, spinning) up to a second for the APs, then gives each
 * one that arrived a workload slot. Returns the number of CPUs taking
 * part, the BSP included.
 */
static unsigned int start_aps(void)
{
	uint32_t want = ((1U << boot.ncpus) - 1) & ~1U;
	uint64_t until = jiffies + AP_WAIT_JIFFIES;
	unsigned int cpu, n = 1;

	while ((ap_up_mask & want) != want && (int64_t)(jiffies - until) < 0)
		cpu_relax();
	memset(cpu_slot, 0xff, sizeof(cpu_slot));
	cpu_slot[0] = 0;
	for (cpu = 1; cpu < boot.ncpus; cpu++)
		if (ap_up_mask & (1U << cpu))
			cpu_slot[cpu] = (uint8_t)n++;
	return n;
}

static __noreturn void bsp_loop(void)
{
	uint64_t every = MAX(cfg.tick_ms * REF_HZ / 1000, 1ULL);
	uint64_t next = jiffies + every, last_io = jiffies;

	for (;;) {
		bool did = work_step(0);
		uint64_t j = jiffies;

		if (j != last_io && vdev_any()) {
			last_io = j;
			vdev_step();
		}
		work_report_fails();
		if ((int64_t)(j - next) >= 0) {
			report();
			/* Skip intervals missed while the VM was stopped. */
			next = j - next > every ? j + every : next + every;
			if (cfg.ticks && tick_n >= cfg.ticks)
				poweroff();
		}
		if (!did)
			sys_idle();
	}
}

/*
 * Ring-3 entry of every CPU (from entry.S, with interrupts off). On the
 * BSP: the IDT, the boot information, then SYS_START (console, PIC, PIT,
 * interrupts on), the workload layout and the APs.
 */
__noreturn void user_main(uint64_t cpu, uint64_t info, uint64_t kind);
__noreturn void user_main(uint64_t cpu, uint64_t info, uint64_t kind)
{
	unsigned int ncpus, i;
	uint64_t base, mib;
	struct line l;

	if (cpu)
		ap_main((unsigned int)cpu);
	idt_fill();
	if (kind == BOOT_PVH)
		boot_pvh((const void *)info);
	else
		boot_vmrun((const void *)info);
	if (!boot.ncpus)
		boot.ncpus = 1;
	sys_call(SYS_START, boot.ncpus > 1, 0);
	if (boot.err) {
		line_init(&l, boot.err);
		guest_fail(&l);
		poweroff();
	}
	parse_cmdline();
	ncpus = start_aps();
	base = ALIGN_UP((uint64_t)__end, 2 * SZ_1M);
	if (cfg.fuzz) {
		for (i = 0; i < boot.ndevs; i++)
			vdev_probe(boot.devs[i].base, boot.devs[i].type);
		__atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
		fuzz_main(base, boot.ram_end, cfg.fuzz_pages, cfg.ticks);
	}
	mib = work_setup(&cfg, base, boot.ram_end, ncpus);
	line_init(&l, "GUEST READY");
	line_kv(&l, "cpus", ncpus);
	line_kv(&l, "mib", mib);
	line_put(&l);
	for (i = 0; i < boot.ndevs; i++)
		vdev_probe(boot.devs[i].base, boot.devs[i].type);
	__atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
	bsp_loop();
}
