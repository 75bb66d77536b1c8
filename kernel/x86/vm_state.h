/* SPDX-License-Identifier: MIT */
#ifndef VMM_X86_VM_STATE_H
#define VMM_X86_VM_STATE_H

/*
 * The VM-wide x86 KVM state to and from a Vmrun__VmState message
 * (proto/vm_state.proto): the in-kernel PICs and IOAPIC, the PIT,
 * kvmclock, and the host's feature MSRs (saved as information only).
 *
 * Like the vCPU state, it needs every vCPU outside KVM_RUN (before
 * vm_start(), paused, or stopped); otherwise -EBUSY. A machine is loaded
 * VM state first, then each vCPU (x86_vcpu_state_load()), as the
 * irqchip's pins and routes are in place before the LAPICs that take
 * their interrupts.
 */

#include "kernel/util/compiler.h"
#include "vm_state.pb-c.h"

struct vm;

int x86_vm_state_save(struct vm *vm, Vmrun__VmState **out) __must_check;

/*
 * Checks @st against this VM (irqchip and PIT present or not, counts and
 * field ranges), then loads the PICs, the IOAPIC, the PIT and the clock.
 * Returns -EINVAL for a bad message (nothing changed), -EBUSY if a vCPU
 * may be running, or the -errno of a failed KVM call (partly loaded).
 * The clock is set to the saved value: the time between save and load is
 * not added (KVM_CLOCK_REALTIME could; that is the caller's policy).
 */
int x86_vm_state_load(struct vm *vm, const Vmrun__VmState *st) __must_check;

void x86_vm_state_free(Vmrun__VmState *st);

#endif /* VMM_X86_VM_STATE_H */
