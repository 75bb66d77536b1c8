/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_HARNESS_H
#define VMM_DEV_HARNESS_H

/*
 * The fuzzing harness ports (kernel/x86/vmrun_harness.h is the guest's
 * side). Every machine has them; without a fuzzer attached an announce
 * reads back VMRUN_HARNESS_ABSENT and the other commands do nothing, so
 * a harness guest runs under plain `vmrun run` too.
 *
 * The harness keeps no guest state of its own: the descriptor is checked
 * and copied at each announce, and a fuzzer takes its checkpoint after
 * it. So a snapshot of a guest waiting for a fuzzer restores anywhere.
 */

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct vcpu;
struct harness;

enum harness_event {
	HARNESS_CHECKPOINT,
	HARNESS_DONE,
	HARNESS_CRASH,
};

/* The announced descriptor, checked: every range is inside guest RAM. */
struct harness_desc {
	uint64_t desc_gpa;
	uint64_t input_gpa;
	uint32_t input_max;
	uint64_t cov_gpa; /* 0: none */
	uint32_t cov_size;
};

struct harness_ops {
	/*
	 * A command, in the thread of the vCPU that wrote it, with the OUT
	 * not yet completed (vcpu_complete_io()). @code is CRASH's. Returns
	 * VCPU_CONTINUE, VCPU_STOP or -errno, as an exit handler.
	 */
	int (*event)(void *opaque, struct vcpu *vcpu, enum harness_event ev,
		     uint32_t code);
};

int harness_create(struct vm *vm, struct harness **out) __must_check;
void harness_destroy(struct harness *h);

/* With @ops NULL, detaches. Only while no vCPU runs or from the vCPU's
 * own thread. */
void harness_attach(struct harness *h, const struct harness_ops *ops,
		    void *opaque);

/* The last descriptor the guest announced and the fuzzer took, or NULL. */
const struct harness_desc *harness_desc(const struct harness *h);

/* Sets the descriptor as if the guest had announced it (a machine that
 * starts from a checkpoint taken after the announce). */
void harness_set_desc(struct harness *h, const struct harness_desc *d);

/* Why the last announce was refused ("" if it was not). */
const char *harness_error(const struct harness *h);

/* Checks the descriptor at @gpa against the VM's memory; for tests and
 * the fuzz harness of it. Returns 0, or -EINVAL with a reason in @err. */
int harness_check(struct vm *vm, uint64_t gpa, struct harness_desc *out,
		  char *err, size_t errlen) __must_check;

#endif /* VMM_DEV_HARNESS_H */
