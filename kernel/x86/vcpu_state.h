/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_VCPU_STATE_H
#define VMM_X86_VCPU_STATE_H

/*
 * One x86 vCPU's KVM state to and from a Vmrun__VcpuState message
 * (proto/vcpu_x86.proto).
 *
 * Both directions need the vCPU outside KVM_RUN: call them before
 * vm_start(), while the VM is paused (vm_pause()), or after it stopped.
 * Otherwise they return -EBUSY and touch nothing.
 */

#include "kernel/util/compiler.h"
#include "vcpu_x86.pb-c.h"

struct vcpu;

/* Upper bounds a message must respect; KVM's own limits are lower. */
#define X86_STATE_MAX_MSRS 4096
#define X86_STATE_MAX_CPUID 256

/*
 * Captures the vCPU's registers, segment and control registers, XSAVE
 * area (or FPU) and XCRs, every MSR of KVM_GET_MSR_INDEX_LIST that reads,
 * local APIC, pending events, MP state, debug registers, TSC frequency and
 * CPUID into a new message in *@out (free it with x86_vcpu_state_free()).
 * Returns 0 or -errno; on error *@out is untouched.
 */
int x86_vcpu_state_save(struct vcpu *vcpu, Vmrun__VcpuState **out) __must_check;

/*
 * Checks that @st is complete and fits this host and vCPU (sizes, counts,
 * MSR indices, field ranges) and only then loads it, in the order KVM
 * needs: CPUID, TSC frequency, sregs, MSRs, XCRs and XSAVE, regs, debug
 * registers, LAPIC, events, MP state. Returns -EINVAL for a bad message
 * (nothing changed), -EOPNOTSUPP when this host cannot take it (nothing
 * changed), -EBUSY if the vCPU may be running, or the -errno of a KVM
 * call that failed while loading (the vCPU is then partly loaded).
 */
int x86_vcpu_state_load(struct vcpu *vcpu,
			const Vmrun__VcpuState *st) __must_check;

/*
 * The same, but nothing KVM would write into guest memory on the way (the
 * wall clock its MSRs point at): for a VM whose memory must stay exactly
 * a checkpoint's.
 */
int x86_vcpu_state_load_keep_mem(struct vcpu *vcpu,
				 const Vmrun__VcpuState *st) __must_check;

/* Only the checks of x86_vcpu_state_load(); changes nothing. */
int x86_vcpu_state_check(struct vcpu *vcpu,
			 const Vmrun__VcpuState *st) __must_check;

/*
 * A state checked once and made ready to be loaded again and again into
 * the same vCPU, as a fuzzer's reset does many thousand times a second:
 * the KVM structures are built once, and CPUID and the TSC frequency,
 * which the vCPU already has, are not set again. @st must outlive it.
 * x86_vcpu_reload() needs the vCPU outside KVM_RUN, as a load does.
 */
struct x86_vcpu_reload;
int x86_vcpu_reload_prepare(struct vcpu *vcpu, const Vmrun__VcpuState *st,
			    struct x86_vcpu_reload **out) __must_check;
int x86_vcpu_reload(struct vcpu *vcpu, struct x86_vcpu_reload *r) __must_check;
void x86_vcpu_reload_free(struct x86_vcpu_reload *r);

/*
 * From the vCPU's own thread, inside an exit handler, before a reset
 * writes anything (memory included): finishes the exit being handled, or
 * leaves it to KVM where a reload of @r makes finishing it change nothing
 * (see the function). Finishing it is a KVM_RUN, and a KVM may write guest
 * memory on any KVM_RUN (PVM does), so it must come before the memory is
 * copied back. Elsewhere it does nothing. Returns 0 or -errno.
 */
int x86_vcpu_reload_settle(struct vcpu *vcpu,
			   const struct x86_vcpu_reload *r) __must_check;

/* Frees a message from x86_vcpu_state_save() or from unpacking. */
void x86_vcpu_state_free(Vmrun__VcpuState *st);

/*
 * The MSR indices KVM_GET_MSR_INDEX_LIST reports on this host (cached,
 * shared by all VMs). Returns the count or -errno.
 */
int x86_msr_index_list(int kvm_fd, const uint32_t **out) __must_check;

#endif /* VMM_X86_VCPU_STATE_H */
