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

/* The vCPU whose thread is calling, or NULL. */
struct vcpu *vcpu_self(void);

/*
 * From the vCPU's own thread, inside an exit handler: finishes the I/O or
 * MMIO of the exit now (KVM stores IN data and advances RIP on its next
 * KVM_RUN), so that the state read or written next is final and no
 * instruction is skipped after it. The rest of a string I/O exit is
 * dropped. Returns 0 or -errno.
 */
int vcpu_complete_io(struct vcpu *vcpu) __must_check;

/*
 * True from the vCPU's own thread, in the handler of an I/O or MMIO exit:
 * the vCPU was executing an instruction, so its MP state is RUNNABLE
 * (not halted, not waiting for INIT or SIPI). Finishing the exit
 * (vcpu_complete_io()) does not change that.
 */
bool vcpu_known_runnable(const struct vcpu *vcpu);

/*
 * Registers, sregs and events staged in kvm_run (KVM_CAP_SYNC_REGS, by a
 * reload on the vCPU's own thread: x86_vcpu_reload()) reach KVM on the
 * next KVM_RUN. Anything that reads or writes those through ioctls first
 * calls this, which applies them now (a KVM_RUN that returns at once),
 * from any thread while the vCPU is not running; on the vCPU's own
 * thread it first finishes the exit being handled (vcpu_complete_io()),
 * so that what is read next is final. Returns 0 (also when nothing is
 * staged) or -errno, -EINVAL if KVM refused them.
 */
int vcpu_apply_staged(struct vcpu *vcpu) __must_check;

/*
 * Called in the vCPU's thread each time KVM_RUN came back for a kick
 * (-EINTR), before a pause is served: a timer aimed at the thread with
 * vcpu_kick_signal() gets there. Returns VCPU_CONTINUE, VCPU_STOP or
 * -errno, as an exit handler. Set it before vm_start() or from the
 * vCPU's own thread.
 */
typedef int (*vcpu_kick_fn_t)(struct vcpu *vcpu, void *opaque);
void vcpu_set_kick_hook(struct vcpu *vcpu, vcpu_kick_fn_t fn, void *opaque);

/* The signal that kicks a vCPU thread out of KVM_RUN (for SIGEV_THREAD_ID
 * timers aimed at it). */
int vcpu_kick_signal(void);

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
