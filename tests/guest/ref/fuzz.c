/* SPDX-License-Identifier: MIT */
/*
 * work=fuzz: the guest side of vmrun's fuzzing harness
 * (kernel/x86/vmrun_harness.h, docs/fuzzing.md). The boot CPU announces
 * its input buffer and coverage map, takes the checkpoint, runs one input
 * through the example target (target.c) and reports done or crash; the
 * VMM puts the machine back to the checkpoint with the next input.
 *
 * Without a fuzzer attached (plain vmrun run) it waits, announcing again
 * every tick, so a snapshot of it can be fuzzed later (vmrun fuzz
 * --snapshot). fuzz_pages=N makes every execution write N pages and
 * nothing else, for the reset benchmarks.
 */
#include "fuzz.h"

#include "kernel/x86/vmrun_harness.h"
#include "ref.h"

#define FUZZ_INPUT_MAX 65536
#define FUZZ_COV_SIZE 4096

static struct vmrun_harness_desc desc __attribute__((aligned(64)));
static uint8_t input[FUZZ_INPUT_MAX] __attribute__((aligned(4096)));
static uint8_t cov[FUZZ_COV_SIZE] __attribute__((aligned(4096)));
static uint64_t cov_prev;

/* Set once a fuzzer took the descriptor: faults then report a crash. */
volatile uint32_t fuzz_active;

/* gcc's -fsanitize-coverage=trace-pc hook: an AFL-style edge counter. */
void __sanitizer_cov_trace_pc(void);
void __sanitizer_cov_trace_pc(void)
{
	uint64_t pc = (uint64_t)__builtin_return_address(0);
	uint64_t cur = (pc * 0x9e3779b97f4a7c15ULL) >> 52;

	cov[(cur ^ cov_prev) & (FUZZ_COV_SIZE - 1)]++;
	cov_prev = cur >> 1;
}

void fuzz_uart_poke(uint8_t ier, uint8_t scr)
{
	sys_call(SYS_UART_POKE, 1, ier & 0x0f);
	sys_call(SYS_UART_POKE, 7, scr);
}

void fuzz_rng(void)
{
	if (vdev_any())
		vdev_step();
}

static uint32_t announce(void)
{
	return (uint32_t)sys_call(SYS_HARNESS, VMRUN_HARNESS_ANNOUNCE,
				  (uint64_t)&desc);
}

__noreturn void fuzz_main(uint64_t base, uint64_t end, uint64_t pages,
			  uint64_t ticks)
{
	struct fuzz_env env = { (uint8_t *)base, (end - base) / REF_PAGE };
	uint64_t waited = 0, next = jiffies + REF_HZ / 10;
	struct line l;
	uint32_t st, n;

	desc.magic = VMRUN_HARNESS_MAGIC;
	desc.version = VMRUN_HARNESS_VERSION;
	desc.input_gpa = (uint64_t)input;
	desc.input_max = FUZZ_INPUT_MAX;
	desc.cov_gpa = (uint64_t)cov;
	desc.cov_size = FUZZ_COV_SIZE;
	if (pages > env.scratch_pages)
		pages = env.scratch_pages;
	line_init(&l, "GUEST READY fuzz");
	line_kv(&l, "cpus", 1);
	line_kx(&l, "input", desc.input_gpa);
	line_kx(&l, "cov", desc.cov_gpa);
	line_kv(&l, "scratch_pages", env.scratch_pages);
	line_put(&l);
	while ((st = announce()) == VMRUN_HARNESS_ABSENT) {
		/* No fuzzer: wait for one (a restore under vmrun fuzz). */
		if (waited++ == 0) {
			line_init(&l, "GUEST FUZZ waiting for a fuzzer");
			line_put(&l);
		}
		while ((int64_t)(jiffies - next) < 0)
			sys_idle();
		next += REF_HZ / 10;
		if (ticks && waited >= ticks) {
			line_init(&l, "GUEST POWEROFF");
			line_put(&l);
			sys_call(SYS_POWEROFF, 0, 0);
		}
	}
	if (st != VMRUN_HARNESS_OK) {
		line_init(&l, "harness descriptor refused");
		guest_fail(&l);
		sys_call(SYS_POWEROFF, 0, 0);
	}
	line_init(&l, "GUEST FUZZ attached");
	line_put(&l);
	fuzz_active = 1;
	memset(cov, 0, sizeof(cov));
	cov_prev = 0;
	barrier();
	sys_call(SYS_HARNESS, VMRUN_HARNESS_CHECKPOINT, 0);

	/* Every execution starts here, the machine as it was above. */
	n = *(volatile uint32_t *)&desc.input_len;
	if (n > FUZZ_INPUT_MAX)
		n = FUZZ_INPUT_MAX;
	if (pages) {
		for (uint64_t i = 0; i < pages; i++)
			*(volatile uint64_t *)(env.scratch + i * REF_PAGE) =
				i + n;
		st = 0;
	} else {
		st = (uint32_t)fuzz_target(input, n, &env);
	}
	sys_call(SYS_HARNESS,
		 st ? VMRUN_HARNESS_CRASH | (st << 8) : VMRUN_HARNESS_DONE, 0);
	/* Only without a fuzzer's reset does it get here. */
	for (;;)
		sys_idle();
}
