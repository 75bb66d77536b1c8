/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_VCPU_H
#define VMM_KERNEL_VCPU_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct vcpu;
struct kvm_regs;
struct kvm_sregs;

/* Exit handler results (or -errno, which stops the VM with an error). */
enum {
	VCPU_CONTINUE = 0,
	VCPU_STOP = 1,
};

unsigned int vcpu_id(const struct vcpu *vcpu);
struct vm *vcpu_vm(const struct vcpu *vcpu);
int vcpu_fd(const struct vcpu *vcpu);

/*
 * Register access. Allowed before vm_start() or while the VM is paused,
 * from any thread, and from the vCPU's own thread inside an exit handler.
 */
int vcpu_get_regs(struct vcpu *vcpu, struct kvm_regs *regs) __must_check;
int vcpu_set_regs(struct vcpu *vcpu, const struct kvm_regs *regs) __must_check;
int vcpu_get_sregs(struct vcpu *vcpu, struct kvm_sregs *sregs) __must_check;
int vcpu_set_sregs(struct vcpu *vcpu,
		   const struct kvm_sregs *sregs) __must_check;

/* Counters, readable at any time (relaxed). */
struct vcpu_stats {
	uint64_t exits;
	uint64_t io_exits;
	uint64_t mmio_exits;
	uint64_t intr_exits;
	uint64_t ring_full_exits;
};
void vcpu_get_stats(const struct vcpu *vcpu, struct vcpu_stats *st);

#endif /* VMM_KERNEL_VCPU_H */
