/* SPDX-License-Identifier: MIT */
/*
 * Pause/resume: every vCPU stops outside guest mode and acknowledges,
 * whether it is spinning in ring 3, writing memory, halted with
 * interrupts off, or inside an exit handler; repeated many times.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kernel/mem.h"
#include "kernel/vcpu.h"
#include "tests/harness/stamp_vm.h"
#include "tests/kvm/kvm_tests.h"

#define GPA_A (1ULL << 30)
#define SIZE_A (8UL << 20)

static void watchdog(int sig __attribute__((unused)))
{
	static const char msg[] =
		"\n  FAIL pause test watchdog: no progress in 300 s (deadlock?)\n";

	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

static void arm_watchdog(unsigned int s)
{
	signal(SIGALRM, watchdog);
	alarm(s);
}

enum { SPIN, LOOP, HALT, IDLE };

/*
 * Waits until @cpu's progress counter has passed @past: the vCPU runs
 * again. Polls with a generous deadline, since emulated hosts are slow.
 */
static void wait_progress(struct stamp_vm *s, unsigned int cpu, uint64_t past,
			  int timeout_ms)
{
	unsigned long long deadline = now_ns() + timeout_ms * 1000000ULL;
	uint64_t p;

	while ((p = stamp_mb_read(s, cpu, MB_PROGRESS)) <= past) {
		TEST_ASSERT(now_ns() < deadline,
			    "vCPU %u made no progress in %d ms after resume "
			    "(counter %llu)",
			    cpu, timeout_ms, (unsigned long long)p);
		usleep(1000);
	}
}

static void test_pause_resume_mixed_vcpus(void)
{
	struct vm_config cfg = { .nr_vcpus = 4 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	unsigned long long t0, worst = 0, total = 0;
	uint64_t prog, prog2;
	unsigned int i, c;
	const unsigned int rounds = 300;
	int ret;

	arm_watchdog(300);
	stamp_vm_boot(s);
	stamp_mb_write(s, SPIN, MB_STOP, 0);
	stamp_post(s, SPIN, STAMP_CMD_SPIN);
	stamp_mb_write(s, LOOP, MB_STOP, 0);
	stamp_mb_write(s, LOOP, MB_BASE, GPA_A);
	stamp_mb_write(s, LOOP, MB_COUNT, SIZE_A / 4096);
	stamp_post(s, LOOP, STAMP_CMD_LOOP);
	stamp_post(s, HALT, STAMP_CMD_HALT);
	stamp_wait_done(s, HALT, 2, 60000); /* boot + the halt notice */
	usleep(10000);

	for (i = 0; i < rounds; i++) {
		t0 = now_ns();
		ret = vm_pause(s->vm);
		t0 = now_ns() - t0;
		TEST_ASSERT(ret == 0, "pause %u: %s", i, strerror(-ret));
		total += t0;
		if (t0 > worst)
			worst = t0;
		TEST_ASSERT(vm_is_paused(s->vm), "round %u: not paused", i);
		for (c = 0; c < 4; c++) {
			struct kvm_regs r;

			ret = vcpu_get_regs(vm_vcpu(s->vm, c), &r);
			TEST_ASSERT(ret == 0, "round %u vCPU %u regs: %s", i, c,
				    strerror(-ret));
		}
		if (i % 50 == 0) {
			/* Frozen means frozen: the writer makes no progress. */
			prog = stamp_mb_read(s, LOOP, MB_PROGRESS);
			usleep(5000);
			prog2 = stamp_mb_read(s, LOOP, MB_PROGRESS);
			TEST_ASSERT(
				prog == prog2,
				"round %u: writer went on while paused (%llu -> %llu)",
				i, (unsigned long long)prog,
				(unsigned long long)prog2);
		}
		vm_resume(s->vm);
		/* Resumed means running: the writer goes on. */
		if (i % 50 == 0)
			wait_progress(s, LOOP, prog, 60000);
	}

	/* Nested pauses: one resume does not release a second pause. */
	TEST_ASSERT(vm_pause(s->vm) == 0 && vm_pause(s->vm) == 0,
		    "nested pause");
	vm_resume(s->vm);
	TEST_ASSERT(vm_is_paused(s->vm), "one resume released a nested pause");
	vm_resume(s->vm);

	/* Everyone still alive: the spinner and the writer finish on request. */
	stamp_mb_write(s, SPIN, MB_STOP, 1);
	stamp_mb_write(s, LOOP, MB_STOP, 1);
	stamp_wait_done(s, SPIN, 2, 60000);
	stamp_wait_done(s, LOOP, 2, 60000);
	stamp_stride(s, IDLE, 9, GPA_A, 4, 4096);
	TEST_ASSERT(vm_wait(s->vm, 0) == VM_EXIT_NONE, "VM stopped: %s",
		    vm_exit_detail(s->vm));
	fprintf(stderr, "\n    %u pauses, mean %.1f us, worst %.1f us ", rounds,
		total / 1000.0 / rounds, worst / 1000.0);
	alarm(0);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

/* Every vCPU halted with interrupts off: pause must still complete. */
static void test_pause_all_halted(void)
{
	struct vm_config cfg = { .nr_vcpus = 3 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	unsigned int i, c;

	arm_watchdog(300);
	stamp_vm_boot(s);
	for (c = 0; c < 3; c++) {
		stamp_post(s, c, STAMP_CMD_HALT);
		stamp_wait_done(s, c, 2, 60000);
	}
	usleep(10000);
	for (i = 0; i < 100; i++) {
		TEST_ASSERT(vm_pause(s->vm) == 0, "pause %u", i);
		TEST_ASSERT(vm_is_paused(s->vm), "not paused");
		vm_resume(s->vm);
	}
	/* Stopping a VM of halted vCPUs completes too. */
	vm_stop(s->vm, VM_EXIT_REQUESTED);
	TEST_ASSERT(vm_wait(s->vm, 10000) == VM_EXIT_REQUESTED, "stop: %s",
		    vm_exit_detail(s->vm));
	alarm(0);
	stamp_vm_destroy(s);
}

/* Pause before start, and after the VM stopped, both return at once. */
static void test_pause_not_running(void)
{
	struct vm_config cfg = { .nr_vcpus = 2 };
	struct stamp_vm *s = stamp_vm_create(&cfg);

	arm_watchdog(120);
	TEST_ASSERT(vm_pause(s->vm) == 0, "pause before start");
	vm_resume(s->vm);
	stamp_vm_boot(s);
	vm_stop(s->vm, VM_EXIT_REQUESTED);
	TEST_ASSERT(vm_wait(s->vm, 10000) == VM_EXIT_REQUESTED, "stop");
	TEST_ASSERT(vm_pause(s->vm) == 0, "pause after stop");
	vm_resume(s->vm);
	alarm(0);
	stamp_vm_destroy(s);
}

/* The guest ignores a command it does not know and keeps serving. */
static void test_pause_unknown_command_ignored(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	enum vm_exit_reason r;

	arm_watchdog(120);
	stamp_vm_boot(s);
	/* An unknown command is ignored; the guest asks again. */
	stamp_post(s, 0, 99);
	stamp_stride(s, 0, 1, STAMP_MAILBOX_GPA + 0x8000, 1, 8);
	r = vm_wait(s->vm, 0);
	TEST_ASSERT(r == VM_EXIT_NONE, "VM stopped: %s", vm_exit_detail(s->vm));
	alarm(0);
	stamp_vm_destroy(s);
}

const struct test_case pause_tests[] = {
	{ "resume_mixed_vcpus", test_pause_resume_mixed_vcpus },
	{ "all_halted", test_pause_all_halted },
	{ "not_running", test_pause_not_running },
	{ "unknown_command_ignored", test_pause_unknown_command_ignored },
	{ NULL, NULL },
};
