/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_VCPU_STATE_PRIV_H
#define VMM_X86_VCPU_STATE_PRIV_H

/* Shared by vcpu_state.c (save) and vcpu_state_load.c. */

#include "kernel/kvm_ioctl.h"
#include "kernel/vm_priv.h"

#define MSR_IA32_TSC 0x10
/* KVM refuses KVM_GET/SET_MSRS of MAX_IO_MSRS (256) entries or more. */
#define MSR_BATCH 128

/* The vCPU's state may be read or written: no thread can be in KVM_RUN. */
static inline int state_access_ok(struct vcpu *vcpu)
{
	return vm_vcpus_may_run(vcpu->vm) ? -EBUSY : 0;
}

/* The XSAVE size KVM uses for this VM (0 without KVM_CAP_XSAVE). */
static inline size_t host_xsave_size(struct vm *vm)
{
	int sz = kvm_check_cap(vm->vm_fd, KVM_CAP_XSAVE2);

	if (sz >= (int)sizeof(struct kvm_xsave))
		return (size_t)sz;
	return kvm_check_cap(vm->vm_fd, KVM_CAP_XSAVE) > 0 ?
		       sizeof(struct kvm_xsave) :
		       0;
}

static inline bool has_cap(struct vcpu *vcpu, long cap)
{
	return kvm_check_cap(vcpu->vm->vm_fd, cap) > 0;
}

#endif /* VMM_X86_VCPU_STATE_PRIV_H */
