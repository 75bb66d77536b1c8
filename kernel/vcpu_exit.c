/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kernel/dirty.h"
#include "kernel/iotrap.h"
#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

typedef int (*exit_handler_t)(struct vcpu *vcpu, struct kvm_run *run);

static int exit_io(struct vcpu *vcpu, struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t i;
	int ret = VCPU_CONTINUE;

	__atomic_add_fetch(&vcpu->stats.io_exits, 1, __ATOMIC_RELAXED);
	vcpu->io_pending = true;
	if (run->io.size != 1 && run->io.size != 2 && run->io.size != 4)
		return -EINVAL;
	if ((uint64_t)run->io.data_offset +
		    (uint64_t)run->io.count * run->io.size >
	    vcpu->run_size)
		return -EINVAL;
	/* String instructions (rep ins/outs) arrive as count > 1. */
	/* A handler that completed the I/O itself ends the string. */
	for (i = 0;
	     i < run->io.count && ret == VCPU_CONTINUE && vcpu->io_pending;
	     i++) {
		ret = iotrap_dispatch(vcpu->vm->pio, vcpu, run->io.port, data,
				      run->io.size, is_write);
		data += run->io.size;
	}
	return ret;
}

static int exit_mmio(struct vcpu *vcpu, struct kvm_run *run)
{
	uint32_t len = run->mmio.len;

	__atomic_add_fetch(&vcpu->stats.mmio_exits, 1, __ATOMIC_RELAXED);
	vcpu->io_pending = true;
	if (len == 0 || len > sizeof(run->mmio.data))
		return -EINVAL;
	return iotrap_dispatch(vcpu->vm->mmio, vcpu, run->mmio.phys_addr,
			       run->mmio.data, len, run->mmio.is_write);
}

static int exit_hlt(struct vcpu *vcpu, struct kvm_run *run __unused)
{
	/*
	 * Only without an in-kernel irqchip does HLT reach user space. Nothing
	 * can wake the vCPU then but the VMM, so wait for a pause or stop.
	 */
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	while (!vm->stopping && !vm->pause_depth)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return VCPU_CONTINUE;
}

static int exit_shutdown(struct vcpu *vcpu, struct kvm_run *run __unused)
{
	return vm_guest_stop(vcpu, VM_EXIT_SHUTDOWN,
			     "vCPU %u: guest triple fault (KVM_EXIT_SHUTDOWN)",
			     vcpu->id);
}

static int exit_internal(struct vcpu *vcpu, struct kvm_run *run)
{
	char extra[96] = "";
	uint32_t i, n = run->internal.ndata;
	size_t off = 0;

	if (n > ARRAY_SIZE(run->internal.data))
		n = ARRAY_SIZE(run->internal.data);
	for (i = 0; i < n && i < 4 && off < sizeof(extra); i++)
		off += (size_t)snprintf(
			extra + off, sizeof(extra) - off, " %#llx",
			(unsigned long long)run->internal.data[i]);
	vm_stop_detail(vcpu->vm, VM_EXIT_INTERNAL,
		       "vCPU %u: KVM internal error, suberror %u%s%s", vcpu->id,
		       run->internal.suberror,
		       run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			       " (emulation failure)" :
			       "",
		       extra);
	return VCPU_STOP;
}

static int exit_fail_entry(struct vcpu *vcpu, struct kvm_run *run)
{
	vm_stop_detail(vcpu->vm, VM_EXIT_INTERNAL,
		       "vCPU %u: VM entry failed, hardware reason %#llx",
		       vcpu->id,
		       (unsigned long long)
			       run->fail_entry.hardware_entry_failure_reason);
	return VCPU_STOP;
}

static int exit_system_event(struct vcpu *vcpu, struct kvm_run *run)
{
	switch (run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		return vm_guest_stop(vcpu, VM_EXIT_POWEROFF,
				     "guest powered off");
	case KVM_SYSTEM_EVENT_RESET:
		return vm_guest_stop(vcpu, VM_EXIT_RESET, "guest reset");
	default:
		vm_stop_detail(vcpu->vm, VM_EXIT_INTERNAL,
			       "vCPU %u: system event %u", vcpu->id,
			       run->system_event.type);
	}
	return VCPU_STOP;
}

static int exit_ring_full(struct vcpu *vcpu, struct kvm_run *run __unused)
{
	__atomic_add_fetch(&vcpu->stats.ring_full_exits, 1, __ATOMIC_RELAXED);
	return dirty_ring_harvest(vcpu);
}

static int exit_intr(struct vcpu *vcpu __unused, struct kvm_run *run __unused)
{
	return VCPU_CONTINUE;
}

static const exit_handler_t exit_handlers[] = {
	[KVM_EXIT_IO] = exit_io,
	[KVM_EXIT_MMIO] = exit_mmio,
	[KVM_EXIT_HLT] = exit_hlt,
	[KVM_EXIT_SHUTDOWN] = exit_shutdown,
	[KVM_EXIT_INTERNAL_ERROR] = exit_internal,
	[KVM_EXIT_FAIL_ENTRY] = exit_fail_entry,
	[KVM_EXIT_SYSTEM_EVENT] = exit_system_event,
	[KVM_EXIT_DIRTY_RING_FULL] = exit_ring_full,
	[KVM_EXIT_INTR] = exit_intr,
};

int vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint32_t reason = run->exit_reason;

	if (reason < ARRAY_SIZE(exit_handlers) && exit_handlers[reason])
		return exit_handlers[reason](vcpu, run);
	vm_stop_detail(vcpu->vm, VM_EXIT_INTERNAL,
		       "vCPU %u: unhandled KVM exit reason %u", vcpu->id,
		       reason);
	return VCPU_STOP;
}
