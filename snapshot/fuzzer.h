/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_FUZZER_H
#define VMM_SNAPSHOT_FUZZER_H

/*
 * The execution engine of snapshot fuzzing: it serves the guest's harness
 * (kernel/dev/harness.h) from the thread of the machine's one vCPU, so an
 * execution costs one exit and the reset, no thread switch:
 *
 *   CHECKPOINT  take the checkpoint (the first time), write an input
 *   DONE/CRASH  the execution ended: report it, reset to the checkpoint
 *               (dirty pages only, then the state), write the next input
 *   time-out    a timer aimed at the vCPU thread kicks it out of the
 *               guest; an execution past its time ends as TIMEOUT
 *   power-off, reset, triple fault during an execution: a CRASH
 *
 * Inputs come from, and results go to, the caller's ops, in the vCPU
 * thread. With verify_reset, every reset is followed by a comparison of
 * all memory and state with the checkpoint; the first difference stops
 * the VM and is named in fuzzer_error().
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct machine;
struct fuzzer;
struct checkpoint;
struct harness_desc;

enum fuzz_outcome {
	FUZZ_OK,
	FUZZ_CRASH,
	FUZZ_TIMEOUT,
};

/* Crash codes the engine gives (the guest's own are below 0x1000000). */
#define FUZZ_CODE_FAULT 0x100 /* | vector: the reference guest's fault */
#define FUZZ_CODE_POWEROFF 0x1000000
#define FUZZ_CODE_RESET 0x1000001
#define FUZZ_CODE_TRIPLE 0x1000002

struct fuzz_exec {
	uint64_t n; /* executions before this one */
	enum fuzz_outcome outcome;
	uint32_t code;	      /* CRASH: the guest's code or FUZZ_CODE_* */
	const char *detail;   /* what ended it, for messages */
	const uint8_t *input; /* the input it ran */
	size_t len;
	const uint8_t *cov; /* the guest's coverage map, or NULL */
	uint32_t cov_size;
	uint64_t exec_ns; /* from input written to its end */
};

struct fuzzer_ops {
	/* The next input into @buf (at most @max bytes), its length in
	 * *@len; false to stop fuzzing (the VM stops, VM_EXIT_REQUESTED). */
	bool (*next)(void *opaque, uint8_t *buf, size_t max, size_t *len);
	/* An execution ended; the machine is still as it left it (frozen:
	 * a snapshot of it can be saved from here). */
	void (*done)(void *opaque, const struct fuzz_exec *e);
	/* The checkpoint was taken (may be NULL). */
	void (*ready)(void *opaque);
};

struct fuzzer_opts {
	unsigned int timeout_ms; /* 0: none */
	bool verify_reset;
	bool no_hold; /* give written pages back at each reset (dirty_hold()) */
};

struct fuzzer_stats {
	uint64_t execs, crashes, timeouts;
	uint64_t reset_pages; /* pages copied back, over all resets */
	uint64_t reset_ns;    /* time in resets (and verifies) */
	uint64_t ckpt_ns;     /* taking the checkpoint */
	uint64_t ckpt_pages;  /* its non-zero pages */
	uint64_t start_ns;    /* when the checkpoint was taken */
	uint32_t cov_size;    /* the guest's coverage map, 0 if none */
	uint32_t input_max;
};

/* Attaches to @m's harness; the checkpoint comes at the guest's call. The
 * machine must have one vCPU. */
int fuzzer_create(struct machine *m, const struct fuzzer_opts *o,
		  const struct fuzzer_ops *ops, void *opaque,
		  struct fuzzer **out, char *err, size_t errlen) __must_check;

/*
 * The same for a machine that starts at checkpoint @ck (attached to it
 * with checkpoint_attach(); the fuzzer owns it from now on) whose guest
 * announced @d: the vCPU resumes right after the guest's checkpoint call.
 * That first execution runs the checkpoint's own input (none) without a
 * time-out and is not reported; the ones after it are as usual.
 */
struct harness_desc;
int fuzzer_create_at(struct machine *m, struct checkpoint *ck,
		     const struct harness_desc *d, const struct fuzzer_opts *o,
		     const struct fuzzer_ops *ops, void *opaque,
		     struct fuzzer **out, char *err,
		     size_t errlen) __must_check;

/*
 * Hands the checkpoint and the descriptor over to the caller (the fuzzer
 * no longer frees it): to start other machines from it.
 */
struct checkpoint *fuzzer_take_checkpoint(struct fuzzer *f,
					  struct harness_desc *d);

/* After the machine stopped (or before it ran). */
void fuzzer_free(struct fuzzer *f);

/* Relaxed snapshot of the counters; any thread. */
void fuzzer_stats(struct fuzzer *f, struct fuzzer_stats *st);

/* Why the engine stopped the VM ("" if it did not). */
const char *fuzzer_error(struct fuzzer *f);

/* The machine's checkpoint, once taken (else NULL). */
struct checkpoint *fuzzer_checkpoint(struct fuzzer *f);

#endif /* VMM_SNAPSHOT_FUZZER_H */
