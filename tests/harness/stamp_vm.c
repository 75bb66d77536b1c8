/* SPDX-License-Identifier: MIT */
#include "tests/harness/stamp_vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/kvm.h>

#include "kernel/iotrap.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/vcpu.h"
#include "kernel/x86/boot64.h"
#include "tests/harness/test_util.h"

extern const unsigned char stamp_guest_bin[];
extern const size_t stamp_guest_bin_size;

#define SYS_GDT 0x1000UL
#define SYS_IDT 0x2000UL
#define SYS_PT 0x10000UL
#define SYS_PT_SIZE 0xe0000UL
#define SYS_STACK0 0x200000UL /* ring-0 stacks grow down from here + ... */
#define SYS_STACK_STRIDE 0x2000UL

static void abs_deadline(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/*
 * A read of STAMP_MMIO_CMD: hand over a pending command, or wait a little
 * for one. The wait is short and gives way to a pause or stop, since a
 * vCPU inside a handler cannot park.
 */
static int mmio_cmd(struct vcpu *vcpu, uint64_t addr __attribute__((unused)),
		    void *data, uint32_t len, bool is_write, void *opaque)
{
	struct stamp_vm *s = opaque;
	unsigned int id = vcpu_id(vcpu);
	struct timespec ts;
	uint32_t cmd = 0;

	if (is_write || len > 8)
		return 0;
	/* Waits in 1 ms slices: a pause sets the yield flag but does not
	 * signal this condition variable. */
	pthread_mutex_lock(&s->lock);
	for (int slice = 0;
	     slice < 20 && !s->cpu[id].pending && !vm_yield_pending(s->vm);
	     slice++) {
		abs_deadline(&ts, 1);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	cmd = s->cpu[id].pending;
	s->cpu[id].pending = 0;
	pthread_mutex_unlock(&s->lock);
	memset(data, 0, len);
	memcpy(data, &cmd, len < 4 ? len : 4);
	return 0;
}

static int mmio_done(struct vcpu *vcpu, uint64_t addr __attribute__((unused)),
		     void *data, uint32_t len, bool is_write, void *opaque)
{
	struct stamp_vm *s = opaque;
	unsigned int id = vcpu_id(vcpu);
	uint32_t v = 0;

	if (!is_write)
		return 0;
	memcpy(&v, data, len < 4 ? len : 4);
	pthread_mutex_lock(&s->lock);
	s->cpu[id].done++;
	s->cpu[id].last_done = v;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int port_fault(struct vcpu *vcpu, uint64_t addr __attribute__((unused)),
		      void *data, uint32_t len, bool is_write, void *opaque)
{
	struct stamp_vm *s = opaque;
	uint32_t v = 0;

	if (!is_write)
		return 0;
	memcpy(&v, data, len < 4 ? len : 4);
	pthread_mutex_lock(&s->lock);
	s->fault_vector = (int)v;
	s->fault_cpu = (int)vcpu_id(vcpu);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	{
		/* The exception frame is on the ring-0 stack: show it. */
		struct kvm_regs r;
		uint64_t f[6] = { 0 };

		if (!vcpu_get_regs(vcpu, &r))
			if (mem_read(vm_mem(s->vm), r.rsp, f, sizeof(f)))
				f[0] = ~0ULL;
		fprintf(stderr,
			"stamp guest: vCPU %u took exception %u; frame %#llx %#llx %#llx %#llx %#llx %#llx\n",
			vcpu_id(vcpu), v, (unsigned long long)f[0],
			(unsigned long long)f[1], (unsigned long long)f[2],
			(unsigned long long)f[3], (unsigned long long)f[4],
			(unsigned long long)f[5]);
	}
	return VCPU_STOP;
}

int __stamp_vm_create(const struct vm_config *cfg, struct stamp_vm **out)
{
	struct stamp_vm *s;
	int ret;

	if (cfg->nr_vcpus > STAMP_MAX_VCPUS)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fault_vector = -1;
	s->nr_vcpus = cfg->nr_vcpus;
	pthread_mutex_init(&s->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	ret = vm_create(cfg, &s->vm);
	if (ret < 0)
		goto err_free;
	ret = mem_seg_create(vm_mem(s->vm), "sys", STAMP_SYS_SIZE, &s->sys);
	if (ret < 0)
		goto err_vm;
	ret = mem_map(vm_mem(s->vm), s->sys, 0, 0, STAMP_SYS_SIZE, NULL);
	if (ret < 0)
		goto err_seg;
	ret = iotrap_register(vm_mmio(s->vm), STAMP_MMIO_CMD, 8, mmio_cmd, s);
	if (!ret)
		ret = iotrap_register(vm_mmio(s->vm), STAMP_MMIO_DONE, 8,
				      mmio_done, s);
	if (!ret)
		ret = iotrap_register(vm_pio(s->vm), STAMP_PORT_FAULT, 4,
				      port_fault, s);
	if (ret < 0)
		goto err_seg;
	*out = s;
	return 0;

err_seg:
	mem_seg_put(s->sys);
err_vm:
	vm_destroy(s->vm);
err_free:
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return ret;
}

struct stamp_vm *stamp_vm_create(const struct vm_config *cfg)
{
	struct stamp_vm *s = NULL;
	int ret = __stamp_vm_create(cfg, &s);

	TEST_ASSERT(ret == 0, "creating a %u-vCPU VM: %s", cfg->nr_vcpus,
		    strerror(-ret));
	return s;
}

void stamp_vm_boot(struct stamp_vm *s)
{
	const struct stamp_header *h = (const void *)stamp_guest_bin;
	struct boot64_gate gates[32];
	uint64_t table[32];
	struct boot64 b;
	unsigned int i;
	int ret;

	TEST_ASSERT(h->magic == STAMP_MAGIC, "stamp guest magic %#llx",
		    (unsigned long long)h->magic);
	ret = mem_write(vm_mem(s->vm), STAMP_LOAD_GPA, stamp_guest_bin,
			stamp_guest_bin_size);
	TEST_ASSERT(ret == 0, "loading the guest: %s", strerror(-ret));
	memcpy(table, stamp_guest_bin + (h->isr_table - STAMP_LOAD_GPA),
	       sizeof(table));
	for (i = 0; i < 32; i++) {
		gates[i].vector = (uint8_t)i;
		gates[i].dpl = 0;
		gates[i].handler = i == 6 ? h->isr_ud : table[i];
	}
	memset(&b, 0, sizeof(b));
	b.gdt_gpa = SYS_GDT;
	b.idt_gpa = SYS_IDT;
	b.pt_gpa = SYS_PT;
	b.pt_size = SYS_PT_SIZE;
	b.gates = gates;
	b.nr_gates = 32;
	b.entry = h->entry;
	b.stack_top = SYS_STACK0 + STAMP_MAX_VCPUS * SYS_STACK_STRIDE;
	b.stack_stride = SYS_STACK_STRIDE;
	b.rsp0_top = b.stack_top;
	b.rsp0_stride = SYS_STACK_STRIDE;
	b.user_stack_top = b.stack_top - SYS_STACK_STRIDE / 2;
	b.arg_base = STAMP_MAILBOX_GPA;
	b.arg_stride = STAMP_MAILBOX_SIZE;
	b.extra_gpa = STAMP_MMIO_BASE;
	b.extra_len = STAMP_MMIO_SIZE;
	ret = boot64_setup(s->vm, &b);
	TEST_ASSERT(ret == 0, "boot64_setup: %s", strerror(-ret));
	ret = vm_start(s->vm);
	TEST_ASSERT(ret == 0, "vm_start: %s", strerror(-ret));
	/*
	 * Wait until every vCPU is in its ring-3 loop, so the ring-0 entry's
	 * stack writes are over before a test starts counting dirty pages.
	 */
	for (i = 0; i < s->nr_vcpus; i++)
		stamp_stride(s, i, 0, STAMP_MAILBOX_GPA, 0, 0);
}

/* Marks the page-table pages below @table (level 4 = PML4) in @bits. */
static size_t mark_tables(const uint8_t *sys, uint64_t table, int level,
			  uint64_t *bits)
{
	size_t n = 0;
	unsigned int i;

	if (table + 4096 > STAMP_SYS_SIZE || bitmap_test(bits, table / 4096))
		return 0;
	bitmap_set(bits, table / 4096);
	n++;
	for (i = 0; level > 1 && i < 512; i++) {
		uint64_t e;

		memcpy(&e, sys + table + i * 8, 8);
		/* Present, and not a large page (PS at the PDPT and PD). */
		if (!(e & 1) || (level < 4 && (e & 0x80)))
			continue;
		n += mark_tables(sys, e & 0x000ffffffffff000ULL, level - 1,
				 bits);
	}
	return n;
}

size_t stamp_vm_cpu_pages(struct stamp_vm *s, uint64_t *bits)
{
	const uint8_t *sys = mem_seg_hva(s->sys);
	uint64_t top = SYS_STACK0 + STAMP_MAX_VCPUS * SYS_STACK_STRIDE;
	size_t n = mark_tables(sys, SYS_PT, 4, bits);
	unsigned int i;

	bitmap_set(bits, SYS_GDT / 4096);
	bitmap_set(bits, SYS_IDT / 4096);
	n += 2;
	for (i = 0; i < s->nr_vcpus; i++) {
		/* The page below TSS.RSP0 takes the exception frames. */
		bitmap_set(bits, (top - i * SYS_STACK_STRIDE - 1) / 4096);
		n++;
	}
	return n;
}

void stamp_vm_destroy(struct stamp_vm *s)
{
	if (!s)
		return;
	vm_destroy(s->vm);
	mem_seg_put(s->sys);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct mem_seg *stamp_vm_add_mem(struct stamp_vm *s, const char *name,
				 size_t size, uint64_t gpa)
{
	struct mem_seg *seg;
	int ret;

	ret = mem_seg_create(vm_mem(s->vm), name, size, &seg);
	TEST_ASSERT(ret == 0, "segment %s of %zu bytes: %s", name, size,
		    strerror(-ret));
	ret = mem_map(vm_mem(s->vm), seg, 0, gpa, size, NULL);
	TEST_ASSERT(ret == 0, "mapping %s at %#llx: %s", name,
		    (unsigned long long)gpa, strerror(-ret));
	return seg;
}

void stamp_mb_write(struct stamp_vm *s, unsigned int cpu, unsigned int off,
		    uint64_t val)
{
	int ret = mem_write(vm_mem(s->vm),
			    STAMP_MAILBOX_GPA + cpu * STAMP_MAILBOX_SIZE + off,
			    &val, 8);

	TEST_ASSERT(ret == 0, "mailbox write: %s", strerror(-ret));
}

uint64_t stamp_mb_read(struct stamp_vm *s, unsigned int cpu, unsigned int off)
{
	uint64_t v = 0;
	int ret = mem_read(vm_mem(s->vm),
			   STAMP_MAILBOX_GPA + cpu * STAMP_MAILBOX_SIZE + off,
			   &v, 8);

	TEST_ASSERT(ret == 0, "mailbox read: %s", strerror(-ret));
	return v;
}

void stamp_post(struct stamp_vm *s, unsigned int cpu, uint32_t cmd)
{
	pthread_mutex_lock(&s->lock);
	s->cpu[cpu].pending = cmd;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

void stamp_wait_done(struct stamp_vm *s, unsigned int cpu, uint64_t count,
		     int timeout_ms)
{
	struct timespec ts;
	uint64_t done;
	int fault;

	abs_deadline(&ts, timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (s->cpu[cpu].done < count && s->fault_vector < 0) {
		if (pthread_cond_timedwait(&s->cond, &s->lock, &ts) ==
		    ETIMEDOUT)
			break;
	}
	done = s->cpu[cpu].done;
	fault = s->fault_vector;
	pthread_mutex_unlock(&s->lock);
	TEST_ASSERT(fault < 0, "guest exception %d on vCPU %d", fault,
		    s->fault_cpu);
	TEST_ASSERT(done >= count,
		    "vCPU %u: %llu of %llu commands done after %d ms (VM: %s)",
		    cpu, (unsigned long long)done, (unsigned long long)count,
		    timeout_ms, vm_exit_detail(s->vm));
}

static uint64_t done_count(struct stamp_vm *s, unsigned int cpu)
{
	uint64_t d;

	pthread_mutex_lock(&s->lock);
	d = s->cpu[cpu].done;
	pthread_mutex_unlock(&s->lock);
	return d;
}

void stamp_list(struct stamp_vm *s, unsigned int cpu, uint64_t value,
		const uint64_t *gpas, size_t n)
{
	uint64_t mb = STAMP_MAILBOX_GPA + cpu * STAMP_MAILBOX_SIZE;
	uint64_t before = done_count(s, cpu);
	int ret;

	TEST_ASSERT(n <= STAMP_LIST_MAX, "%zu pages, at most %lu", n,
		    STAMP_LIST_MAX);
	stamp_mb_write(s, cpu, MB_VALUE, value);
	stamp_mb_write(s, cpu, MB_COUNT, n);
	ret = mem_write(vm_mem(s->vm), mb + MB_LIST, gpas, n * 8);
	TEST_ASSERT(ret == 0, "mailbox list: %s", strerror(-ret));
	stamp_post(s, cpu, STAMP_CMD_LIST);
	stamp_wait_done(s, cpu, before + 1, 120000);
}

void stamp_stride(struct stamp_vm *s, unsigned int cpu, uint64_t value,
		  uint64_t base, uint64_t n, uint64_t stride)
{
	uint64_t before = done_count(s, cpu);

	stamp_mb_write(s, cpu, MB_VALUE, value);
	stamp_mb_write(s, cpu, MB_BASE, base);
	stamp_mb_write(s, cpu, MB_COUNT, n);
	stamp_mb_write(s, cpu, MB_STRIDE, stride);
	stamp_post(s, cpu, STAMP_CMD_STRIDE);
	stamp_wait_done(s, cpu, before + 1, 60000);
}
