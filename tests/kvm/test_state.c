/* SPDX-License-Identifier: MIT */
/*
 * vCPU and VM state round trips, after the KVM selftests' x86/state_test:
 * the stamp guest runs (one vCPU writing memory, one idle between
 * commands, one halted), and at many points it is paused and captured;
 * each capture, with a copy of guest memory, is loaded into a fresh VM,
 * captured again there and compared field by field; then the fresh VM
 * runs on and must finish the work the guest was doing and take a new
 * command. Hostile messages must be refused and change nothing.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/mem.h"
#include "kernel/vcpu.h"
#include "kernel/x86/vcpu_state.h"
#include "kernel/x86/vm_state.h"
#include "tests/harness/stamp_vm.h"
#include "tests/kvm/kvm_tests.h"
#include "snapshot/state_diff.h"

#define GPA_A (1ULL << 30)
#define SIZE_A (1UL << 20)
#define NR_CPUS 3
#define ROUNDS 8
#define MSR_IA32_TSC 0x10
#define HV_X64_MSR_VP_RUNTIME 0x40000010
#define HV_X64_MSR_TIME_REF_COUNT 0x40000020

enum { LOOP, IDLE, HALT };

/* One capture: the VM, each vCPU, and guest memory at that moment. */
struct capture {
	Vmrun__VmState *vm;
	Vmrun__VcpuState *cpu[NR_CPUS];
	void *sys, *a;
};

static const struct vm_config cfg = { .nr_vcpus = NR_CPUS, .pit = true };

static void watchdog(int sig __attribute__((unused)))
{
	static const char msg[] = "\n  FAIL state test watchdog: 400 s\n";

	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

static void capture_take(struct stamp_vm *s, struct mem_seg *a,
			 struct capture *c)
{
	unsigned int i;
	int ret;

	ret = x86_vm_state_save(s->vm, &c->vm);
	TEST_ASSERT(ret == 0, "VM state: %s", strerror(-ret));
	for (i = 0; i < NR_CPUS; i++) {
		ret = x86_vcpu_state_save(vm_vcpu(s->vm, i), &c->cpu[i]);
		TEST_ASSERT(ret == 0, "vCPU %u state: %s", i, strerror(-ret));
	}
	if (!a)
		return;
	c->sys = malloc(STAMP_SYS_SIZE);
	c->a = malloc(SIZE_A);
	TEST_ASSERT(c->sys && c->a, "memory copies");
	memcpy(c->sys, mem_seg_hva(s->sys), STAMP_SYS_SIZE);
	memcpy(c->a, mem_seg_hva(a), SIZE_A);
}

static void capture_free(struct capture *c)
{
	unsigned int i;

	x86_vm_state_free(c->vm);
	for (i = 0; i < NR_CPUS; i++)
		x86_vcpu_state_free(c->cpu[i]);
	free(c->sys);
	free(c->a);
	memset(c, 0, sizeof(*c));
}

/* MSRs that count time, so differ between any two reads. */
static bool msr_is_clock(uint32_t index)
{
	return index == MSR_IA32_TSC || index == HV_X64_MSR_VP_RUNTIME ||
	       index == HV_X64_MSR_TIME_REF_COUNT;
}

/*
 * Clears what moves on its own between two captures of a VM that is not
 * running: the TSC (read back, it has advanced), the Hyper-V
 * reference and run-time counters, kvmclock and the PIT's host load time. Their own checks are in check_time().
 */
static void mask_volatile(struct capture *c)
{
	unsigned int i;
	size_t j;

	c->vm->clock->clock = 0;
	c->vm->clock->realtime = 0;
	c->vm->clock->host_tsc = 0;
	c->vm->clock->flags = 0;
	for (j = 0; c->vm->pit && j < c->vm->pit->n_channels; j++)
		c->vm->pit->channels[j]->count_load_time = 0;
	for (i = 0; i < NR_CPUS; i++) {
		c->cpu[i]->tsc = 0;
		for (j = 0; j < c->cpu[i]->n_msrs; j++)
			if (msr_is_clock(c->cpu[i]->msrs[j]->index))
				c->cpu[i]->msrs[j]->value = 0;
	}
}

/* Time goes on from the saved values, and not by much (10 s at most). */
static void check_time(const struct capture *was, const struct capture *now)
{
	uint64_t d, khz = was->cpu[0]->tsc_khz;
	unsigned int i;

	d = now->vm->clock->clock - was->vm->clock->clock;
	TEST_CHECK(now->vm->clock->clock >= was->vm->clock->clock &&
			   d < 10000000000ULL,
		   "kvmclock %llu after loading %llu",
		   (unsigned long long)now->vm->clock->clock,
		   (unsigned long long)was->vm->clock->clock);
	for (i = 0; i < NR_CPUS; i++) {
		d = now->cpu[i]->tsc - was->cpu[i]->tsc;
		TEST_CHECK(now->cpu[i]->tsc >= was->cpu[i]->tsc &&
				   (!khz || d < khz * 10000),
			   "vCPU %u: TSC %llu after loading %llu", i,
			   (unsigned long long)now->cpu[i]->tsc,
			   (unsigned long long)was->cpu[i]->tsc);
	}
}

/* Asserts that the two captures are equal, naming the first difference. */
static void compare(struct capture *x, struct capture *y, const char *what)
{
	char why[512];
	unsigned int i;

	mask_volatile(x);
	mask_volatile(y);
	TEST_ASSERT(!state_diff(&x->vm->base, &y->vm->base, why, sizeof(why)),
		    "%s: VM state differs: %s", what, why);
	for (i = 0; i < NR_CPUS; i++)
		TEST_ASSERT(!state_diff(&x->cpu[i]->base, &y->cpu[i]->base, why,
					sizeof(why)),
			    "%s: vCPU %u state differs: %s", what, i, why);
}

/* A fresh, not yet started VM holding capture @c: memory, VM, vCPUs. */
static struct stamp_vm *restore(const struct capture *c, struct mem_seg **a)
{
	struct stamp_vm *f = stamp_vm_create(&cfg);
	unsigned int i;
	int ret;

	*a = stamp_vm_add_mem(f, "A", SIZE_A, GPA_A);
	ret = mem_seg_write(f->sys, 0, c->sys, STAMP_SYS_SIZE);
	TEST_ASSERT(ret == 0, "copying sys: %s", strerror(-ret));
	ret = mem_seg_write(*a, 0, c->a, SIZE_A);
	TEST_ASSERT(ret == 0, "copying A: %s", strerror(-ret));
	ret = x86_vm_state_load(f->vm, c->vm);
	TEST_ASSERT(ret == 0, "loading VM state: %s", strerror(-ret));
	for (i = 0; i < NR_CPUS; i++) {
		ret = x86_vcpu_state_load(vm_vcpu(f->vm, i), c->cpu[i]);
		TEST_ASSERT(ret == 0, "loading vCPU %u: %s", i, strerror(-ret));
	}
	return f;
}

static uint64_t mb_at(const struct capture *c, unsigned int cpu,
		      unsigned int off)
{
	uint64_t v;

	memcpy(&v,
	       (const char *)c->sys + STAMP_MAILBOX_GPA +
		       cpu * STAMP_MAILBOX_SIZE + off,
	       8);
	return v;
}

static void wait_progress(struct stamp_vm *s, uint64_t past)
{
	unsigned long long deadline = now_ns() + 60000000000ULL;
	uint64_t p;

	while ((p = stamp_mb_read(s, LOOP, MB_PROGRESS)) <= past) {
		TEST_ASSERT(
			now_ns() < deadline,
			"the writer made no progress past %llu (at %llu): %s",
			(unsigned long long)past, (unsigned long long)p,
			vm_exit_detail(s->vm));
		usleep(1000);
	}
}

/*
 * The restored guest goes on: the writer passes the progress it had,
 * stops on request and reports it; the idle vCPU takes a new command.
 */
static void run_on(struct stamp_vm *f, struct mem_seg *a,
		   const struct capture *c, uint64_t value)
{
	const uint64_t *p = mem_seg_hva(a);
	unsigned int i;
	int ret;

	ret = vm_start(f->vm);
	TEST_ASSERT(ret == 0, "vm_start: %s", strerror(-ret));
	wait_progress(f, mb_at(c, LOOP, MB_PROGRESS));
	stamp_mb_write(f, LOOP, MB_STOP, 1);
	stamp_wait_done(f, LOOP, 1, 30000);
	TEST_ASSERT(f->cpu[LOOP].last_done == STAMP_CMD_LOOP,
		    "the writer reported %u", f->cpu[LOOP].last_done);
	stamp_stride(f, IDLE, value, GPA_A, 16, 4096);
	for (i = 0; i < 16; i++)
		TEST_ASSERT(p[i * 512] == value,
			    "page %u holds %#llx, not %#llx", i,
			    (unsigned long long)p[i * 512],
			    (unsigned long long)value);
	TEST_ASSERT(vm_wait(f->vm, 0) == VM_EXIT_NONE,
		    "restored VM stopped: %s", vm_exit_detail(f->vm));
}

/*
 * The halting vCPU posts its notice just before HLT: on a slow host it may
 * not have reached the instruction yet. Waits (pausing to look, since
 * KVM_GET_MP_STATE waits for KVM_RUN to return) until KVM has it halted.
 */
static void wait_halted(struct stamp_vm *s)
{
	unsigned long long t0 = now_ns();
	struct kvm_mp_state mp = { 0 };
	int ret;

	for (;;) {
		ret = vm_pause(s->vm);
		TEST_ASSERT(ret == 0, "pause: %s", strerror(-ret));
		ret = kvm_ioctl(vcpu_fd(vm_vcpu(s->vm, HALT)), KVM_GET_MP_STATE,
				&mp);
		vm_resume(s->vm);
		TEST_ASSERT(ret == 0, "KVM_GET_MP_STATE: %s", strerror(-ret));
		if (mp.mp_state == KVM_MP_STATE_HALTED)
			return;
		TEST_ASSERT(
			now_ns() - t0 < 120000000000ULL,
			"the halting vCPU is still in MP state %u after 120 s",
			mp.mp_state);
		usleep(10000);
	}
}

static void test_state_roundtrip(void)
{
	struct stamp_vm *s = stamp_vm_create(&cfg), *f;
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A), *fa;
	struct capture c = { 0 }, r = { 0 };
	size_t r_msrs = 0, r_xsave = 0;
	bool r_sregs2 = false;
	uint64_t prog = 0;
	unsigned int i;
	int ret;

	signal(SIGALRM, watchdog);
	alarm(400);
	stamp_vm_boot(s);
	stamp_mb_write(s, LOOP, MB_STOP, 0);
	stamp_mb_write(s, LOOP, MB_VALUE, 7);
	stamp_mb_write(s, LOOP, MB_BASE, GPA_A);
	stamp_mb_write(s, LOOP, MB_COUNT, SIZE_A / 4096);
	stamp_post(s, LOOP, STAMP_CMD_LOOP);
	stamp_post(s, HALT, STAMP_CMD_HALT);
	stamp_wait_done(s, HALT, 2, 60000); /* boot + the halt notice */
	wait_halted(s);

	ret = x86_vcpu_state_save(vm_vcpu(s->vm, 0), &c.cpu[0]);
	TEST_ASSERT(ret == -EBUSY, "capture of a running vCPU: %d", ret);
	for (i = 0; i < ROUNDS; i++) {
		wait_progress(s, prog);
		ret = vm_pause(s->vm);
		TEST_ASSERT(ret == 0, "pause: %s", strerror(-ret));
		capture_take(s, a, &c);
		vm_resume(s->vm);
		prog = mb_at(&c, LOOP, MB_PROGRESS);
		TEST_ASSERT(c.cpu[HALT]->mp_state == KVM_MP_STATE_HALTED,
			    "halted vCPU in MP state %u",
			    c.cpu[HALT]->mp_state);

		r_msrs = c.cpu[0]->n_msrs;
		r_xsave = c.cpu[0]->xsave.len;
		r_sregs2 = c.cpu[0]->sregs->sregs2;
		f = restore(&c, &fa);
		capture_take(f, NULL, &r);
		check_time(&c, &r);
		compare(&c, &r, "after loading");
		run_on(f, fa, &c, 100 + i);
		mem_seg_put(fa);
		stamp_vm_destroy(f);
		capture_free(&r);
		capture_free(&c);
	}
	fprintf(stderr, "\n    %u captures; %zu MSRs, %zu-byte XSAVE, %s ",
		ROUNDS, r_msrs, r_xsave, r_sregs2 ? "SREGS2" : "SREGS");
	/* The source, captured so often, still works too. */
	stamp_mb_write(s, LOOP, MB_STOP, 1);
	stamp_wait_done(s, LOOP, 2, 30000);
	stamp_stride(s, IDLE, 9, GPA_A, 4, 4096);
	alarm(0);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

/* A deep copy through the wire format, as a loader would get it. */
static Vmrun__VcpuState *vcpu_copy(const Vmrun__VcpuState *st)
{
	size_t n = vmrun__vcpu_state__get_packed_size(st);
	uint8_t *buf = malloc(n);
	Vmrun__VcpuState *c;

	TEST_ASSERT(buf, "malloc");
	vmrun__vcpu_state__pack(st, buf);
	c = vmrun__vcpu_state__unpack(NULL, n, buf);
	free(buf);
	TEST_ASSERT(c, "unpacking %zu bytes", n);
	/* Changes that a partial load would leave behind. */
	c->regs->rax ^= 0x5a5a;
	c->sregs->cr2 ^= 0x1000;
	c->mp_state = KVM_MP_STATE_RUNNABLE;
	return c;
}

static Vmrun__VmState *vm_copy(const Vmrun__VmState *st)
{
	size_t n = vmrun__vm_state__get_packed_size(st);
	uint8_t *buf = malloc(n);
	Vmrun__VmState *c;

	TEST_ASSERT(buf, "malloc");
	vmrun__vm_state__pack(st, buf);
	c = vmrun__vm_state__unpack(NULL, n, buf);
	free(buf);
	TEST_ASSERT(c, "unpacking %zu bytes", n);
	c->pic_master->imr ^= 0x0f;
	c->ioapic->redirtbl[3] ^= 1ULL << 16;
	return c;
}

enum vcpu_bad {
	XSAVE_SHORT,
	XSAVE_LONG,
	NO_XSAVE,
	MSRS_ABSURD,
	MSR_UNKNOWN,
	NO_REGS,
	NO_CS,
	LAPIC_LEN,
	WRONG_ID,
	EVENT_FLAGS,
	EXCEPTION_NR,
	DEBUGREGS,
	NO_CPUID,
	MP_STATE,
	NR_VCPU_BAD
};

static void test_state_hostile(void)
{
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	struct vcpu *v;
	struct capture c0 = { 0 }, c1 = { 0 };
	Vmrun__VcpuState *m;
	Vmrun__VmState *vm;
	size_t keep;
	unsigned int b;
	int ret;

	stamp_vm_boot(s);
	stamp_post(s, HALT, STAMP_CMD_HALT);
	stamp_wait_done(s, HALT, 2, 60000);
	TEST_ASSERT(vm_pause(s->vm) == 0, "pause");
	v = vm_vcpu(s->vm, IDLE);
	capture_take(s, NULL, &c0);

	for (b = 0; b < NR_VCPU_BAD; b++) {
		m = vcpu_copy(c0.cpu[IDLE]);
		keep = 0;
		switch (b) {
		case XSAVE_SHORT:
			m->xsave.len = 100;
			break;
		case XSAVE_LONG:
			keep = m->xsave.len;
			m->xsave.len = 1 << 24;
			break;
		case NO_XSAVE:
			keep = m->xsave.len;
			m->xsave.len = 0;
			break;
		case MSRS_ABSURD:
			keep = m->n_msrs;
			m->n_msrs = 100000;
			break;
		case MSR_UNKNOWN:
			m->msrs[m->n_msrs - 1]->index = 0xdeadbeef;
			break;
		case NO_REGS:
			protobuf_c_message_free_unpacked(&m->regs->base, NULL);
			m->regs = NULL;
			break;
		case NO_CS:
			protobuf_c_message_free_unpacked(&m->sregs->cs->base,
							 NULL);
			m->sregs->cs = NULL;
			break;
		case LAPIC_LEN:
			m->lapic.len = 512;
			break;
		case WRONG_ID:
			m->id = 99;
			break;
		case EVENT_FLAGS:
			m->events->flags |= 0x80000000u;
			break;
		case EXCEPTION_NR:
			m->events->exception_nr = 40;
			break;
		case DEBUGREGS:
			m->debugregs->n_db = 3;
			break;
		case NO_CPUID:
			keep = m->n_cpuid;
			m->n_cpuid = 0;
			break;
		case MP_STATE:
			m->mp_state = 77;
			break;
		}
		ret = x86_vcpu_state_load(v, m);
		TEST_CHECK(ret == -EINVAL, "hostile vCPU message %u: %d", b,
			   ret);
		if (b == XSAVE_LONG || b == NO_XSAVE)
			m->xsave.len = keep;
		else if (b == MSRS_ABSURD)
			m->n_msrs = keep;
		else if (b == NO_CPUID)
			m->n_cpuid = keep;
		x86_vcpu_state_free(m);
	}

	for (b = 0; b < 5; b++) {
		vm = vm_copy(c0.vm);
		keep = 0;
		if (b == 0) {
			keep = vm->ioapic->n_redirtbl;
			vm->ioapic->n_redirtbl = 23;
		} else if (b == 1) {
			keep = vm->pit->n_channels;
			vm->pit->n_channels = 2;
		} else if (b == 2) {
			protobuf_c_message_free_unpacked(&vm->clock->base,
							 NULL);
			vm->clock = NULL;
		} else if (b == 3) {
			vm->pic_slave->irr = 0x1ff;
		} else {
			vm->irqchip = false;
		}
		ret = x86_vm_state_load(s->vm, vm);
		TEST_CHECK(ret == -EINVAL, "hostile VM message %u: %d", b, ret);
		if (b == 0)
			vm->ioapic->n_redirtbl = keep;
		else if (b == 1)
			vm->pit->n_channels = keep;
		x86_vm_state_free(vm);
	}
	TEST_CHECK(x86_vcpu_state_load(v, NULL) == -EINVAL, "NULL message");

	/* Nothing changed, and the guest still works. */
	capture_take(s, NULL, &c1);
	compare(&c0, &c1, "after hostile loads");
	vm_resume(s->vm);
	stamp_stride(s, IDLE, 5, GPA_A, 4, 4096);
	capture_free(&c0);
	capture_free(&c1);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

const struct test_case state_tests[] = {
	{ "roundtrip", test_state_roundtrip },
	{ "hostile", test_state_hostile },
	{ NULL, NULL },
};
