/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_VCPU_ARCH_H
#define VMM_X86_VCPU_ARCH_H

/*
 * The machine-dependent part of a vCPU and a VM. Generic code calls only
 * the vcpu_arch_*() and vm_arch_*() functions below.
 */

#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct vcpu;

struct vcpu_arch {
	uint32_t apic_id; /* [I] */
};

/* Before vCPUs exist: TSS and identity-map addresses, irqchip, PIT. */
int vm_arch_init(struct vm *vm) __must_check;

/* After KVM_CREATE_VCPU: CPUID from KVM_GET_SUPPORTED_CPUID. */
int vcpu_arch_init(struct vcpu *vcpu) __must_check;

/* Host-side CPUID as KVM reports it (cached, shared by all vCPUs). */
struct kvm_cpuid2;
int x86_supported_cpuid(int kvm_fd, const struct kvm_cpuid2 **out) __must_check;

/*
 * The CPUID @vcpu has now (KVM_GET_CPUID2), in a new buffer (free() it).
 * It can hold more than vmrun set: PVM reports the host CPU's own
 * features, which its guests' ring 3 sees.
 */
int x86_vcpu_cpuid(struct vcpu *vcpu, struct kvm_cpuid2 **out) __must_check;

#endif /* VMM_X86_VCPU_ARCH_H */
